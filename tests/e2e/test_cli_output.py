"""The command line prints what calls return, raise and print literally, as separate
processes against the session's service: no rich markup, no terminal control sequences."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

Cli = Callable[..., subprocess.CompletedProcess[str]]

APP = '''
import rayfn

app = rayfn.App("cli-output")


@app.function()
def echo(value):
    return value


@app.function()
def colorful():
    print("\\x1b[31mred\\x1b[0m\\x1b]0;title\\x07")


@app.function()
def fails():
    raise ValueError("[/] \\x1b]0;pwned\\x07")
'''

# Spawns the calls named on the command line, waits for each, prints their IDs.
SPAWN = """
import sys

import rayfn

CALLS = {
    "closing-tag": ("echo", ("[/]",)),
    "bold": ("echo", ("[bold]x[/bold]",)),
    "colorful": ("colorful", ()),
    "fails": ("fails", ()),
}
for name in sys.argv[1:]:
    function, args = CALLS[name]
    call = rayfn.Function.from_name("cli-output", function).spawn(*args)
    try:
        call.get(timeout=90)
    except ValueError:
        pass
    print(call.object_id)
"""


def _calls(rayfn_cli: Cli, tmp_path: Path, *names: str) -> list[str]:
    app_file = tmp_path / "cli_output_app.py"
    app_file.write_text(APP)
    rayfn_cli("deploy", str(app_file))
    script = tmp_path / "spawn_cli_output.py"
    script.write_text(SPAWN)
    return subprocess.run(
        [sys.executable, str(script), *names], capture_output=True, text=True, check=True,
        timeout=180,
    ).stdout.split()


def _no_terminal_controls(text: str) -> None:
    assert not any(ch in text for ch in "\x1b\x07\x9b\x9d"), repr(text)


def test_call_get_prints_results_and_errors_literally(rayfn_cli: Cli, tmp_path: Path) -> None:
    closing_tag, bold, fails = _calls(rayfn_cli, tmp_path, "closing-tag", "bold", "fails")
    assert rayfn_cli("call", "get", closing_tag).stdout == "'[/]'\n"
    assert rayfn_cli("call", "get", bold).stdout == "'[bold]x[/bold]'\n"
    failed = rayfn_cli("call", "get", fails, check=False)
    assert failed.returncode == 1, failed.stderr
    assert "ValueError: [/] \\x1b]0;pwned\\x07" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    _no_terminal_controls(failed.stderr)


def test_call_logs_shows_control_characters_as_escapes(rayfn_cli: Cli, tmp_path: Path) -> None:
    (colorful,) = _calls(rayfn_cli, tmp_path, "colorful")
    logs = rayfn_cli("call", "logs", colorful).stdout
    _no_terminal_controls(logs)
    assert logs == "\\x1b[31mred\\x1b[0m\\x1b]0;title\\x07\n"
