"""Web endpoints without Ray: the decorator, routes, shipping code, ``rayfn serve`` errors."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import sys
import textwrap
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import rayfn
from rayfn import App
from rayfn.cli.main import cli
from rayfn.exception import InvalidError
from rayfn.options import FunctionOptions, WebEndpoint
from rayfn.web import EndpointCode, endpoint_routes, local_app, web_endpoints

_counter = itertools.count()


def _fastapi_app(tag: str) -> Any:
    import fastapi

    web = fastapi.FastAPI()

    @web.get("/tag")
    def read_tag() -> dict[str, str]:
        return {"tag": tag}

    return web


# ---- the decorator -------------------------------------------------------------------


def test_asgi_app_under_app_function_makes_a_web_endpoint() -> None:
    app = App("web-test")

    @app.function()
    @rayfn.asgi_app()
    def web() -> Any:
        return _fastapi_app("one")

    assert web.options.web_endpoint == WebEndpoint(kind="asgi", label=None)
    assert web_endpoints(app) == {"web": web}
    assert callable(web.local())  # calling it here builds the app


def test_asgi_app_above_app_function_marks_the_function_too() -> None:
    app = App("web-test")

    @rayfn.asgi_app(label="api")
    @app.function(cpu=0.5)
    def web() -> Any:
        return _fastapi_app("one")

    assert web.options == FunctionOptions.build(cpu=0.5, web_endpoint=WebEndpoint(label="api"))
    assert app.registered_functions["web"] is web


def test_asgi_app_is_exported() -> None:
    assert "asgi_app" in rayfn.__all__


def test_plain_functions_are_not_web_endpoints() -> None:
    app = App("web-test")

    @app.function()
    def f() -> int:
        return 1

    assert f.options.web_endpoint is None
    assert web_endpoints(app) == {}


@pytest.mark.parametrize("method", ["spawn", "remote"])
def test_calling_a_web_endpoint_is_invalid(method: str) -> None:
    app = App("web-test")

    @app.function()
    @rayfn.asgi_app()
    def web() -> Any:
        return _fastapi_app("one")

    with pytest.raises(InvalidError, match="web endpoint.*rayfn serve"):
        getattr(web, method)()


def test_mapping_over_a_web_endpoint_is_invalid() -> None:
    app = App("web-test")

    @app.function()
    @rayfn.asgi_app()
    def web() -> Any:
        return _fastapi_app("one")

    with pytest.raises(InvalidError, match="web endpoint"):
        list(web.map([1]))
    with pytest.raises(InvalidError, match="web endpoint"):
        web.spawn_map([1])


def test_asgi_app_needs_parentheses() -> None:
    def web() -> Any: ...

    with pytest.raises(InvalidError, match="parentheses"):
        rayfn.asgi_app(web)


def test_asgi_app_function_takes_no_arguments() -> None:
    with pytest.raises(InvalidError, match="takes no arguments.*port"):

        @rayfn.asgi_app()
        def web(port: int) -> Any: ...


def test_asgi_app_function_is_not_async() -> None:
    with pytest.raises(InvalidError, match="async def"):

        @rayfn.asgi_app()
        async def web() -> Any: ...


@pytest.mark.parametrize("label", ["", "API", "my_api", "-api", "a" * 64, "a/b"])
def test_bad_labels_are_rejected(label: str) -> None:
    with pytest.raises(InvalidError, match="label"):
        rayfn.asgi_app(label=label)


@pytest.mark.parametrize(
    "kwargs", [{"custom_domains": ["example.com"]}]
)
def test_unsupported_modal_options_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidError, match="not supported"):
        rayfn.asgi_app(**kwargs)


def test_web_endpoint_options_round_trip_through_json() -> None:
    options = FunctionOptions.build(timeout=60, web_endpoint=WebEndpoint(label="api"))
    data = json.loads(json.dumps(options.to_dict()))
    assert data["web_endpoint"] == {"kind": "asgi", "label": "api", "method": "GET",
                                    "docs": False, "port": None, "startup_timeout": 5.0,
                                    "requires_auth": False}
    assert FunctionOptions.from_dict(data) == options
    # Stored before the other kinds existed: only kind and label.
    assert FunctionOptions.from_dict({**data, "web_endpoint": {"kind": "asgi",
                                                               "label": "api"}}) == options


def test_options_stored_before_web_endpoints_still_load() -> None:
    data = FunctionOptions.build(timeout=60).to_dict()
    del data["web_endpoint"]
    assert FunctionOptions.from_dict(data).web_endpoint is None


# ---- routes and the local app ----------------------------------------------------------


def test_one_endpoint_is_served_at_the_root() -> None:
    assert endpoint_routes({"web": WebEndpoint()}) == {"web": ""}
    assert endpoint_routes({"web": WebEndpoint(label="api")}) == {"web": ""}


def test_several_endpoints_get_a_path_each() -> None:
    routes = endpoint_routes({"web": WebEndpoint(), "admin_app": WebEndpoint(label="admin")})
    assert routes == {"web": "/web", "admin_app": "/admin"}


def test_two_endpoints_on_one_path_are_rejected() -> None:
    with pytest.raises(InvalidError, match="/web"):
        endpoint_routes({"web": WebEndpoint(), "other": WebEndpoint(label="web")})


def _get(asgi: Any, path: str) -> tuple[int, Any]:
    """One GET through the ASGI app, in this process."""
    import httpx

    async def get() -> tuple[int, Any]:
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get(path)
            is_json = response.headers.get("content-type") == "application/json"
            return response.status_code, response.json() if is_json else response.text

    return asyncio.run(get())


def _lifespan(asgi: Any) -> list[str]:
    """Run the app's startup and shutdown; the messages it answered with."""
    events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, str]:
        return events.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    asyncio.run(asgi(scope, receive, send))
    return sent


