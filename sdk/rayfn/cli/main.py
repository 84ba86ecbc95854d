"""``rayfn``: start the service, deploy and run apps, inspect and control calls.

Commands parse arguments and delegate to the SDK or the launcher; a user's mistake
prints one line and exits 1, without a traceback. Everything printed goes through
:mod:`rayfn.cli.output`, which shows user and cluster text literally.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import inspect
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click

from rayfn.cli.image import image_group
from rayfn.cli.output import say, show, table
from rayfn.cli.schedules import next_runs
from rayfn.cli.secret import secret_group
from rayfn.cli.volume import volume_group
from rayfn.exception import Error, InvalidError
from rayfn.exception import TimeoutError as RayfnTimeoutError
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.variants import parse_target
from rayfn.settings import get_settings

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int = 1) -> None:
    say(message, err=True, label="Error:")
    sys.exit(code)


def friendly_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RayfnTimeoutError as exc:
            _fail(str(exc), code=2)
        except Error as exc:
            _fail(str(exc))
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception:
            # A bug, or the user's own code (`rayfn run`): its traceback, which may quote
            # remote text, printed as harmlessly as everything else.
            say(traceback.format_exc(), err=True, nl=False)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(package_name="rayfn")
def cli() -> None:
    """rayfn: Modal's job-processing model on any Ray cluster."""


# ---- service -------------------------------------------------------------------


@cli.command()
@click.option("--address", default=None, help="Attach to this running Ray cluster "
              "('auto' finds the local one) instead of starting a local head.")
@click.option("--num-cpus", type=click.IntRange(min=0), default=None,
              help="CPUs of the local Ray head (default: RAYFN_NUM_CPUS, else all).")
@friendly_errors
def start(address: str | None, num_cpus: int | None) -> None:
    """Start rayfn: a local Ray head (unless --address) and the registry. Idempotent."""
    from rayfn_service import launch
    from rayfn_service.server_process import server_url

    settings = get_settings()
    info = launch.start(settings, address=address, num_cpus=num_cpus)
    where = "started by rayfn" if info.started_by_rayfn else "attached"
    say(f"rayfn is running on Ray at {info.address} ({where})")
    say(f"state: {settings.state_dir}")
    if settings.start_server:
        say(f"REST server: {server_url(settings)}  (token: cat {settings.token_file})")


@cli.command()
@friendly_errors
def stop() -> None:
    """Stop rayfn (and the local Ray head it started; an attached cluster keeps running)."""
    from rayfn_service import launch

    say(launch.stop(get_settings()))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly_errors
def status(as_json: bool) -> None:
    """Show the cluster's nodes and what each function holds on them, the registry, and
    each function's queue."""
    from rayfn._client import get_client
    from rayfn._client.ray import RayClient, ensure_ray
    from rayfn.cli import nodes as node_view

    settings = get_settings()
    if not settings.server_url:
        ensure_ray(settings, log_to_driver=False)  # no autoscaler events in the output
    client = get_client()
    stats = client.call(RegistryApi.stats)
    in_cluster = isinstance(client, RayClient)
    nodes = node_view.cluster_nodes(stats) if in_cluster else []
    registry = client.call(RegistryApi.ping) if in_cluster else None
    if as_json:
        say(json.dumps({
            "nodes": [dataclasses.asdict(n) for n in nodes],
            "registry": registry,
            "functions": [s.model_dump(mode="json") for s in stats],
        }, indent=2))
        return
    width = node_view.id_width([n.node_id for n in nodes]
                               + [node_id for s in stats for node_id in s.nodes])
    if in_cluster:
        show(node_view.nodes_table(nodes, width))
    if registry is not None:
        started = datetime.datetime.fromtimestamp(registry["started_at"]).isoformat(
            timespec="seconds")
        say(f"registry: running since {started} (pid {registry['pid']}, node "
            f"{registry['node_id'][:width]}), store {registry['store']}")
    else:
        say(f"server: {client.settings.server_url}")
    show(table(
        ("app", "function", "queued", "running", "retrying", "in Ray", "window", "on nodes"),
        ((s.app, readable(s.function), s.queued, s.running, s.retrying, s.in_ray, s.window,
          node_view.holdings(s.nodes, width)) for s in stats),
        title="functions",
    ))


@cli.group(name="token")
def token_group() -> None:
    """The REST server's bearer token (it grants full control of the service)."""


