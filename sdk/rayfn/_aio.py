"""The ``.aio`` form of blocking SDK methods, as in Modal's client.

``f.remote(x)`` blocks; ``await f.remote.aio(x)`` runs the same blocking call in a worker
thread, so the event loop keeps running meanwhile. A method that returns an iterator
(``f.map``) gets an ``.aio`` that is an async iterator, each ``next`` done in a thread.

The threads are a pool of this module's own, bounded: each waiting call holds a thread
(and, over REST, a connection of the HTTP client's pool of 100). Calls beyond the bound
wait in its queue, and one cancelled before its thread picked it up never runs. A call
cancelled while running keeps its thread until it returns: blocking code cannot be
interrupted from outside.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

__all__ = [
    "AioFunction",
    "AioIterFunction",
    "aio_function",
    "aio_iter_method",
    "aio_method",
    "iterate",
    "run_blocking",
]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")

# Below the HTTP client's 100 connections, so waiting calls never starve each other of one.
MAX_THREADS = 64

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="rayfn-aio")
        return _executor


def _forget_in_child() -> None:
    """A forked child has none of its parent's threads."""
    global _executor
    _executor = None


os.register_at_fork(after_in_child=_forget_in_child)


def _submit(fn: Callable[..., T], *args: Any) -> Future[T]:
    # The caller's context variables go with the call, as with asyncio.to_thread.
    return _pool().submit(contextvars.copy_context().run, fn, *args)


async def run_blocking(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn(*args, **kwargs)`` in a worker thread; the event loop runs on meanwhile."""
    return await asyncio.wrap_future(_submit(functools.partial(fn, *args, **kwargs)))


_END = object()


async def iterate(make: Callable[[], Iterator[T]]) -> AsyncGenerator[T, None]:
    """The items of the blocking iterator ``make()``, each one fetched in a worker thread."""
    iterator = await run_blocking(make)
    pending: Future[Any] | None = None
    try:
        while True:
            pending = _submit(next, iterator, _END)
            item = await asyncio.wrap_future(pending)
            if item is _END:
                return
            yield item
    finally:
        _close_later(iterator, pending)


def _close_later(iterator: Iterator[Any], pending: Future[Any] | None) -> None:
    """Close a generator left early (``break``, an error, cancellation), once the ``next``
    still running in its thread has returned: a running generator cannot be closed."""
    close = getattr(iterator, "close", None)
    if close is None:
        return
    if pending is None or pending.done():
        _submit(close)
    else:
        pending.add_done_callback(lambda _: close())


class _Blocking:
    """Named after the function it wraps; pickled by reference, as that function is."""

    __qualname__: str

    def __init__(self, named_after: Callable[..., Any]) -> None:
        for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(self, attribute, getattr(named_after, attribute, None))

    def __repr__(self) -> str:
        return f"<rayfn blocking function {self.__qualname__} (also .aio)>"

    def __reduce__(self) -> Any:
        # A string: pickle finds the object again by its qualified name in its module.
        return self.__qualname__


class _Bound(_Blocking):
    """``obj.method``: pickled as ``getattr(obj, name)``, as a bound method is."""

    __self__: object
    _attribute: str

    def _bind_to(self, owner: object, name: str) -> None:
        self.__self__ = owner
        self._attribute = name

    def __repr__(self) -> str:
        return f"<bound rayfn method {self.__qualname__} of {self.__self__!r} (also .aio)>"

    def __reduce__(self) -> Any:
        return getattr, (self.__self__, self._attribute)


class AioFunction(_Blocking, Generic[P, R]):
    """A blocking callable: call it as before, or ``await`` its ``.aio(...)``.

    As a class attribute it stays unbound, like a ``staticmethod``.
    """

    def __init__(self, fn: Callable[P, R], named_after: Callable[..., Any] | None = None
                 ) -> None:
        super().__init__(named_after or fn)
        self._fn = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._fn(*args, **kwargs)

    async def aio(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return await run_blocking(self._fn, *args, **kwargs)


class AioIterFunction(_Blocking, Generic[P, T]):
    """A callable that returns a blocking iterator; its ``.aio(...)`` is an async one."""

    def __init__(self, fn: Callable[P, Iterator[T]],
                 named_after: Callable[..., Any] | None = None) -> None:
        super().__init__(named_after or fn)
        self._fn = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._fn(*args, **kwargs)

    def aio(self, *args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[T, None]:
        return iterate(functools.partial(self._fn, *args, **kwargs))


def _bind(fn: Callable[Concatenate[S, P], R], owner: S) -> Callable[P, R]:
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return fn(owner, *args, **kwargs)

    return bound


class _BoundAioFunction(_Bound, AioFunction[P, R]):
    def __init__(self, fn: Callable[Concatenate[S, P], R], owner: S, name: str) -> None:
        AioFunction.__init__(self, _bind(fn, owner), fn)
        self._bind_to(owner, name)


class _BoundAioIterFunction(_Bound, AioIterFunction[P, T]):
    def __init__(self, fn: Callable[Concatenate[S, P], Iterator[T]], owner: S, name: str
                 ) -> None:
        AioIterFunction.__init__(self, _bind(fn, owner), fn)
        self._bind_to(owner, name)


class aio_method(Generic[S, P, R]):
    """Decorate a blocking instance method: ``obj.method(...)`` blocks as before and
    ``await obj.method.aio(...)`` does not. On the class it is unbound, taking ``self``."""

    def __init__(self, fn: Callable[Concatenate[S, P], R]) -> None:
        self._fn = fn
        self._name = fn.__name__
        self._unbound = AioFunction(fn)

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None
                ) -> AioFunction[Concatenate[S, P], R]: ...

    @overload
    def __get__(self, obj: S, owner: type[Any] | None = None) -> AioFunction[P, R]: ...

    def __get__(
        self, obj: S | None, owner: type[Any] | None = None
    ) -> AioFunction[Concatenate[S, P], R] | AioFunction[P, R]:
        if obj is None:
            return self._unbound
        return _BoundAioFunction(self._fn, obj, self._name)


class aio_iter_method(Generic[S, P, T]):
    """Decorate a method that returns a blocking iterator: ``obj.method.aio(...)`` is an
    async iterator over the same items (``async for x in f.map.aio(...)``)."""

    def __init__(self, fn: Callable[Concatenate[S, P], Iterator[T]]) -> None:
        self._fn = fn
        self._name = fn.__name__
        self._unbound = AioIterFunction(fn)

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None
                ) -> AioIterFunction[Concatenate[S, P], T]: ...

    @overload
    def __get__(self, obj: S, owner: type[Any] | None = None) -> AioIterFunction[P, T]: ...

    def __get__(
        self, obj: S | None, owner: type[Any] | None = None
    ) -> AioIterFunction[Concatenate[S, P], T] | AioIterFunction[P, T]:
        if obj is None:
            return self._unbound
        return _BoundAioIterFunction(self._fn, obj, self._name)


def aio_function(fn: Callable[P, R]) -> AioFunction[P, R]:
    """Decorate a blocking function, or a method that takes no ``self`` (in place of
    ``staticmethod``): ``await fn.aio(...)`` runs it in a worker thread."""
    return AioFunction(fn)
