"""Web endpoints: functions served over HTTP, Modal's four kinds.

Under ``@app.function()``: ``@rayfn.asgi_app()`` marks a function that returns an ASGI
app (FastAPI, Starlette, ...); ``@rayfn.fastapi_endpoint()`` (old name
``@rayfn.web_endpoint()``) makes the function itself the one route of a FastAPI app;
``@rayfn.wsgi_app()`` marks a function that returns a WSGI app (Flask, Django), served
through an ASGI adapter; ``@rayfn.web_server(port)`` marks a function that starts a server
on ``port``, which the endpoint forwards requests to (``rayfn.web_proxy``).

``rayfn serve FILE`` serves them on this machine (reloading when the file changes),
``rayfn deploy FILE`` and ``with app.run():`` on the cluster with Ray Serve. Such a
function is served, never called with ``spawn``/``remote``.
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
from rayfn.web_proxy import ServerProxy

if TYPE_CHECKING:
    from rayfn.app import App

__all__ = [
    "asgi_app",
    "fastapi_endpoint",
    "web_endpoint",
    "web_server",
    "wsgi_app",
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
    return _marker("asgi_app", _warn_parentheses_missing, custom_domains,
                   requires_proxy_auth, WebEndpoint(kind="asgi", label=label))


def fastapi_endpoint(
    _warn_parentheses_missing: object = None,
    *,
    method: str = "GET",
    label: str | None = None,
    docs: bool = False,
    custom_domains: object = None,
    requires_proxy_auth: bool = False,
) -> Callable[[F], F]:
    """Make the function the handler of a one-route FastAPI app: ``/``, with ``method``.

    FastAPI reads the query parameters and the JSON body from its signature, as in
    Modal; ``docs=True`` also serves ``/docs``. It may be ``async def``.
    """
    return _marker("fastapi_endpoint", _warn_parentheses_missing, custom_domains,
                   requires_proxy_auth,
                   WebEndpoint(kind="fastapi", label=label, method=str(method).upper(),
                               docs=docs))


def web_endpoint(
    _warn_parentheses_missing: object = None,
    *,
    method: str = "GET",
    label: str | None = None,
    docs: bool = False,
    custom_domains: object = None,
    requires_proxy_auth: bool = False,
) -> Callable[[F], F]:
    """Modal's old name of :func:`fastapi_endpoint`."""
    return fastapi_endpoint(_warn_parentheses_missing, method=method, label=label,
                            docs=docs, custom_domains=custom_domains,
                            requires_proxy_auth=requires_proxy_auth)


def wsgi_app(
    _warn_parentheses_missing: object = None,
    *,
    label: str | None = None,
    custom_domains: object = None,
    requires_proxy_auth: bool = False,
) -> Callable[[F], F]:
    """Mark a function as a web endpoint that returns a WSGI app (Flask, Django, ...)."""
    return _marker("wsgi_app", _warn_parentheses_missing, custom_domains,
                   requires_proxy_auth, WebEndpoint(kind="wsgi", label=label))


def web_server(
    port: int,
    *,
    startup_timeout: float = 5.0,
    label: str | None = None,
    custom_domains: object = None,
    requires_proxy_auth: bool = False,
) -> Callable[[F], F]:
    """Mark a function that starts a server listening on ``port`` (a thread, or a
    subprocess it leaves running); the endpoint forwards HTTP to it once the port accepts
    connections, within ``startup_timeout`` seconds."""
    return _marker("web_server", None, custom_domains, requires_proxy_auth,
                   WebEndpoint(kind="web_server", label=label, port=port,
                               startup_timeout=startup_timeout))


def _marker(
    decorator: str, parentheses_missing: object, custom_domains: object,
    requires_proxy_auth: bool, endpoint: WebEndpoint,
) -> Callable[[F], F]:
    if parentheses_missing is not None:
        raise InvalidError(f"use @rayfn.{decorator}() with parentheses")
    if custom_domains:
        raise InvalidError("custom_domains is not supported by rayfn")
    if requires_proxy_auth:
        endpoint = dataclasses.replace(endpoint, requires_auth=True)

    def mark(fn: F) -> F:
        if isinstance(fn, Function):
            # Applied above @app.function(): mark the Function itself.
            _check_factory(fn.get_raw_f(), endpoint, decorator)
            fn.options = dataclasses.replace(fn.options, web_endpoint=endpoint)
            return fn
        _check_factory(fn, endpoint, decorator)
        setattr(fn, WEB_ENDPOINT_ATTR, endpoint)
        return fn

    return mark


