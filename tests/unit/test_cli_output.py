"""What the CLI prints of user and cluster text: literal, and harmless to the terminal."""

from __future__ import annotations

import io
import sys
from typing import Any

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from rayfn.cli import serve as serving
from rayfn.cli.main import cli
from rayfn.cli.output import cell, harmless, say, table

HOSTILE = "\x1b[31mred\x1b[0m\x1b]0;title\x07 \x9b2J \x7f \u202eevil \x00 \r \ud800"


def test_harmless_keeps_newlines_and_tabs_and_shows_every_other_control() -> None:
    text = harmless(HOSTILE + "\n\tnext [/] [bold]x[/bold] :smile: é ✓")
    assert text == ("\\x1b[31mred\\x1b[0m\\x1b]0;title\\x07 \\x9b2J \\x7f \\u202eevil "
                    "\\x00 \\r \\ud800\n\tnext [/] [bold]x[/bold] :smile: é ✓")
    assert all(ch in "\n\t" or ch.isprintable() for ch in text)
    assert harmless(12) == "12"


def test_say_prints_markup_and_controls_literally() -> None:
    @click.command()
    def show_it() -> None:
        say("[/] [bold]x[/bold] :smile:")
        say(HOSTILE, err=True, label="Error:")
        say("no newline", nl=False)

    result = CliRunner().invoke(show_it)
    assert result.exit_code == 0, result.output
    assert result.stdout == "[/] [bold]x[/bold] :smile:\nno newline"
    assert result.stderr.startswith("Error: \\x1b[31mred")
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr


def test_table_cells_are_literal() -> None:
    rendered = table(("app", "error"), [("[/]", HOSTILE), ("[bold]x[/bold]", 3)], title="t")
    out = io.StringIO()
    Console(file=out, width=300, color_system=None).print(rendered)
    text = out.getvalue()
    assert "[/]" in text and "[bold]x[/bold]" in text and "\\x1b]0;title\\x07" in text
    assert "\x1b" not in text and "\x07" not in text
    assert cell("[/]").plain == "[/]"


def test_a_crash_prints_a_harmless_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from rayfn.cli import main

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("remote said \x1b]0;pwned\x07 [/]")

    monkeypatch.setattr(main, "get_settings", explode)
    result = CliRunner().invoke(cli, ["stop"])
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "RuntimeError: remote said \\x1b]0;pwned\\x07 [/]" in result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_serve_on_loopback_has_nothing_to_warn_about(host: str) -> None:
    assert serving.exposure_warning(host, 8100) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5"])
def test_serve_beyond_this_machine_warns(host: str) -> None:
    message = serving.exposure_warning(host, 8100)
    assert message is not None and f"{host}:8100" in message
    assert "beyond this machine" in message


def test_serve_command_prints_the_warning_to_stderr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The command as run, with binding and serving replaced: nothing listens."""
    app_file = tmp_path / "rayfn_serve_warning_app.py"
    app_file.write_text(
        "import rayfn\napp = rayfn.App('serve-warning')\n"
        "@app.function()\n@rayfn.asgi_app()\ndef web():\n"
        "    async def asgi(scope, receive, send):\n        pass\n    return asgi\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader adds the file's folder
    served: list[tuple[str, int]] = []
    monkeypatch.setattr(serving, "check_port_free", lambda host, port: None)
    monkeypatch.setattr(serving, "run", lambda path, ref, host, port, reload, *rest:
                        served.append((host, port)))
    try:
        exposed = CliRunner().invoke(cli, ["serve", str(app_file), "--host", "0.0.0.0",
                                           "--port", "8123", "--no-reload"])
        local = CliRunner().invoke(cli, ["serve", str(app_file), "--port", "8123",
                                         "--no-reload"])
    finally:
        sys.modules.pop(app_file.stem, None)  # the loader imported it
    assert exposed.exit_code == 0, exposed.output
    assert exposed.stderr.startswith("Warning: serving on 0.0.0.0:8123, beyond this machine")
    assert "web endpoint web: http://127.0.0.1:8123/" in exposed.stdout
    assert local.exit_code == 0 and local.stderr == ""
    assert served == [("0.0.0.0", 8123), ("127.0.0.1", 8123)]
