"""The payload envelope: how arguments, results and errors travel as bytes.

The client pickles arguments, the executor pickles results and exceptions, the client
unpickles them again. The service in between only moves bytes, so it never needs the
user's modules.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import pickle
import traceback
from collections.abc import Callable
from typing import Any

import cloudpickle

from rayfn.exception import (
    CancelledError,
    Error,
    ExecutionError,
    FunctionTimeoutError,
    InvalidError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
)
from rayfn.states import CallState

# Values that pickle the same with the standard pickler as with cloudpickle (which only
# differs for code and classes), and several times faster: spawn_map pickles each input.
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


def dumps_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    if all(type(a) in _PLAIN for a in args) and all(
        type(v) in _PLAIN for v in kwargs.values()
    ):
        return pickle.dumps((args, kwargs), protocol=cloudpickle.DEFAULT_PROTOCOL)
    try:
        return bytes(cloudpickle.dumps((args, kwargs)))
    except Exception as exc:  # pickling raises many types (TypeError, PicklingError, ...)
        raise SerializationError(f"cannot serialize the arguments: {exc}") from exc


def check_arguments(
    fn: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """:class:`InvalidError` when ``fn``'s signature cannot take these arguments."""
    shape = _shape(fn)
    if shape is None:
        return
    signature, fewest, most = shape
    if not kwargs and fewest <= len(args) <= most:
        return  # what bind() would accept, without its cost per input
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        bare = signature.replace(
            parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
            return_annotation=signature.empty,
        )
        raise InvalidError(f"{name}{bare}: wrong arguments: {exc}") from None


@functools.lru_cache(maxsize=256)
def _shape(fn: Callable[..., Any]) -> tuple[inspect.Signature, float, float] | None:
    """``fn``'s signature and how many positional arguments it takes, worked out once:
    spawn_map checks every input. A required keyword-only parameter rules out the
    shortcut (fewest > most)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to check (some builtins)
        return None
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    fewest: float = sum(1 for p in positional if p.default is p.empty)
    most: float = (math.inf if any(p.kind is p.VAR_POSITIONAL for p in params)
                   else len(positional))
    if any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params):
        fewest, most = math.inf, -1.0
    return signature, fewest, most


def check_input_size(payload: bytes, limit: int, where: str) -> bytes:
    """``payload`` if it is at most ``limit`` bytes, else :class:`InvalidError`."""
    if len(payload) > limit:
        raise InvalidError(
            f"the arguments of {where} are {_size(len(payload))} pickled; the limit is "
            f"{_size(limit)} (RAYFN_MAX_INPUT_BYTES): pass large data by reference "
            "(a path or URL) instead"
        )
    return payload


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def loads_args(data: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments; :class:`SerializationError` when they cannot be rebuilt here
    (garbage bytes, or a class from a module this worker cannot import)."""
    try:
        args, kwargs = cloudpickle.loads(data)
        return tuple(args), dict(kwargs)
    except Exception as exc:
        raise SerializationError(
            f"cannot deserialize the arguments: {type(exc).__name__}: {exc}"
        ) from None


@dataclasses.dataclass(frozen=True)
class ErrorInfo:
    """A failure as data: the pickled exception when it pickles, and its text always."""

    type_name: str
    message: str
    traceback: str
    exception: bytes | None = None


@dataclasses.dataclass(frozen=True)
class CallOutcome:
    """What the service knows about a call's end, as the client receives it."""

    call_id: str
    state: CallState
    result: bytes | None = None
    error: ErrorInfo | None = None
    expired: bool = False
    result_json: str | None = None  # the value as JSON text, when it has one


def encode_result(value: Any) -> bytes:
    try:
        return bytes(cloudpickle.dumps(value))
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize the result of type {type(value).__qualname__}: {exc}"
        ) from exc


def encode_json(value: Any) -> str | None:
    """The value as strict JSON text, or None when it is not plain JSON data.

    Made next to the pickle so REST clients get JSON without anyone unpickling it.
    """
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None


def encode_exception(exc: BaseException) -> ErrorInfo:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    type_name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        pickled: bytes | None = bytes(cloudpickle.dumps(exc))
    except Exception:
        pickled = None
    return ErrorInfo(type_name=type_name, message=str(exc), traceback=text, exception=pickled)


def error_of(exc_type: type[Error], message: str) -> ErrorInfo:
    """An ErrorInfo for a failure rayfn itself diagnosed (not raised by user code)."""
    exc = exc_type(message)
    return ErrorInfo(
        type_name=f"{exc_type.__module__}.{exc_type.__qualname__}",
        message=message,
        traceback="",
        exception=bytes(cloudpickle.dumps(exc)),
    )


def rebuild_exception(error: ErrorInfo) -> BaseException:
    """The exception to raise in the client for a failed call."""
    exc: BaseException | None = None
    if error.exception is not None:
        try:
            exc = cloudpickle.loads(error.exception)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        return RemoteError(
            f"{error.type_name}: {error.message}",
            type_name=error.type_name,
            traceback=error.traceback,
        )
    if error.traceback:
        exc.__cause__ = RemoteTraceback(error.traceback)
    return exc


def unwrap(outcome: CallOutcome) -> Any:
    """Return the call's value, or raise what a terminal non-success outcome means."""
    if outcome.state is CallState.SUCCEEDED:
        assert outcome.result is not None
        return cloudpickle.loads(outcome.result)
    if outcome.state is CallState.CANCELLED:
        raise CancelledError(f"call {outcome.call_id} was cancelled")
    if outcome.error is None:  # a terminal state always carries its error; guard anyway
        raise ExecutionError(f"call {outcome.call_id} ended as {outcome.state} without detail")
    if outcome.state is CallState.TIMED_OUT:
        raise FunctionTimeoutError(outcome.error.message)
    raise rebuild_exception(outcome.error)