def _check_factory(fn: object, endpoint: WebEndpoint, decorator: str) -> None:
    if not callable(fn):
        raise InvalidError(f"@rayfn.{decorator}() decorates functions, not {fn!r}")
    if endpoint.kind == "fastapi":
        return  # the handler itself: FastAPI takes its parameters, sync or async
    name = getattr(fn, "__name__", fn)
    if inspect.iscoroutinefunction(fn):
        raise InvalidError(f"{name}: an @{decorator}() function must be a plain `def`, "
                           "not `async def`")
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return
    required = [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required[:1] == ["self"]:  # a method of an @app.cls() class: served on its instance
        required = required[1:]
    if required:
        raise InvalidError(f"{name}: an @{decorator}() function takes no arguments "
                           f"(it has {', '.join(required)})")


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


def build_asgi_app(factory: Callable[..., Any], name: str,
                   endpoint: WebEndpoint | None = None) -> Any:
    """The endpoint's ASGI app (see ``_build_app``), behind rayfn's token when it was
    marked ``requires_proxy_auth=True``."""
    app = _RequestInputs(_build_app(factory, name, endpoint))
    return _TokenRequired(app) if endpoint is not None and endpoint.requires_auth else app


class _RequestInputs:
    """Each request is an input, as in Modal: calls its handler spawns are recorded as the
    request's children (its ID, ``fc-…``, names no call), so a spawned call's graph has
    the request at its root, and ``current_input_id()`` names the request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from rayfn.protocol.ids import new_call_id
        from rayfn.runtime import calling

        with calling(new_call_id()):  # sync handlers' threads copy this context
            await self.app(scope, receive, send)


class _TokenRequired:
    """Modal's proxy auth on rayfn's terms: a request must carry the service's token, as
    ``Authorization: Bearer <token>`` (or Modal's ``Modal-Secret`` header); else 401."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not _has_token(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4401})
                return
            body = b'{"detail":"this endpoint requires the rayfn token"}'
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def _has_token(scope: dict[str, Any]) -> bool:
    import hmac

    from rayfn.settings import get_settings

    expected = get_settings().read_token()
    if not expected:
        return False  # no token to compare with: closed, never open
    for key, value in scope.get("headers", ()):
        given = value.decode("latin-1")
        if key == b"authorization" and given.startswith("Bearer "):
            given = given[len("Bearer "):]
        elif key != b"modal-secret":
            continue
        if hmac.compare_digest(given.encode(), expected.encode()):
            return True
    return False


def _build_app(factory: Callable[..., Any], name: str,
               endpoint: WebEndpoint | None = None) -> Any:
    """The ASGI app that serves a web endpoint of any kind (``asgi`` when ``endpoint`` is
    None): what an ``@asgi_app()`` function returns, checked; a FastAPI app around an
    ``@fastapi_endpoint()``; a WSGI app behind an adapter; a proxy to a web server."""
    kind = endpoint.kind if endpoint is not None else "asgi"
    if kind == "fastapi":
        assert endpoint is not None
        return _fastapi_app(factory, endpoint)
    if kind == "web_server":
        from rayfn.web_proxy import start_web_server

        assert endpoint is not None and endpoint.port is not None
        return start_web_server(factory, endpoint.port, endpoint.startup_timeout, name)
    made = factory()
    what = "a WSGI app" if kind == "wsgi" else "an ASGI app"
    if inspect.isawaitable(made):
        raise InvalidError(f"web endpoint {name!r} must return {what}, not an awaitable")
    if made is None or not callable(made):
        raise InvalidError(f"web endpoint {name!r} must return {what}, not {made!r}")
    if kind == "wsgi":
        from a2wsgi import WSGIMiddleware

        return WSGIMiddleware(made)
    return made


def _fastapi_app(handler: Callable[..., Any], endpoint: WebEndpoint) -> Any:
    """One route, ``/``, answered by ``handler`` (FastAPI reads its parameters)."""
    from fastapi import FastAPI

    app = FastAPI(docs_url="/docs" if endpoint.docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if endpoint.docs else None)
    app.add_api_route("/", handler, methods=[endpoint.method])
    return _RootSlash(app)


class _RootSlash:
    """Answers the endpoint's own URL (no trailing slash: what ``get_web_url`` gives, a
    Serve route prefix) as ``/`` instead of redirecting there, as Modal does."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            root = str(scope.get("root_path") or "")
            path = str(scope.get("path") or "")
            if path in ("", root):
                scope = {**scope, "path": root + "/", "raw_path": (root + "/").encode()}
        await self.app(scope, receive, send)


def local_app(app: App, base_url: str | None = None) -> tuple[Any, dict[str, str]]:
    """One ASGI app serving all of ``app``'s web endpoints here, and each one's path;
    with ``base_url`` (where it is served), each endpoint's ``get_web_url()`` gives its
    URL there."""
    endpoints = web_endpoints(app)
    if not endpoints:
        raise InvalidError(
            f"app {app.name!r} has no web endpoints (functions decorated with "
            "@rayfn.asgi_app(), fastapi_endpoint(), wsgi_app() or web_server())"
        )
    routes = endpoint_routes({n: f.options.web_endpoint for n, f in endpoints.items()})
    if base_url is not None:
        for n, f in endpoints.items():
            f._web_url = base_url + routes[n]
    apps = {n: build_asgi_app(f.get_raw_f(), n, f.options.web_endpoint)
            for n, f in endpoints.items()}
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
                inner = getattr(sub, "app", sub)  # a FastAPI app behind _RootSlash
                context = getattr(getattr(inner, "router", None), "lifespan_context", None)
                if context is not None:
                    await stack.enter_async_context(context(inner))
                if isinstance(sub, ServerProxy):  # stops the servers it started
                    stack.push_async_callback(sub.close)
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
        # dont_inherit: the file is compiled as its own, not with this module's __future__
        # flags (string annotations would hide FastAPI's parameter types).
        exec(compile(self.source, self.filename, "exec", dont_inherit=True), module.__dict__)
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
