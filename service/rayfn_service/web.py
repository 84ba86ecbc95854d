"""Deployed web endpoints, run by Ray Serve.

When an app is deployed (``rayfn deploy``, ``App.deploy``, ``POST /v1/apps/{app}``, and
``App.run`` for its ephemeral app), the registry commits the new version, then runs
:func:`sync_task` as a Ray task of its own to make Serve match it; stopping the app runs
:func:`remove_task`. The registry actor itself never imports Serve (slow to import) nor
unpickles an endpoint's code: the task does, in a worker.

Each endpoint is one Serve application named ``rayfn:<namespace>:<app>:<function>``
whose ingress deployment loads the endpoint's function (running the user's file
anew, see ``rayfn.web.EndpointCode``), calls it once per replica and serves the ASGI app
it returns, at ``/<app>`` (an app's only endpoint) or ``/<app>/<label or function>``,
behind Serve's HTTP proxy on ``127.0.0.1:RAYFN_RAY_SERVE_PORT``. The replica runs in the
app's Image (its runtime_env), and its code calls deployed functions through the
registry of the deploying namespace.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import cloudpickle
import ray

from rayfn.exception import ExecutionError
from rayfn.options import FunctionOptions, WebEndpoint
from rayfn.protocol.records import DeployedFunction
from rayfn.runtime import enter_cluster
from rayfn.settings import Settings
from rayfn.web import EndpointCode, build_asgi_app, endpoint_routes

__all__ = [
    "ServedEndpoint",
    "deploy_endpoints",
    "deployed_endpoints",
    "has_web_endpoint",
    "in_worker",
    "remove_endpoints",
    "remove_task",
    "sync_endpoints",
    "sync_task",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# Ray Serve's controller actor (ray.serve._private.constants), looked up without
# importing Serve, which is slow to import, so that apps without endpoints never pay for it.
SERVE_CONTROLLER_ACTOR = "SERVE_CONTROLLER_ACTOR"
SERVE_NAMESPACE = "serve"
SERVE_HOST = "127.0.0.1"

# Endpoint handlers call rayfn synchronously (spawn, get): a short, deliberate block of the
# replica's event loop, which Ray would otherwise warn about on every replica.
_REPLICA_ENV_VARS = {"RAY_WARN_BLOCKING_GET_INSIDE_ASYNC": "0"}


class WebEndpointReplica:
    """One replica of a deployed web endpoint (made a Serve ingress in ``_deployment``)."""

    def __init__(self, code: EndpointCode, namespace: str,
                 endpoint: WebEndpoint | None = None) -> None:
        enter_cluster(namespace)  # rayfn calls go to the deploying registry
        self._code = code
        self._endpoint = endpoint
        self._factory = code.load()

    def __serve_build_asgi_app__(self) -> Any:
        return build_asgi_app(self._factory, self._code.function, self._endpoint)


@dataclasses.dataclass(frozen=True)
class ServedEndpoint:
    """A web endpoint as Serve runs it: its options and how a replica loads its code."""

    options: FunctionOptions
    code: EndpointCode


def has_web_endpoint(options_json: str) -> bool:
    """Whether a deployed function's options (JSON) mark it a web endpoint."""
    return bool(json.loads(options_json).get("web_endpoint"))


def sync_task(
    app: str, functions: list[DeployedFunction], settings: Settings, had_endpoints: bool
) -> dict[str, str]:
    """The Ray task the registry runs after a deploy: :func:`sync_endpoints` for the
    app's functions, whose endpoints' code is an :class:`EndpointCode` pickled by the SDK."""
    endpoints = {
        f.name: ServedEndpoint(FunctionOptions.from_dict(json.loads(f.options)),
                               _endpoint_code(f))
        for f in functions if has_web_endpoint(f.options)
    }
    runtime_env = json.loads(functions[0].runtime_env) if functions else {}
    return sync_endpoints(app, endpoints, runtime_env, settings, had_endpoints=had_endpoints)


def _endpoint_code(function: DeployedFunction) -> EndpointCode:
    code = cloudpickle.loads(function.code)
    if not isinstance(code, EndpointCode):
        raise ExecutionError(f"web endpoint {function.name!r} was deployed without its "
                             "endpoint code; deploy it with rayfn's SDK")
    return code


def remove_task(app: str, settings: Settings) -> list[str]:
    """The Ray task the registry runs when an app stops: :func:`remove_endpoints`."""
    return remove_endpoints(app, settings)


