"""Web endpoints that are methods of a class, and endpoints behind rayfn's token, each
served by a real uvicorn on loopback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import rayfn
from rayfn import App
from rayfn.settings import get_settings

from .test_web_kinds import _serve, served


def test_a_class_method_endpoint_runs_enter_once_and_keeps_its_instance() -> None:
    app = App("cls-web")
    started: list[int] = []

    @app.cls()
    class Counter:
        @rayfn.enter()
        def load(self) -> None:
            started.append(1)
            self.count = 0

        @rayfn.fastapi_endpoint()
        def web(self, step: int = 1) -> dict[str, int]:
            self.count += step
            return {"count": self.count}

    assert "Counter.web" in app.registered_functions
    assert "Counter" not in app.registered_classes  # nothing to call but the endpoint
    with served(_serve(app)) as base:
        url = f"{base}/"  # an app's only endpoint is served at the root
        assert httpx.get(url, params={"step": 2}).json() == {"count": 2}
        assert httpx.get(url, params={"step": 3}).json() == {"count": 5}
        assert httpx.get(url, params={"step": "x"}).status_code == 422
    assert started == [1]


def test_a_class_keeps_its_methods_beside_its_endpoints() -> None:
    app = App("cls-web")

    @app.cls()
    class Model:
        @rayfn.method()
        def predict(self, x: int) -> int:
            return x

        @rayfn.asgi_app()
        def api(self) -> Any:
            from fastapi import FastAPI

            web = FastAPI()
            web.get("/ping")(lambda: "pong")
            return web

    assert "Model" in app.registered_classes and "Model.api" in app.registered_functions
    with served(_serve(app)) as base:
        assert httpx.get(f"{base}/ping").json() == "pong"


def test_requires_proxy_auth_asks_for_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYFN_TOKEN", "s3cret-token")
    get_settings.cache_clear()
    app = App("auth-web")

    @app.function()
    @rayfn.fastapi_endpoint(requires_proxy_auth=True)
    def private() -> str:
        return "inside"

    try:
        with served(_serve(app)) as base:
            assert httpx.get(f"{base}/").status_code == 401
            assert httpx.get(f"{base}/", headers={"Authorization": "Bearer wrong"}
                             ).status_code == 401
            assert httpx.get(f"{base}/", headers={"Authorization": "Bearer s3cret-token"}
                             ).json() == "inside"
            assert httpx.get(f"{base}/", headers={"Modal-Secret": "s3cret-token"}
                             ).json() == "inside"
    finally:
        get_settings.cache_clear()
