"""Everything the CLI prints goes through here, because much of it is not ours.

Results, error messages, logs, tracebacks and names come from user code and the cluster.
Printed as they are, ``[/]`` is rich markup (a crash) and ``\\x1b]0;...\\x07`` is a
terminal command (a retitled window, a hidden line, a rewritten screen). So text is
printed without markup, and control characters other than newline and tab are shown as
escapes (``\\x1b``) instead of being sent to the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_UNSAFE = [
    *range(0x00, 0x20), 0x7F, *range(0x80, 0xA0),  # C0, DEL, C1 (ESC, BEL, CSI, OSC...)
    # Bidirectional overrides reorder what the reader sees ("Trojan Source").
    0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A),
    *range(0xD800, 0xE000),  # lone surrogates: unencodable, writing them would raise
]
_HARMLESS = {code: _escape(code) for code in _UNSAFE if chr(code) not in "\n\t"}
_HARMLESS[ord("\r")] = "\\r"

_console = Console(highlight=False, emoji=False, markup=False)


def harmless(text: object) -> str:
    """``text`` with every control character but newline and tab made a visible escape."""
    return str(text).translate(_HARMLESS)


def say(
    text: object = "",
    *,
    err: bool = False,
    nl: bool = True,
    label: str | None = None,
    color: str = "red",
) -> None:
    """Print ``text`` literally (no markup, no wrapping), after a bold ``label`` if any.

    click drops the label's colour when the stream is not a terminal.
    """
    line = harmless(text)
    if label is not None:
        line = f"{click.style(label, fg=color, bold=True)} {line}"
    click.echo(line, err=err, nl=nl)


def cell(value: object) -> Text:
    """A table cell that shows ``value`` literally (a ``str`` cell would be markup)."""
    return Text(harmless(value))


def table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None
) -> Table:
    """A rich table whose every cell goes through :func:`cell`."""
    result = Table(title=title)
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*(cell(value) for value in row))
    return result


def show(rendered: Table) -> None:
    _console.print(rendered)