@token_group.command(name="rotate")
@friendly_errors
def token_rotate() -> None:
    """Write a new token file (mode 0600); the running server refuses the old token."""
    from rayfn_service.server_process import rotate_token

    settings = get_settings()
    path = rotate_token(settings)
    say(f"wrote a new token to {path}; the old token no longer works")
    if settings.token:
        say("RAYFN_TOKEN is set; a server started with it keeps using that value, not the "
            "file", err=True, label="Note:", color="yellow")


# ---- apps ----------------------------------------------------------------------


@cli.command()
@click.argument("ref")
@click.option("--name", default=None, help="Deploy under this app name instead.")
@friendly_errors
def deploy(ref: str, name: str | None) -> None:
    """Deploy the App in FILE[::APP]."""
    from rayfn.cli.loader import find_app, import_file, split_ref

    path, app_ref = split_ref(ref)
    app = find_app(import_file(path), path, app_ref)
    version = app.deploy(name)
    functions = ", ".join(sorted(app.registered_functions))
    say(f"deployed app {app.name!r} version {version}: {functions}")
    for fn_name, function in sorted(app.registered_functions.items()):
        url = function.get_web_url()
        if url:
            say(f"web endpoint {fn_name}: {url}")


@cli.command()
@click.argument("ref")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback unless told otherwise).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on (default: RAYFN_SERVE_PORT, 8100).")
@click.option("--reload/--no-reload", default=True, show_default=True,
              help="Restart the server when FILE changes.")
@friendly_errors
def serve(ref: str, host: str, port: int | None, reload: bool) -> None:
    """Serve the web endpoints of the App in FILE[::APP] here.

    One endpoint is served at /, several at /<label or function name>. The app's other
    functions run meanwhile as an ephemeral app (redeployed on each reload, stopped on
    exit), so the endpoints' calls of them need no deploy.
    """
    from rayfn.cli import serve as serving
    from rayfn.cli.loader import find_app, import_file, split_ref
    from rayfn.web import endpoint_routes, web_endpoints

    path, app_ref = split_ref(ref)
    app = find_app(import_file(path), path, app_ref)
    endpoints = web_endpoints(app)
    if not endpoints:
        raise InvalidError(
            f"app {app.name!r} in {path} has no web endpoints "
            "(functions decorated with @rayfn.asgi_app(), fastapi_endpoint(), wsgi_app() "
            "or web_server())"
        )
    routes = endpoint_routes({n: f.options.web_endpoint for n, f in endpoints.items()})
    port = port or get_settings().serve_port
    serving.check_port_free(host, port)
    exposed = serving.exposure_warning(host, port)
    if exposed:
        say(exposed, err=True, label="Warning:", color="yellow")
    base = f"http://{serving.url_host(host)}:{port}"
    for fn_name, route in sorted(routes.items()):
        say(f"web endpoint {fn_name}: {base}{route or '/'}")
    if reload:
        say(f"reloading when {path} changes; Ctrl-C stops")
    sys.stdout.flush()
    serving.run(path, app_ref, host, port, reload, app.name)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("ref")
@click.pass_context
@friendly_errors
def run(ctx: click.Context, ref: str) -> None:
    """Run a local entrypoint (or a function) of FILE[::NAME] inside an ephemeral app.

    The entrypoint's parameters become --flags: `rayfn run job.py --data x`. An
    `async def` entrypoint is awaited.
    """
    from rayfn.app import LocalEntrypoint
    from rayfn.cli.flags import command_for
    from rayfn.cli.loader import find_runnable, import_file, split_ref
    from rayfn.output import enable_output

    path, name = split_ref(ref)
    target = find_runnable(import_file(path), path, name)
    if isinstance(target, LocalEntrypoint):
        fn, app = target.fn, target.app

        def invoke(**kwargs: Any) -> Any:
            with app.run():
                return _run_to_end(fn(**kwargs))
    else:
        function = target
        fn = function.get_raw_f()
        if function.app is None:
            raise InvalidError(f"{function!r} belongs to no App")
        app = function.app

        def invoke(**kwargs: Any) -> Any:
            with app.run():
                result = function.remote(**kwargs)
            say(repr(result))
            return result

    command = command_for(fn, getattr(target, "name", "run"), invoke)
    try:
        with enable_output():  # what the app's calls print is shown here, as Modal does
            command.main(args=ctx.args, prog_name=f"rayfn run {ref}", standalone_mode=False)
    except click.UsageError as exc:
        _fail(exc.format_message())


