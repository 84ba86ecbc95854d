"""What all calls of an app print, as it is printed: for ``rayfn run`` and ``app.run()``.

Workers report a running attempt's output so far (``attempt_output``, cumulative and
bounded, see ``call_output``) and its final output with its outcome. The dispatcher hands
both here, with what it had before; the complete lines that are new go into a ring buffer
per app, which clients follow with a cursor (``RegistryApi.app_output``). Only live
output is kept, in memory: an ephemeral app's buffer opens when it is deployed, any other
app's when someone first follows it, and both close when the app stops.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import re
import time
from collections.abc import Callable

from rayfn.protocol.records import OutputLine, OutputPage

__all__ = ["AppOutput", "new_lines"]

MAX_LINES = 10_000  # per app
MAX_LINE_CHARS = 8 * 1024  # a longer line is cut
MAX_LINES_PER_PAGE = 1000
# call_output.CallLog.text()'s heading when it kept only the end of a long output.
_DROPPED = re.compile(r"\[(\d+) earlier characters not kept\]\n")


def _split(text: str) -> tuple[int, str]:
    """(Where ``text``'s kept part starts in all that was printed, the kept part)."""
    match = _DROPPED.match(text)
    return (int(match.group(1)), text[match.end():]) if match else (0, text)


def new_lines(before: str, after: str, final: bool) -> list[str]:
    """The complete lines in ``after`` (an attempt's output so far) that ``before`` (its
    output as last reported) did not complete yet; with ``final``, the last line also
    when it has no newline. Each line ends with a newline."""
    before_at, before_kept = _split(before)
    after_at, after_kept = _split(after)
    sent = before_at + before_kept.rfind("\n") + 1 if before_kept else before_at
    end = after_at + (len(after_kept) if final else after_kept.rfind("\n") + 1)
    start = max(sent, after_at)
    if end <= start:
        return []
    lines = after_kept[start - after_at:end - after_at].splitlines(keepends=True)
    if start > sent:  # printed and not kept between two reports
        lines.insert(0, f"[{start - sent} characters not kept]\n")
    return [line if line.endswith("\n") else line + "\n" for line in lines]


@dataclasses.dataclass
class _Buffer:
    first: int  # the cursor of this buffer's first line ever
    lines: collections.deque[tuple[int, OutputLine]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=MAX_LINES))
    next: int = 0

    def __post_init__(self) -> None:
        self.next = self.first


class AppOutput:
    """The ring buffers; ``notify(key)`` wakes who follows the app (see ``key``)."""

    def __init__(self, notify: Callable[[str], None]) -> None:
        self._buffers: dict[str, _Buffer] = {}
        self._notify = notify

    @staticmethod
    def key(app: str) -> str:
        """What a follower of ``app`` listens on among the registry's waiters (never a
        call ID)."""
        return f"app-output:{app}"

    def open(self, app: str) -> None:
        if app not in self._buffers:
            # Cursors start from the clock: a buffer made anew (the registry restarted)
            # starts past any cursor of the one before, so its followers read it all.
            self._buffers[app] = _Buffer(first=time.time_ns() // 1000)

    def close(self, app: str) -> None:
        if self._buffers.pop(app, None) is not None:
            self._notify(self.key(app))

    def is_open(self, app: str) -> bool:
        return app in self._buffers

    def progress(self, app: str, function: str, call_id: str, before: str, after: str,
                 final: bool) -> None:
        """An attempt of a call of ``app`` reported output (``final``: with its end)."""
        buffer = self._buffers.get(app)
        if buffer is None:
            return
        lines = new_lines(before, after, final)
        for text in lines:
            if len(text) > MAX_LINE_CHARS:
                text = text[:MAX_LINE_CHARS] + " [line cut]\n"
            buffer.lines.append((buffer.next, OutputLine(function, call_id, text)))
            buffer.next += 1
        if lines:
            self._notify(self.key(app))

    def page(self, app: str, cursor: int) -> OutputPage:
        """The lines from ``cursor`` on (all kept ones for a cursor of another buffer)."""
        buffer = self._buffers.get(app)
        if buffer is None:
            return OutputPage((), cursor)
        if not buffer.first <= cursor <= buffer.next:
            cursor = buffer.first
        oldest = buffer.lines[0][0] if buffer.lines else buffer.next
        marker: list[OutputLine] = []
        if cursor < oldest:
            marker.append(OutputLine("", "", f"[{oldest - cursor} lines not kept]\n"))
            cursor = oldest
        skip = cursor - oldest
        kept = [line for _, line in
                itertools.islice(buffer.lines, skip, skip + MAX_LINES_PER_PAGE)]
        return OutputPage(tuple(marker + kept), cursor + len(kept))
