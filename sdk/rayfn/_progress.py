"""Progress bars for long maps: shown in terminals and notebooks, silent elsewhere.

A terminal, or a notebook with ipywidgets, gets rich's live bar. A notebook without
ipywidgets (rich cannot draw there) gets a line of text redrawn in place, at most a few
times a second.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

TEXT_REDRAW_SECONDS = 0.25
TEXT_BAR_WIDTH = 30


def _style() -> str | None:
    """How to show progress here: ``rich``, ``text`` (a notebook without ipywidgets) or
    None (not interactive: a log, a pipe, a batch job)."""
    if sys.stderr is not None and sys.stderr.isatty():
        return "rich"
    if "ipykernel" in sys.modules:
        return "rich" if importlib.util.find_spec("ipywidgets") is not None else "text"
    return None


class TextBar:
    """``label [#####.....] 5/10 3s``, redrawn in place with a carriage return."""

    def __init__(self, total: int, label: str, stream: TextIO,
                 redraw_seconds: float = TEXT_REDRAW_SECONDS) -> None:
        self._total, self._label, self._stream = total, label, stream
        self._redraw_seconds = redraw_seconds
        self._done = 0
        self._started = self._drawn_at = time.monotonic()
        self._draw()

    def advance(self) -> None:
        self._done += 1
        now = time.monotonic()
        if self._done == self._total or now - self._drawn_at >= self._redraw_seconds:
            self._draw(now)

    def close(self) -> None:
        self._draw()
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._drawn_at = now
        filled = TEXT_BAR_WIDTH * self._done // self._total
        bar = "#" * filled + "." * (TEXT_BAR_WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {self._done}/{self._total} "
                           f"{now - self._started:.0f}s")
        self._stream.flush()


@contextmanager
def progress_bar(total: int, label: str, show: bool | None) -> Iterator[Callable[[], None]]:
    """Yield a function that advances the bar by one; a no-op when not shown."""
    style = _style()
    if show is None:
        show = style is not None
    if not show or total == 0:
        yield lambda: None
        return
    if style == "text":
        text_bar = TextBar(total, label, sys.stderr)
        try:
            yield text_bar.advance
        finally:
            text_bar.close()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)
