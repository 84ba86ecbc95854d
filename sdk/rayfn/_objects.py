"""What ``Dict`` and ``Queue`` share: a lazy handle on a named object in the registry,
pickled as its name, and ``ephemeral()`` blocks.

A handle does nothing when made: ``from_name(..., create_if_missing=True)`` creates the
object on first use, and any use of an object that does not exist raises NotFoundError.
Inside a call the handle reaches the registry over Ray, as every SDK call there does.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

import cloudpickle

from rayfn._aio import run_blocking
from rayfn._client import get_client
from rayfn.exception import InvalidError, SerializationError
from rayfn.protocol.names import validate_name
from rayfn.protocol.objects import Kind, ObjectInfo, ephemeral_name
from rayfn.protocol.operations import RegistryApi

__all__ = ["Ephemeral", "ObjectHandle", "dumps", "loads"]

H = TypeVar("H", bound="ObjectHandle")
T = TypeVar("T")
# Seconds a blocking wait asks for when it has no deadline (the registry caps each wait).
_FOREVER = 3600.0


def dumps(value: Any, what: str) -> bytes:
    try:
        return bytes(cloudpickle.dumps(value))
    except Exception as exc:  # pickling raises many types
        raise SerializationError(f"cannot serialize {what}: {exc}") from exc


def loads(data: bytes) -> Any:
    return cloudpickle.loads(data)


def check_timeout(timeout: object) -> float | None:
    """None (or infinity) waits forever; otherwise seconds >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or math.isnan(timeout) or timeout < 0:
        raise InvalidError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
    return None if math.isinf(timeout) else float(timeout)


def until(deadline: float | None, ask: Callable[[float], T], done: Callable[[T], bool]) -> T:
    """``ask(seconds)`` (a wait the registry serves, capped at a chunk) again and again
    until ``done`` with its answer or ``deadline`` (monotonic) passes."""
    while True:
        remaining = _FOREVER if deadline is None else max(deadline - time.monotonic(), 0.0)
        answer = ask(remaining)
        if done(answer) or (deadline is not None and time.monotonic() >= deadline):
            return answer


class ObjectHandle:
    _kind: ClassVar[Kind]

    def __init__(self, name: str, *, create_if_missing: bool = False,
                 ephemeral: bool = False) -> None:
        self._name = name
        self._ephemeral = ephemeral
        self._create = create_if_missing
        self._lock = threading.Lock()

    @classmethod
    def from_name(cls: type[H], name: str, *, environment_name: str | None = None,
                  create_if_missing: bool = False) -> H:
        """A handle on the object named ``name``; made on first use with
        ``create_if_missing``, else NotFoundError on first use if there is none."""
        if environment_name is not None:
            raise InvalidError("rayfn has one environment: leave environment_name unset")
        if not isinstance(create_if_missing, bool):
            raise InvalidError(f"create_if_missing must be True or False, not "
                               f"{create_if_missing!r}")
        return cls(validate_name(cls._kind, name), create_if_missing=create_if_missing)

    @classmethod
    def ephemeral(cls: type[H]) -> Ephemeral[H]:
        """A new object of its own, deleted when the ``with`` (or ``async with``) block
        ends."""
        return Ephemeral(cls)

    @property
    def name(self) -> str | None:
        """The object's name; None for an ephemeral one, as in Modal."""
        return None if self._ephemeral else self._name

    def _ready(self) -> str:
        """The name to send, after making the object if this handle is to."""
        if self._create:
            with self._lock:
                if self._create:
                    get_client().call(RegistryApi.object_open, self._kind, self._name, True)
                    self._create = False
        return self._name

    def _info(self) -> ObjectInfo:
        return get_client().call(RegistryApi.object_open, self._kind, self._ready(), False)

    def _max_bytes(self) -> int:
        return get_client().settings.max_input_bytes

    def __reduce__(self) -> tuple[Any, ...]:
        # Just the name: the object lives in the registry, not in the pickle. A handle
        # not used yet keeps create_if_missing, so the copy may be the one to make it.
        return _rebuild, (type(self), self._name, self._ephemeral, self._create)

    def __repr__(self) -> str:
        label = "ephemeral" if self._ephemeral else repr(self._name)
        return f"{type(self).__name__}.from_name({label})"


def _rebuild(cls: type[H], name: str, ephemeral: bool, create: bool = False) -> H:
    return cls(name, ephemeral=ephemeral, create_if_missing=create)


def delete(kind: Kind, name: str, allow_missing: bool) -> None:
    get_client().call(RegistryApi.object_delete, kind, validate_name(kind, name),
                      allow_missing)


class Ephemeral(Generic[H]):
    """``with Dict.ephemeral() as d:``: makes the object on entry, deletes it at exit."""

    def __init__(self, cls: type[H]) -> None:
        self._cls = cls
        self._handle: H | None = None

    def __enter__(self) -> H:
        name = ephemeral_name()
        get_client().call(RegistryApi.object_open, self._cls._kind, name, True, True)
        self._handle = self._cls(name, ephemeral=True)
        return self._handle

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._handle is not None:
            get_client().call(RegistryApi.object_delete, self._cls._kind,
                              self._handle._name, True)
            self._handle = None

    async def __aenter__(self) -> H:
        return await run_blocking(self.__enter__)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await run_blocking(self.__exit__, exc_type, exc, tb)


def batches(values: list[bytes], max_bytes: int) -> Iterator[list[bytes]]:
    """Consecutive runs of ``values`` of at most ``max_bytes`` each (one value at least),
    so that each fits in one request."""
    batch: list[bytes] = []
    size = 0
    for value in values:
        if batch and size + len(value) > max_bytes:
            yield batch
            batch, size = [], 0
        batch.append(value)
        size += len(value)
    if batch:
        yield batch
