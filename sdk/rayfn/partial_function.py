"""Decorators that mark what a class's methods are for, and how a function takes inputs:
``@method``, ``@enter``, ``@exit``, ``@concurrent``, ``@batched`` (Modal's names).

They only leave a mark on the function or class; ``@app.function()`` and ``@app.cls()``
read the marks (so they must be applied under those, as in Modal).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from rayfn.exception import InvalidError
from rayfn.options import check_batching, check_concurrency
from rayfn.web import asgi_app

__all__ = [
    "Batching",
    "Concurrency",
    "Role",
    "asgi_app",
    "batched",
    "batching_of",
    "check_batched_signature",
    "concurrency_of",
    "concurrent",
    "enter",
    "exit",
    "method",
    "role_of",
]

T = TypeVar("T")

_ROLE_ATTR = "__rayfn_role__"
_CONCURRENCY_ATTR = "__rayfn_concurrency__"
_BATCHING_ATTR = "__rayfn_batching__"


class Role(enum.Enum):
    """What a method of a class is for."""

    METHOD = "method"  # called with .remote / .spawn / .map
    ENTER = "enter"  # run once when a container starts
    EXIT = "exit"  # run once when a container stops


@dataclasses.dataclass(frozen=True)
class Concurrency:
    max_inputs: int
    target_inputs: int | None = None


@dataclasses.dataclass(frozen=True)
class Batching:
    max_batch_size: int
    wait_ms: int


def _not_applied_twice(fn: object, what: str) -> None:
    from rayfn.function import Function

    if isinstance(fn, Function):
        raise InvalidError(f"{what} goes under @app.function() / @app.cls(), not above it")
    if not callable(fn):
        raise InvalidError(f"{what} decorates functions and methods, not {fn!r}")


def _mark_role(fn: T, role: Role, what: str) -> T:
    _not_applied_twice(fn, what)
    previous = getattr(fn, _ROLE_ATTR, None)
    if previous is not None and previous is not role:
        raise InvalidError(f"{getattr(fn, '__name__', fn)!r} is already a @{previous.value}")
    setattr(fn, _ROLE_ATTR, role)
    return fn


def method(_warn_parentheses_missing: object = None, *, is_generator: bool | None = None
           ) -> Callable[[T], T]:
    """Mark a method of an ``@app.cls()`` class as callable remotely."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @rayfn.method() with parentheses")

    def mark(fn: T) -> T:
        yields = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        if is_generator is not None and is_generator != yields:
            raise InvalidError(f"@method(is_generator={is_generator}) on "
                               f"{getattr(fn, '__name__', fn)!r}, which "
                               f"{'yields' if yields else 'does not yield'}")
        return _mark_role(fn, Role.METHOD, "@method()")

    return mark


def enter(_warn_parentheses_missing: object = None, *, snap: bool = False) -> Callable[[T], T]:
    """Mark a method run once when a container starts, before its first input (load a
    model here). ``snap`` (memory snapshots) is accepted: a container here always runs
    its enter methods in full."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @rayfn.enter() with parentheses")
    if not isinstance(snap, bool):
        raise InvalidError(f"snap must be a bool, not {snap!r}")

    def mark(fn: T) -> T:
        return _mark_role(fn, Role.ENTER, "@enter()")

    return mark


def exit(_warn_parentheses_missing: object = None) -> Callable[[T], T]:  # noqa: A001
    """Mark a method run once when a container stops (it scales down, or its app stops)."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @rayfn.exit() with parentheses")

    def mark(fn: T) -> T:
        return _mark_role(fn, Role.EXIT, "@exit()")

    return mark


def concurrent(_warn_parentheses_missing: object = None, *, max_inputs: int,
               target_inputs: int | None = None) -> Callable[[T], T]:
    """Let one container take up to ``max_inputs`` inputs at once (threads for sync code,
    its event loop for async code); the pool sizes itself for ``target_inputs`` each."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @rayfn.concurrent(max_inputs=...) with parentheses")
    checked = Concurrency(*check_concurrency(max_inputs, target_inputs))

    def mark(target: T) -> T:
        _not_applied_twice(target, "@concurrent()")
        setattr(target, _CONCURRENCY_ATTR, checked)
        return target

    return mark


def batched(_warn_parentheses_missing: object = None, *, max_batch_size: int,
            wait_ms: int) -> Callable[[T], T]:
    """Call the function with lists of up to ``max_batch_size`` inputs, waiting at most
    ``wait_ms`` for a batch to fill. Each input is still its own call with its own
    result; the function returns one value per input, in order."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @rayfn.batched(max_batch_size=..., wait_ms=...)")
    checked = Batching(*check_batching(max_batch_size, wait_ms))

    def mark(fn: T) -> T:
        _not_applied_twice(fn, "@batched()")
        setattr(fn, _BATCHING_ATTR, checked)
        if getattr(fn, _ROLE_ATTR, None) is None:
            setattr(fn, _ROLE_ATTR, Role.METHOD)  # in a class, a batched method is called
        return fn

    return mark


def role_of(fn: object) -> Role | None:
    return getattr(fn, _ROLE_ATTR, None)


def concurrency_of(target: object) -> Concurrency | None:
    return getattr(target, _CONCURRENCY_ATTR, None)


def batching_of(target: object) -> Batching | None:
    return getattr(target, _BATCHING_ATTR, None)


def check_batched_signature(fn: Callable[..., Any], name: str) -> None:
    """``@batched`` needs plain parameters (lists at run time), at least one."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return
    if params and params[0].name == "self":
        params = params[1:]
    if not params:
        raise InvalidError(f"@batched function {name} must take at least one argument")
    for param in params:
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            raise InvalidError(f"@batched function {name} cannot take *args, **kwargs or "
                               f"keyword-only arguments ({param.name!r})")
        if param.default is not param.empty:
            raise InvalidError(f"@batched function {name}: argument {param.name!r} cannot "
                               "have a default")
        annotation = param.annotation
        if annotation is not param.empty and not _is_list_type(annotation):
            raise InvalidError(f"@batched function {name}: argument {param.name!r} is "
                               f"annotated {annotation!r}; it receives a list")


def _is_list_type(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.replace(" ", "").lower().startswith(("list", "typing.list"))
    return annotation is list or getattr(annotation, "__origin__", None) is list
