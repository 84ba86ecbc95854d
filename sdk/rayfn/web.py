"""Web endpoints: functions that return an ASGI app (FastAPI, Starlette, ...) to serve.

``@rayfn.asgi_app()`` under ``@app.function()`` marks the function; ``rayfn serve FILE``
serves the app on this machine (reloading when the file changes) and ``rayfn deploy FILE``
runs it on the cluster with Ray Serve. Such a function is served, never called with
``spawn``/``remote``.
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import inspect
import os
import sys
import types
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import cloudpickle

from rayfn.exception import ExecutionError, InvalidError, SerializationError
from rayfn.function import Function
from rayfn.options import WebEndpoint

if TYPE_CHECKING:
    from rayfn.app import App

__all__ = [
    "asgi_app",
    "web_endpoints",
    "endpoint_routes",
    "build_asgi_app",
    "local_app",
    "EndpointCode",
]

F = TypeVar("F", bound=Callable[..., Any])

# Where ``@asgi_app()`` leaves its mark on a plain function, for ``@app.function()`` to read.
WEB_ENDPOINT_ATTR = "__rayfn_web_endpoint__"


def asgi_app(
    _warn_parentheses_missing: object = None,
    *,
    label: str | None = None,
    custom_domains: object = None,
    requires_proxy_auth: bool = False,
) -> Callable[[F], F]:
    """Mark a function as a web endpoint that returns an ASGI app.

    Use it under ``@app.function()``::

        @app.function()
        @rayfn.asgi_app()
        def web():
            return fastapi_app

    ``label`` names the endpoint's URL path (default: the function's name, used when an
    app has several endpoints).
    """
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @rayfn.asgi_app() with parentheses")
    if custom_domains:
        raise InvalidError("custom_domains is not supported by rayfn")
    if requires_proxy_auth:
        raise InvalidError("requires_proxy_auth is not supported by rayfn")
    endpoint = WebEndpoint(kind="asgi", label=label)

    def mark(fn: F) -> F:
        if isinstance(fn, Function):
            # Applied above @app.function(): mark the Function itself.
            _check_factory(fn.get_raw_f())
            fn.options = dataclasses.replace(fn.options, web_endpoint=endpoint)
            return fn
        _check_factory(fn)
        setattr(fn, WEB_ENDPOINT_ATTR, endpoint)
        return fn

    return mark


def _check_factory(fn: object) -> None:
    if not callable(fn):
        raise InvalidError(f"@rayfn.asgi_app() decorates functions, not {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise InvalidError(
            f"{getattr(fn, '__name__', fn)}: an @asgi_app() function must be a plain `def` "
            "that returns the app, not `async def`"
        )
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return
    required = [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise InvalidError(
            f"{getattr(fn, '__name__', fn)}: an @asgi_app() function takes no arguments "
            f"(it has {', '.join(required)})"
        )


def web_endpoint_of(fn: object) -> WebEndpoint | None:
    """The mark ``@asgi_app()`` left on a plain function, if any."""
    endpoint = getattr(fn, WEB_ENDPOINT_ATTR, None)
    return endpoint if isinstance(endpoint, WebEndpoint) else None


def web_endpoints(app: App) -> dict[str, Function[..., Any]]:
    """The app's web endpoint functions, by function name."""
    return {
        name: function
        for name, function in app.registered_functions.items()
        if function.options.web_endpoint is not None
    }


def endpoint_routes(endpoints: Mapping[str, WebEndpoint | None]) -> dict[str, str]:
    """The URL path of each endpoint (by function name), relative to where they are served:
    ``""`` for an app's only endpoint, else ``/<label or function name>``."""
    if len(endpoints) == 1:
        return dict.fromkeys(endpoints, "")
    routes: dict[str, str] = {}
    taken: dict[str, str] = {}
    for name, endpoint in sorted(endpoints.items()):
        segment = (endpoint.label if endpoint is not None else None) or name
        if segment in taken:
            raise InvalidError(
                f"web endpoints {taken[segment]!r} and {name!r} both use the path /{segment}"
            )
        taken[segment] = name
        routes[name] = f"/{segment}"
    return routes


def build_asgi_app(factory: Callable[[], Any], name: str) -> Any:
    """Call an ``@asgi_app()`` function and check that it returned an ASGI app."""
    asgi = factory()
    if inspect.isawaitable(asgi):
        raise InvalidError(f"web endpoint {name!r} must return an ASGI app, not an awaitable")
    if asgi is None or not callable(asgi):
        raise InvalidError(f"web endpoint {name!r} must return an ASGI app, not {asgi!r}")
    return asgi


