"""Web endpoints that are methods of an ``@app.cls()`` class (Modal's pattern for an
endpoint with expensive set-up in ``@enter``).

Each such method is served as an endpoint of its own, named ``Class.method`` (its URL
path ``class-method``), by a handler with the method's signature less ``self``. The
handler makes the class's instance (parameters at their defaults) and runs its
``@enter`` methods once per serving process, at its first request; ``@exit`` methods do
not run.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import threading
from collections.abc import Callable
from typing import Any

from rayfn.options import WebEndpoint
from rayfn.partial_function import Role

__all__ = ["endpoint_label", "endpoint_methods", "method_handler"]


def endpoint_methods(user_cls: type) -> dict[str, tuple[Callable[..., Any], WebEndpoint]]:
    """The class's methods marked as web endpoints, by name."""
    from rayfn.web import web_endpoint_of

    found = {}
    for name, member in vars(user_cls).items():
        endpoint = web_endpoint_of(member)
        if endpoint is not None and callable(member):
            found[name] = (member, endpoint)
    return found


def endpoint_label(cls_name: str, method: str) -> str:
    """Modal's URL label of a class's endpoint: ``class-method``, lowercase."""
    label = re.sub(r"[^a-z0-9-]+", "-", f"{cls_name}-{method}".lower()).strip("-")
    return label[:63].rstrip("-") or "endpoint"


def method_handler(user_cls: type, name: str) -> Callable[..., Any]:
    """A plain function that serves ``user_cls.name`` on an instance made once."""
    method = vars(user_cls)[name]
    made: list[Any] = []
    lock = threading.Lock()

    def instance() -> Any:
        with lock:
            if not made:
                made.append(_started(user_cls))
            return made[0]

    if inspect.iscoroutinefunction(method):
        async def handler(*args: Any, **kwargs: Any) -> Any:
            return await getattr(instance(), name)(*args, **kwargs)
    else:
        def handler(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return getattr(instance(), name)(*args, **kwargs)

    functools.update_wrapper(handler, method)
    del handler.__wrapped__  # type: ignore[attr-defined]  # FastAPI reads the one below
    signature = inspect.signature(method)
    handler.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:])
    handler.__qualname__ = f"{user_cls.__qualname__}.{name}"
    return handler


def _started(user_cls: type) -> Any:
    from rayfn.cls import _parameters, instantiate, lifecycle_methods

    defaults = {p.name: p.default for p in _parameters(user_cls) if p.has_default}
    target = instantiate(user_cls, defaults)
    for enter in lifecycle_methods(user_cls, Role.ENTER):
        result = getattr(target, enter)()
        if inspect.isawaitable(result):
            asyncio.run(_awaited(result))
    return target


async def _awaited(value: Any) -> Any:
    return await value
