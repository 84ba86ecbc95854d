"""What one call prints: its own log, kept beside its outcome.

In a worker, ``sys.stdout`` and ``sys.stderr`` are tees: each write still goes to the
worker's stream (Ray's worker log, and the driver that prints it) and, while a call runs,
also to the call's log, in the order written. A worker runs one call at a time, so the
log holds that call's output only, also from threads it started. Output written to the
file descriptors directly (a subprocess, C code) reaches Ray's log but not the call's.

A log keeps the last ``MAX_LOG_CHARS`` characters, behind a line that says how much was
cut: a call that prints without end cannot fill the store.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

MAX_LOG_CHARS = 64 * 1024


class CallLog:
    """The output of one call, bounded to its last ``MAX_LOG_CHARS`` characters."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._dropped = 0
        self._lock = threading.Lock()  # the call's threads write; the watchdog reads
        self.writes = 0  # how many writes so far: tells a reader whether there is news

    def add(self, text: str) -> None:
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            self.writes += 1
            if self._size > 2 * MAX_LOG_CHARS:  # compact now and then, not on every write
                self._trim()

    def _trim(self) -> None:
        joined = "".join(self._parts)
        cut = max(0, len(joined) - MAX_LOG_CHARS)
        self._dropped += cut
        self._parts = [joined[cut:]]
        self._size = len(joined) - cut

    def text(self) -> str:
        with self._lock:
            self._trim()
        if not self._dropped:
            return self._parts[0] if self._parts else ""
        return f"[{self._dropped} earlier characters not kept]\n{self._parts[0]}"


class _Tee(io.TextIOBase):
    """A worker's stream that also writes to the log of the call running now, if any."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(text)
        log = _input_log.get() or _current
        if log is not None:
            log.add(text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:  # for code that writes to the descriptor itself
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")

    def __getattr__(self, name: str) -> object:  # ``buffer``, ``reconfigure``, ...
        return getattr(self._stream, name)


# The log of the call running in this worker. The tees stay in place between calls (one
# check per call, no new objects), and write to no log then.
_current: CallLog | None = None
# In a container that runs several inputs at once, each input's log is set in its own
# context (its task, or the thread it runs in), ahead of the worker-wide one.
_input_log: contextvars.ContextVar[CallLog | None] = contextvars.ContextVar(
    "rayfn_input_log", default=None)


def install_tees() -> None:
    if not isinstance(sys.stdout, _Tee):  # first call here, or code replaced the stream
        sys.stdout = _Tee(sys.stdout)
    if not isinstance(sys.stderr, _Tee):
        sys.stderr = _Tee(sys.stderr)


@contextlib.contextmanager
def captured_in_context() -> Iterator[CallLog]:
    """Collect what this context (one input of a container) prints into a ``CallLog``;
    threads it starts are not in its context, unlike ``captured``."""
    install_tees()
    log = CallLog()
    token = _input_log.set(log)
    try:
        yield log
    finally:
        _input_log.reset(token)


@contextlib.contextmanager
def captured() -> Iterator[CallLog]:
    """Collect what is printed meanwhile into a ``CallLog``."""
    global _current
    install_tees()
    log, previous = CallLog(), _current
    _current = log
    try:
        yield log
    finally:
        _current = previous
