"""Showing what remote calls print, here: ``rayfn.enable_output()`` (Modal's
``modal.enable_output()``), on in ``rayfn run``.

Inside ``with rayfn.enable_output():``, ``with app.run():`` follows what every call of
the running app prints (its scheduled ones too) and writes it to this process's stdout as
it arrives: a thread asks the registry for new lines (``RegistryApi.app_output``) while
the block runs, and a last time once it ends, so the output of calls that have returned
is all shown before the app stops.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator

from rayfn._client import get_client
from rayfn.exception import NotFoundError
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.records import OutputLine

__all__ = ["enable_output", "following_output", "output_enabled"]

logger = logging.getLogger(__name__)

# Each request waits this long for a new line: how late the follower notices the end.
POLL_SECONDS = 1.0
RETRY_SECONDS = 1.0
MAX_FINAL_PAGES = 100  # the last drain's bound, should calls print without end

_lock = threading.Lock()
_enabled = 0


@contextlib.contextmanager
def enable_output(show_progress: bool = True) -> Iterator[None]:
    """Show what remote calls print while ``app.run()`` blocks run inside this one.

    ``show_progress`` is accepted for Modal's sake (rayfn shows no progress spinners).
    """
    global _enabled
    with _lock:
        _enabled += 1
    try:
        yield
    finally:
        with _lock:
            _enabled -= 1


def output_enabled() -> bool:
    return _enabled > 0


@contextlib.contextmanager
def following_output(app: str) -> Iterator[None]:
    """While the block runs, print what ``app``'s calls print (when output is enabled)."""
    if not output_enabled():
        yield
        return
    follower = _Follower(app)
    follower.start()
    try:
        yield
    finally:
        follower.stop()


class _Follower:
    def __init__(self, app: str) -> None:
        self._app = app
        self._cursor = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rayfn-output-{app}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop following, after a last look for lines printed before now."""
        self._stopping.set()
        self._thread.join()
        for _ in range(MAX_FINAL_PAGES):
            try:
                if not self._read(0.0):
                    return
            except Exception:  # the output is a courtesy: never fail the block for it
                logger.debug("cannot read the output of %s", self._app, exc_info=True)
                return

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._read(POLL_SECONDS)
            except NotFoundError:
                return  # the app has stopped
            except Exception:
                logger.debug("cannot read the output of %s yet", self._app, exc_info=True)
                self._stopping.wait(RETRY_SECONDS)

    def _read(self, wait: float) -> bool:
        """Print the lines from the cursor on; whether there were any."""
        page = get_client().call(RegistryApi.app_output, self._app, self._cursor, wait)
        self._cursor = page.cursor
        if page.lines:
            _write(page.lines)
        return bool(page.lines)


def _write(lines: tuple[OutputLine, ...]) -> None:
    stream = sys.stdout
    stream.write("".join(line.text for line in lines))
    stream.flush()