def local_app(app: App) -> tuple[Any, dict[str, str]]:
    """One ASGI app serving all of ``app``'s web endpoints here, and each one's path."""
    endpoints = web_endpoints(app)
    if not endpoints:
        raise InvalidError(
            f"app {app.name!r} has no web endpoints (functions decorated with "
            "@rayfn.asgi_app())"
        )
    routes = endpoint_routes({n: f.options.web_endpoint for n, f in endpoints.items()})
    apps = {n: build_asgi_app(f.get_raw_f(), n) for n, f in endpoints.items()}
    if len(apps) == 1:
        return next(iter(apps.values())), routes
    return _mount(apps, routes), routes


def _mount(apps: dict[str, Any], routes: dict[str, str]) -> Any:
    """Several endpoints under one server: each at its own path, their lifespans run."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for sub in apps.values():
                context = getattr(getattr(sub, "router", None), "lifespan_context", None)
                if context is not None:
                    await stack.enter_async_context(context(sub))
            yield

    return Starlette(
        routes=[Mount(routes[name], app=sub) for name, sub in sorted(apps.items())],
        lifespan=lifespan,
    )


# ---- shipping an endpoint to the cluster ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class EndpointCode:
    """How a Ray Serve replica gets an endpoint's ``@asgi_app()`` function.

    From a user's file, the replica runs the file anew as a module, as ``rayfn serve``
    does (and as Modal's containers do), so module-level objects (the FastAPI app, clients,
    locks) are built there rather than pickled. Code without a file (a notebook, a
    ``__main__`` script), modules of packages and installed modules are shipped pickled
    (user code by value, as for any function; installed modules by reference).
    """

    function: str  # the function's name in its App
    qualname: str
    module: str | None = None
    filename: str | None = None
    source: str | None = None
    pickled: bytes | None = None

    @classmethod
    def of(cls, function: Function[..., Any]) -> EndpointCode:
        raw = function.get_raw_f()
        qualname = str(getattr(raw, "__qualname__", function.name))
        module_name = getattr(raw, "__module__", None) or ""
        path = getattr(sys.modules.get(module_name), "__file__", None) or ""
        if (
            module_name != "__main__"
            and "." not in module_name  # a package's module: relative imports need the package
            and path.endswith(".py")
            and os.path.isfile(path)
            and "site-packages" not in path
            and "dist-packages" not in path
        ):
            with open(path, encoding="utf-8") as f:
                source = f.read()
            return cls(function.name, qualname, module_name, os.path.abspath(path), source)
        _register_reducers()
        try:
            pickled = bytes(cloudpickle.dumps(raw))
        except Exception as exc:
            raise SerializationError(
                f"cannot serialize web endpoint {function.name!r}: {exc}"
            ) from exc
        return cls(function.name, qualname, pickled=pickled)

    def load(self) -> Callable[[], Any]:
        """The ``@asgi_app()`` function, in this (replica) process."""
        if self.source is None:
            assert self.pickled is not None
            factory: Callable[[], Any] = cloudpickle.loads(self.pickled)
            return factory
        assert self.module is not None and self.filename is not None
        module = types.ModuleType(self.module)
        module.__file__ = self.filename
        folder = os.path.dirname(self.filename)
        if os.path.isdir(folder) and folder not in sys.path:
            sys.path.insert(0, folder)  # its neighbours, when the file's folder is here
        sys.modules[self.module] = module
        exec(compile(self.source, self.filename, "exec"), module.__dict__)
        from rayfn.app import App

        for value in list(vars(module).values()):
            if isinstance(value, App):
                function = value.registered_functions.get(self.function)
                raw = function.get_raw_f() if function is not None else None
                if raw is not None and getattr(raw, "__qualname__", None) == self.qualname:
                    return raw
        raise ExecutionError(
            f"{self.filename} no longer defines the web endpoint {self.function!r}"
        )


def _reduce_starlette_state(state: Any) -> tuple[Any, tuple[dict[str, Any]]]:
    return type(state), (dict(state._state),)


def _register_reducers() -> None:
    """Starlette's ``State`` (``app.state`` of every FastAPI app) cannot be unpickled
    (its ``__getattr__`` recurses); pickle it by its contents."""
    try:
        from starlette.datastructures import State
    except ImportError:  # no Starlette: nothing to fix
        return
    copyreg.pickle(State, _reduce_starlette_state)
