"""The FastAPI application: routes, error handlers, the guard, health and metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from rayfn.protocol.operations import RegistryApi
from rayfn.schemas import ErrorResponse, Health
from rayfn.settings import Settings
from rayfn_service.api import (
    errors,
    generator_routes,
    metrics,
    object_routes,
    output_routes,
    secret_routes,
    volume_routes,
)
from rayfn_service.api.backend import RegistryGateway
from rayfn_service.api.guard import Guard, TokenSource
from rayfn_service.api.routes import router
from rayfn_service.api.shortcut import Shortcuts
from rayfn_service.server_process import server_proof

DESCRIPTION = """Submit calls of deployed functions and poll for their results.

Every route but `/healthz` (and these docs) needs `Authorization: Bearer <token>`; the
token is in the state directory (`rayfn start` prints where). Errors answer with
`{"error": {"type": ..., "message": ...}}`.
"""


def create_app(settings: Settings) -> Guard:
    app = FastAPI(title="rayfn", version="1", description=DESCRIPTION)
    app.state.registry = RegistryGateway(settings)
    app.state.settings = settings
    errors.install(app)
    app.include_router(router)
    app.include_router(generator_routes.router)
    app.include_router(object_routes.router)
    app.include_router(output_routes.router)
    app.include_router(secret_routes.router)
    app.include_router(volume_routes.router)

    @app.get("/healthz", response_model=Health, response_model_exclude_none=True,
             summary="Liveness; no token needed")
    async def healthz(
        request: Request,
        challenge: Annotated[str | None, Query(
            max_length=256, description="A random string; the answer's `server` then "
            "proves this is the server of the state directory that asks (`rayfn start` "
            "checks it before using a server on its port).")] = None,
    ) -> Health:
        alive = await request.app.state.registry.alive()
        proof = server_proof(settings, challenge) if challenge else None
        return Health(status="ok" if alive else "degraded", registry=alive, server=proof)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}},
                        **{code: {"model": ErrorResponse} for code in (401, 503)}})
    async def prometheus(request: Request) -> Response:
        gateway: RegistryGateway = request.app.state.registry
        data = await gateway.call(RegistryApi.metrics)
        return Response(metrics.render(data), media_type=CONTENT_TYPE_LATEST)

    # The guard checks the token first, for the shortcuts as for every route.
    return Guard(Shortcuts(app, app.state.registry), token=TokenSource(settings),
                 max_body_bytes=settings.max_body_bytes)