def test_local_app_mounts_several_endpoints() -> None:
    app = App("web-test")
    lifespans: list[str] = []

    @app.function()
    @rayfn.asgi_app()
    def first() -> Any:
        return _fastapi_app("first")

    @app.function()
    @rayfn.asgi_app(label="second-api")
    def second() -> Any:
        import fastapi

        @contextlib.asynccontextmanager
        async def lifespan(_: Any) -> AsyncIterator[None]:
            lifespans.append("startup")
            yield
            lifespans.append("shutdown")

        web = fastapi.FastAPI(lifespan=lifespan)
        web.get("/tag")(lambda: {"tag": "second"})
        return web

    asgi, routes = local_app(app)
    assert routes == {"first": "/first", "second": "/second-api"}
    assert _get(asgi, "/first/tag") == (200, {"tag": "first"})
    assert _get(asgi, "/second-api/tag") == (200, {"tag": "second"})
    assert _get(asgi, "/tag")[0] == 404
    sent = _lifespan(asgi)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert lifespans == ["startup", "shutdown"]  # the mounted apps' own lifespans ran


def test_local_app_of_one_endpoint_is_its_own_app() -> None:
    app = App("web-test")
    built = _fastapi_app("only")

    @app.function()
    @rayfn.asgi_app()
    def only() -> Any:
        return built

    served, routes = local_app(app)
    assert routes == {"only": ""}
    assert served.app is built  # behind only the layer that makes each request an input


def test_an_endpoint_must_return_an_asgi_app() -> None:
    app = App("web-test")

    @app.function()
    @rayfn.asgi_app()
    def broken() -> Any:
        return None

    with pytest.raises(InvalidError, match="must return an ASGI app"):
        local_app(app)


def test_an_app_without_endpoints_has_no_local_app() -> None:
    with pytest.raises(InvalidError, match="no web endpoints"):
        local_app(App("web-test"))


# ---- shipping the code to a replica ---------------------------------------------------

ENDPOINT_FILE = """
    import fastapi
    import rayfn

    app = rayfn.App("shipped")
    web_app = fastapi.FastAPI()
    web_app.state.greeting = "hello"

    @app.function()
    @rayfn.asgi_app()
    def web():
        return web_app

    @web_app.get("/greet")
    def greet():
        return {"greeting": web_app.state.greeting, "module": __name__}
"""


@pytest.fixture
def module_names() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


def _greet(factory: Any) -> Any:
    status, body = _get(factory(), "/greet")
    assert status == 200
    return body


def test_a_file_is_shipped_as_source_and_run_anew(
    tmp_path: Path, module_names: list[str]
) -> None:
    from rayfn.cli.loader import import_file

    stem = f"rayfn_web_file_{next(_counter)}"
    module_names.append(stem)
    path = tmp_path / f"{stem}.py"
    path.write_text(textwrap.dedent(ENDPOINT_FILE))
    module = import_file(path)
    code = EndpointCode.of(module.web)
    assert code.source is not None and code.pickled is None
    assert code.filename == str(path) and code.qualname == "web"
    del sys.modules[stem]  # as in a fresh replica process
    factory = code.load()
    assert sys.modules[stem] is not module
    assert _greet(factory) == {"greeting": "hello", "module": stem}


def test_code_without_a_file_is_shipped_pickled(module_names: list[str]) -> None:
    """A notebook's or ``__main__``'s endpoint: pickled, FastAPI's app.state included."""
    name = f"rayfn_web_nofile_{next(_counter)}"
    module_names.append(name)
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(textwrap.dedent(ENDPOINT_FILE), module.__dict__)
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    try:
        code = EndpointCode.of(module.web)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    assert code.source is None and code.pickled is not None
    del sys.modules[name]
    assert _greet(code.load()) == {"greeting": "hello", "module": name}


def test_serve_controller_names_match_ray() -> None:
    from ray.serve._private import constants

    from rayfn_service import web

    assert web.SERVE_CONTROLLER_ACTOR == constants.SERVE_CONTROLLER_NAME
    assert web.SERVE_NAMESPACE == constants.SERVE_NAMESPACE


