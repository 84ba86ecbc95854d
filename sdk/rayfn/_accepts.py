"""Spawns in a burst are accepted in the background, many per request.

A ``spawn`` that follows another within ``spawn_burst_seconds`` (with nothing else done
in between: looking at a call or deploying ends a burst) returns as soon as its call is
queued here; a sender thread hands everything queued meanwhile to the registry
in one request (one commit). A caller spawning in a loop thus pays one round trip per
batch instead of one per call, as ``f.remote()`` in raw Ray returns before its task is
scheduled.

What keeps this safe: a call's ID is never observable before the call is committed.
Reading ``object_id``, printing or pickling the handle, ``get``, ``status``, ``cancel``
and ``gather`` wait for the call's own accept first, and raise the error that refused
it (``NotFoundError``, ``StoreError``, ...). The first spawn after a quiet spell, and
the first after a refusal, are sent and confirmed before ``spawn`` returns, so a
refusal also reaches a spawning loop at its next spawn. Pending accepts are flushed when
the process exits normally and when a task that spawned ends.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable

from rayfn._client.base import Client
from rayfn.protocol.operations import RegistryApi
from rayfn.settings import get_settings

logger = logging.getLogger(__name__)

# Refusals kept for calls nobody has looked at yet; past this, the oldest are dropped
# (their calls do not exist, so looking them up still fails, with NotFoundError).
_MAX_REFUSED = 100_000


@dataclasses.dataclass
class _Batch:
    client: Client
    app: str
    name: str
    parent: str | None  # the call whose code spawns them
    calls: list[tuple[str, bytes]] = dataclasses.field(default_factory=list)


class AcceptPipeline:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: dict[tuple[int, str, str, str | None], _Batch] = {}
        self._unconfirmed: set[str] = set()
        self._refused: collections.OrderedDict[str, BaseException] = collections.OrderedDict()
        self._last_spawn = -float("inf")
        self._last_refusal: BaseException | None = None
        self._sender: threading.Thread | None = None

    def spawn(self, client: Client, app: str, name: str, call_id: str, payload: bytes,
              parent: str | None = None) -> bool:
        """Accept one call; True if it is only queued (not yet confirmed)."""
        burst = get_settings().spawn_burst_seconds
        with self._cond:
            now = time.monotonic()
            queue_it = now - self._last_spawn < burst and self._last_refusal is None
            self._last_spawn = now
            if queue_it:
                key = (id(client), app, name, parent)
                batch = self._queue.get(key)
                if batch is None:
                    batch = self._queue[key] = _Batch(client, app, name, parent)
                batch.calls.append((call_id, payload))
                self._unconfirmed.add(call_id)
                self._ensure_sender()
                self._cond.notify_all()
                return True
        try:
            client.call(RegistryApi.spawn, app, name, [(call_id, payload)], None, parent)
        except BaseException as exc:
            with self._cond:
                self._last_refusal = exc
            raise
        with self._cond:
            self._last_refusal = None
        return False

    def end_burst(self) -> None:
        """The caller did something other than spawn: its next spawn is confirmed."""
        with self._cond:
            self._last_spawn = -float("inf")

    def wait(self, call_ids: Iterable[str]) -> None:
        """Return once these calls are committed; raise what refused one of them."""
        with self._cond:
            if not self._unconfirmed and not self._refused:
                return
            ids = list(call_ids)
            for call_id in ids:
                while call_id in self._unconfirmed:
                    self._cond.wait()
            for call_id in ids:
                refusal = self._refused.get(call_id)
                if refusal is not None:
                    raise refusal

    def pending(self) -> bool:
        with self._cond:
            return bool(self._unconfirmed)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued call has been answered (committed or refused);
        False if some still were not after ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._unconfirmed, timeout)

    def _ensure_sender(self) -> None:
        if self._sender is None:
            # Registered now, after the client connected: exit hooks run last-in first-out,
            # so this flush runs before Ray's own shutdown hook.
            atexit.register(_flush_at_exit)
        if self._sender is None or not self._sender.is_alive():
            self._sender = threading.Thread(target=self._send_forever, name="rayfn-accepts",
                                            daemon=True)
            self._sender.start()

    def _send_forever(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                batches = list(self._queue.values())
                self._queue.clear()
            for batch in batches:
                self._send(batch)

    def _send(self, batch: _Batch) -> None:
        size = get_settings().spawn_batch_size
        for start in range(0, len(batch.calls), size):
            chunk = batch.calls[start:start + size]
            refusal: BaseException | None = None
            try:
                batch.client.call(RegistryApi.spawn, batch.app, batch.name, chunk, None,
                                  batch.parent)
            except BaseException as exc:  # handed to whoever looks at these calls
                refusal = exc
            self._answered(chunk, refusal)

    def _answered(self, calls: list[tuple[str, bytes]], refusal: BaseException | None) -> None:
        with self._cond:
            for call_id, _ in calls:
                self._unconfirmed.discard(call_id)
                if refusal is not None:
                    self._refused[call_id] = refusal
            while len(self._refused) > _MAX_REFUSED:
                self._refused.popitem(last=False)
            if refusal is not None:
                self._last_refusal = refusal
            self._cond.notify_all()


_pipeline = AcceptPipeline()


def _forget_in_child() -> None:
    """A forked child has no sender thread and will never hear about its parent's queue."""
    global _pipeline
    _pipeline = AcceptPipeline()


os.register_at_fork(after_in_child=_forget_in_child)


def spawn(client: Client, app: str, name: str, call_id: str, payload: bytes,
          parent: str | None = None) -> bool:
    return _pipeline.spawn(client, app, name, call_id, payload, parent)


def wait(call_ids: Iterable[str]) -> None:
    _pipeline.wait(call_ids)


def end_burst() -> None:
    _pipeline.end_burst()


def settle() -> None:
    """Before an app changes: send what was spawned before, and end the burst."""
    _pipeline.flush()
    _pipeline.end_burst()


def flush(timeout: float | None = None) -> bool:
    return _pipeline.flush(timeout)


def pending() -> bool:
    return _pipeline.pending()


def _flush_at_exit() -> None:
    if not _pipeline.flush(timeout=get_settings().client_retry_seconds):
        logger.error("rayfn: some spawned calls were not yet accepted at exit")