async def in_worker(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` as a Ray task and await it (off the registry's process: Ray Serve's
    work), raising what it raised."""
    task = ray.remote(num_cpus=0, max_retries=0)(fn)
    try:
        answer: R = await task.remote(*args, **kwargs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise
    return answer


def _prefix(app: str, settings: Settings) -> str:
    return f"rayfn:{settings.namespace}:{app}:"


def serve_app_name(app: str, function: str, settings: Settings) -> str:
    return _prefix(app, settings) + function


def serve_running() -> bool:
    """Whether Ray Serve runs on the connected cluster (without starting it)."""
    try:
        ray.get_actor(SERVE_CONTROLLER_ACTOR, namespace=SERVE_NAMESPACE)
    except ValueError:
        return False
    return True


def deployed_endpoints(app: str, settings: Settings) -> list[str]:
    """Names of the app's functions that Ray Serve runs as web endpoints now."""
    if not serve_running():
        return []
    from ray import serve

    prefix = _prefix(app, settings)
    return sorted(
        name[len(prefix):] for name in serve.status().applications if name.startswith(prefix)
    )


def sync_endpoints(
    app: str,
    endpoints: Mapping[str, ServedEndpoint],
    runtime_env: dict[str, Any],
    settings: Settings,
    *,
    had_endpoints: bool = True,
) -> dict[str, str]:
    """Make Ray Serve run exactly ``endpoints`` (by function name) for ``app``: start or
    update them, remove those the app no longer has. Returns each endpoint's URL, by
    function name.

    ``had_endpoints=False`` (the version being replaced had none) spares an app without
    endpoints any work with Serve, which is slow to import.
    """
    urls = deploy_endpoints(app, endpoints, runtime_env, settings)
    if urls or had_endpoints:
        stale = [name for name in deployed_endpoints(app, settings) if name not in urls]
        _delete(app, stale, settings)
    return urls


def deploy_endpoints(
    app: str,
    endpoints: Mapping[str, ServedEndpoint],
    runtime_env: dict[str, Any],
    settings: Settings,
) -> dict[str, str]:
    """Run ``endpoints`` on Ray Serve (starting Serve if needed), in ``runtime_env`` (the
    app's Image); wait until each serves, and return its URL by function name."""
    if not endpoints:
        return {}
    from ray import serve

    if not serve_running():  # else Serve keeps the HTTP options it was started with
        serve.start(
            proxy_location="HeadOnly",
            http_options={"host": SERVE_HOST, "port": settings.ray_serve_port},
        )
    base_url = _base_url(settings)
    routes = endpoint_routes({name: f.options.web_endpoint for name, f in endpoints.items()})
    urls = {}
    for name, endpoint in sorted(endpoints.items()):
        route_prefix = f"/{app}{routes[name]}"
        deployment = _deployment(name, endpoint.options, runtime_env)
        try:
            serve.run(
                deployment.bind(endpoint.code, settings.namespace,
                                endpoint.options.web_endpoint),
                name=serve_app_name(app, name, settings),
                route_prefix=route_prefix,
                blocking=False,
            )
        except Exception as exc:
            raise ExecutionError(
                f"web endpoint {app}.{name} did not start on Ray Serve: {exc}"
            ) from exc
        urls[name] = base_url + route_prefix
    return urls


def remove_endpoints(app: str, settings: Settings) -> list[str]:
    """Stop serving the app's web endpoints; returns the functions that were served."""
    names = deployed_endpoints(app, settings)
    _delete(app, names, settings)
    return names


def _delete(app: str, names: list[str], settings: Settings) -> None:
    if not names:
        return
    from ray import serve

    for name in names:
        serve.delete(serve_app_name(app, name, settings))


def _deployment(name: str, options: FunctionOptions, runtime_env: dict[str, Any]) -> Any:
    from ray import serve

    env_vars = {**_REPLICA_ENV_VARS, **runtime_env.get("env_vars", {})}
    ray_actor_options = {**options.ray_options(),
                         "runtime_env": {**runtime_env, "env_vars": env_vars}}
    ingress = serve.ingress()(WebEndpointReplica)
    return serve.deployment(
        ingress,
        name=name,
        num_replicas=max(1, options.min_containers),
        ray_actor_options=ray_actor_options,
    )


def _base_url(settings: Settings) -> str:
    """Where Serve's proxy listens: what this deploy asked for, unless Serve was already
    running with other HTTP options (which Serve keeps)."""
    host, port = SERVE_HOST, settings.ray_serve_port
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        if client is not None:
            host, port = str(client.http_config.host), int(client.http_config.port)
    except Exception:  # a private API: fall back to what was asked for
        logger.debug("cannot read Serve's HTTP options", exc_info=True)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}"
