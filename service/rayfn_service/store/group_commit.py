"""Group commit: writes from many concurrent requests share one transaction and one fsync.

Operations queue up while the previous transaction commits; the writer thread then runs
all of them in the next transaction, each inside its own savepoint so one failing
operation does not undo the others. Callers are answered only after the commit.

Only some writes must survive a power loss: accepting a call, cancelling it, deploying.
Those are ``durable`` and their transaction is fsynced (``synchronous=FULL``). The rest
(a call claimed for dispatch, an outcome) commit without an fsync: they survive any
process crash, and after a power loss the call is simply run again (execution is
at-least-once anyway), so they need not pay for the disk flush on the hot path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from rayfn.exception import StoreError
from rayfn_service.store.base import Store

T = TypeVar("T")
_Op = tuple[Callable[[], Any], "concurrent.futures.Future[Any]", bool]
_STOP = object()


class GroupCommit:
    def __init__(self, store: Store, max_batch: int = 10_000) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rayfn-group-commit", daemon=True)
        self._thread.start()

    async def run(self, op: Callable[[], T], *, durable: bool = True) -> T:
        """Run ``op`` (a store write) in the next transaction; return once committed
        (and, when ``durable``, flushed to disk)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((op, future, durable))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _take_batch(self) -> list[_Op] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch: list[_Op] = [first]  # type: ignore[list-item]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)
                break
            batch.append(item)  # type: ignore[arg-type]
        return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            # Skip ops whose caller was cancelled; the rest can no longer be cancelled, so
            # answering them below cannot raise InvalidStateError and kill this thread.
            batch = [(op, f, d) for op, f, d in batch if f.set_running_or_notify_cancel()]
            outcomes: list[tuple[concurrent.futures.Future[Any], Any, BaseException | None]] = []
            durable = any(d for _, _, d in batch)
            try:
                with self._store.transaction(durable=durable):
                    for op, future, _ in batch:
                        try:
                            with self._store.savepoint():
                                outcomes.append((future, op(), None))
                        except Exception as exc:
                            outcomes.append((future, None, exc))
            except Exception as exc:
                failure = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                for _, future, _ in batch:
                    future.set_exception(failure)
                continue
            for future, value, error in outcomes:
                if error is None:
                    future.set_result(value)
                else:
                    future.set_exception(error)  # a refused write: StoreError (savepoint)
