"""rayfn's REST app and a bare FastAPI route, served by one uvicorn process.

    python benchmarks/rest_server.py PORT

``/bare`` (GET, and POST with a JSON body) is the baseline: the same server, event loop
and HTTP stack as rayfn's routes, with no work behind it. Everything else goes to rayfn's
app exactly as ``rayfn start`` serves it (token guard included).
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

from rayfn.settings import get_settings
from rayfn_service.api.app import create_app
from rayfn_service.launch import connect_driver
from rayfn_service.ray_head import HeadInfo

bare = FastAPI()


@bare.get("/bare")
async def bare_get() -> dict[str, Any]:
    return {"state": "succeeded"}


@bare.post("/bare", status_code=202)
async def bare_post(body: dict[str, Any]) -> dict[str, Any]:
    return {"call_id": "fc-00000000000000000000000000"}


def combined(rayfn_app: Any) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bare":
            await bare(scope, receive, send)
        else:
            await rayfn_app(scope, receive, send)

    return app


def main() -> None:
    port = int(sys.argv[1])
    settings = get_settings()
    info = HeadInfo.load(settings)
    connect_driver(settings.address or (info.address if info else "auto"), settings,
                   log_to_driver=False)
    uvicorn.run(combined(create_app(settings)), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
