"""Progress bars for long maps: shown in terminals and notebooks, silent elsewhere."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def interactive() -> bool:
    if sys.stderr is not None and sys.stderr.isatty():
        return True
    # Rich draws live bars in Jupyter only through ipywidgets; without it, it just warns.
    return "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None


@contextmanager
def progress_bar(total: int, label: str, show: bool | None) -> Iterator[Callable[[], None]]:
    """Yield a function that advances the bar by one; a no-op when not shown."""
    if not (interactive() if show is None else show) or total == 0:
        yield lambda: None
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