# ---- `rayfn serve` argument errors -------------------------------------------------------


@pytest.fixture
def user_file(tmp_path: Path, module_names: list[str]) -> Any:
    def write(source: str) -> Path:
        stem = f"rayfn_serve_file_{next(_counter)}"
        module_names.append(stem)
        path = tmp_path / f"{stem}.py"
        path.write_text(textwrap.dedent(source))
        return path

    return write


def _serve(*args: str) -> Any:
    return CliRunner().invoke(cli, ["serve", *args])


def _one_line_error(result: Any, message: str) -> None:
    assert result.exit_code != 0, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output


def test_serve_a_missing_file(tmp_path: Path) -> None:
    result = _serve(str(tmp_path / "absent.py"))
    assert result.exit_code == 1
    _one_line_error(result, "no such file")


def test_serve_a_file_without_an_app(user_file: Any) -> None:
    result = _serve(str(user_file("x = 1\n")))
    assert result.exit_code == 1
    _one_line_error(result, "defines no rayfn App")


def test_serve_an_app_without_web_endpoints(user_file: Any) -> None:
    path = user_file(
        """
        import rayfn
        app = rayfn.App("no-endpoints")

        @app.function()
        def f():
            return 1
        """
    )
    result = _serve(str(path))
    assert result.exit_code == 1
    _one_line_error(result, "has no web endpoints")


def test_serve_an_unknown_app(user_file: Any) -> None:
    path = user_file("import rayfn\napp = rayfn.App('one')\n")
    result = _serve(f"{path}::other")
    assert result.exit_code == 1
    _one_line_error(result, "has no App named 'other'")


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_serve_a_bad_port(user_file: Any, port: str) -> None:
    path = user_file("import rayfn\napp = rayfn.App('one')\n")
    result = _serve(str(path), "--port", port)
    assert result.exit_code == 2
    _one_line_error(result, "--port")


def test_serve_on_a_port_in_use(user_file: Any) -> None:
    path = user_file(
        """
        import rayfn
        app = rayfn.App("busy")

        @app.function()
        @rayfn.asgi_app()
        def web():
            return None
        """
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _serve(str(path), "--port", str(port))
    assert result.exit_code == 1
    _one_line_error(result, f"cannot serve on 127.0.0.1:{port}")


def test_a_web_endpoint_is_deployed_as_the_code_its_replicas_load() -> None:
    """The registry serves endpoints itself (in a Ray task), whichever transport deployed
    them: what it stores for an endpoint is the EndpointCode, for a plain function the
    function."""
    import cloudpickle

    app = App("web-payload")

    @app.function()
    @rayfn.asgi_app()
    def web() -> Any:
        return _fastapi_app("one")

    @app.function()
    def plain(x: int) -> int:
        return x

    shipped = {f.name: cloudpickle.loads(f.code) for f in app._payload()}
    assert isinstance(shipped["web"], EndpointCode) and shipped["web"].function == "web"
    assert shipped["plain"](3) == 3


@pytest.mark.parametrize("reload", [True, False])
def test_serve_factory_with_a_broken_file(
    user_file: Any, monkeypatch: pytest.MonkeyPatch, reload: bool
) -> None:
    """While reloading, a broken file is served as a 500 naming the error (the server
    process stays up for the next change); without reloading it fails."""
    from rayfn.cli import serve

    path = user_file("import rayfn\napp = rayfn.App('broken'\n")
    monkeypatch.setenv(serve.FILE_ENV, str(path))
    monkeypatch.setenv(serve.APP_ENV, "")
    monkeypatch.setenv(serve.RELOAD_ENV, "1" if reload else "0")
    if not reload:
        with pytest.raises(InvalidError, match="syntax error"):
            serve.factory()
        return
    status, body = _get(serve.factory(), "/anything")
    assert status == 500 and "syntax error: line 2" in body
    assert _lifespan(serve.factory()) == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


def test_a_file_loaded_by_a_replica_keeps_its_own_annotations(tmp_path: Path) -> None:
    """The replica compiles the user's file as its own: rayfn's ``from __future__ import
    annotations`` must not turn its annotations into strings FastAPI cannot resolve."""
    from rayfn.web import EndpointCode

    source = (
        "import rayfn\n"
        "app = rayfn.App('replica-file')\n"
        "@app.function()\n"
        "@rayfn.asgi_app()\n"
        "def web():\n"
        "    from fastapi import FastAPI, Request\n"
        "    api = FastAPI()\n"
        "    @api.post('/run')\n"
        "    async def run(request: Request):\n"
        "        return await request.json()\n"
        "    return api\n")
    path = tmp_path / "replica_file.py"
    path.write_text(source)
    code = EndpointCode("web", "web", "replica_file", str(path), source)
    try:
        api = code.load()()
    finally:
        sys.modules.pop("replica_file", None)
    route = next(r for r in api.routes if getattr(r, "path", "") == "/run")
    assert route.dependant.request_param_name == "request"