def _run_to_end(value: Any) -> Any:
    """What an entrypoint returned; an ``async def`` one's coroutine is awaited (on a
    loop of its own, ended before the app stops)."""
    return asyncio.run(value) if inspect.iscoroutine(value) else value


@cli.group(name="app")
def app_group() -> None:
    """List and stop deployed apps."""


@app_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly_errors
def app_list(as_json: bool) -> None:
    """List deployed apps."""
    from rayfn._client import get_client

    apps = get_client().call(RegistryApi.list_apps)
    if as_json:
        say(json.dumps([a.model_dump(mode="json") for a in apps], indent=2))
        return
    show(table(("app", "version", "functions", "ephemeral", "next scheduled run"),
               ((a.name, a.version, ", ".join(a.functions), a.ephemeral,
                 next_runs(a.schedules)) for a in apps)))


@app_group.command(name="stop")
@click.argument("name")
@friendly_errors
def app_stop(name: str) -> None:
    """Stop app NAME; its unfinished calls are cancelled, its web endpoints removed."""
    from rayfn.app import stop_app

    cancelled = stop_app(name)
    say(f"stopped app {name!r}; cancelled {cancelled} unfinished calls")


# ---- calls ---------------------------------------------------------------------


@cli.group(name="call")
def call_group() -> None:
    """Inspect and control calls by ID."""


def _print_status(status: Any) -> None:
    say(json.dumps(status.describe(), indent=2))


@call_group.command(name="status")
@click.argument("call_id")
@friendly_errors
def call_status(call_id: str) -> None:
    """Show a call's state, attempts, timestamps and error."""
    from rayfn.call import FunctionCall

    _print_status(FunctionCall.from_id(call_id).status())


@call_group.command(name="get")
@click.argument("call_id")
@click.option("--timeout", type=float, default=0.0, show_default=True,
              help="Seconds to wait for the result; 0 checks once.")
@friendly_errors
def call_get(call_id: str, timeout: float) -> None:
    """Print a call's result (exit 2 while it is still pending)."""
    from rayfn.call import FunctionCall

    try:
        value = FunctionCall.from_id(call_id).get(timeout=timeout)
    except Error:
        raise
    except Exception as exc:  # the call's own exception, re-raised from the cluster
        _fail(f"the call raised {type(exc).__name__}: {exc}")
    say(repr(value))


@call_group.command(name="logs")
@click.argument("call_id")
@friendly_errors
def call_logs(call_id: str) -> None:
    """Print what a call's attempts printed to stdout and stderr."""
    from rayfn.call import FunctionCall

    say(FunctionCall.from_id(call_id).logs(), nl=False)


@call_group.command(name="cancel")
@click.argument("call_id")
@friendly_errors
def call_cancel(call_id: str) -> None:
    """Cancel a call: queued ones never run, running ones are stopped."""
    from rayfn.call import FunctionCall
    from rayfn.states import CallState

    status = FunctionCall.from_id(call_id).cancel()
    _print_status(status)
    if status.state is not CallState.CANCELLED:  # it had ended before: nothing changed
        say(f"{call_id} had already finished ({status.state.value}); nothing to cancel",
            err=True)


@call_group.command(name="list")
@click.option("--app", default=None)
@click.option("--function", default=None)
@click.option("--state", default=None, help="queued, running, retrying, succeeded, ...")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@friendly_errors
def call_list(app: str | None, function: str | None, state: str | None, limit: int) -> None:
    """List recent calls, newest first."""
    from rayfn._client import get_client
    from rayfn.protocol.records import CallQuery
    from rayfn.states import CallState

    try:
        call_state = CallState(state) if state else None
    except ValueError:
        raise InvalidError(f"unknown state {state!r}") from None
    query = CallQuery(app=app, function=function, state=call_state, limit=limit)
    calls = get_client().call(RegistryApi.list_calls, query)
    show(table(("call", "function", "state", "attempts", "error"),
               ((s.call_id, f"{s.app}.{readable(s.function)}", s.state.value, s.attempts,
                 s.error_type or "") for s in calls)))


cli.add_command(secret_group)
cli.add_command(image_group)
# ---- command groups of their own modules ----

cli.add_command(volume_group)
for _command in volume_group.commands.values():
    _command.callback = friendly_errors(_command.callback) if _command.callback else None


if __name__ == "__main__":  # pragma: no cover
    cli()


def readable(function: str) -> str:
    """A variant's name as people write it (``Model(size=1)``), a plain name as it is."""
    try:
        return parse_target(function).describe()
    except InvalidError:
        return function
