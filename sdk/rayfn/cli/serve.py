"""``rayfn serve``: an app's web endpoints on this machine, reloaded when the file changes.

uvicorn's reloader runs the server in a fresh process per change and needs an import
string, so the command passes the user's ``FILE[::APP]`` in environment variables and
points uvicorn at :func:`factory`, which imports the file anew in that process.

As ``modal serve`` does, the app's other functions run meanwhile as an ephemeral app: the
command picks its name, each server process deploys the file's functions under it (a new
version per reload) and routes the app's calls there, and the command stops it on exit.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rayfn.cli.output import harmless
from rayfn.exception import Error, InvalidError, NotFoundError
from rayfn.network import is_loopback

if TYPE_CHECKING:
    from rayfn.app import App

logger = logging.getLogger("rayfn.serve")

FILE_ENV = "_RAYFN_SERVE_FILE"
APP_ENV = "_RAYFN_SERVE_APP"
RELOAD_ENV = "_RAYFN_SERVE_RELOAD"
EPHEMERAL_ENV = "_RAYFN_SERVE_EPHEMERAL"  # the ephemeral app's name
URL_ENV = "_RAYFN_SERVE_URL"  # where the endpoints are served, for get_web_url()
FACTORY = "rayfn.cli.serve:factory"


def load(path: Path, app_ref: str | None) -> tuple[Any, dict[str, str], App]:
    """Import ``path`` and build the ASGI app serving its App's web endpoints.

    Returns the ASGI app, each endpoint's path (by function name) and the App, whose calls
    go to the ephemeral app named in ``EPHEMERAL_ENV`` when it is set.
    """
    from rayfn.cli.loader import find_app, import_file
    from rayfn.web import local_app

    app = find_app(import_file(path), path, app_ref)
    ephemeral = os.environ.get(EPHEMERAL_ENV)
    if ephemeral:
        app._running_name = ephemeral  # as inside app.run(): calls go there
    asgi, routes = local_app(app, os.environ.get(URL_ENV) or None)
    return asgi, routes, app


def factory() -> Any:
    """uvicorn's app factory, in each (re)started server process.

    While reloading, a file that cannot be served (a syntax error, no endpoint left) gives
    an app answering 500 with the reason until the next change: a server process that
    exited would leave the reloader's socket accepting connections nobody answers.
    """
    path = os.environ.get(FILE_ENV)
    if not path:
        raise InvalidError(f"{FACTORY} is for `rayfn serve` ({FILE_ENV} is not set)")
    try:
        asgi, _, app = load(Path(path), os.environ.get(APP_ENV) or None)
        if connect_keeping_signals():
            deploy_functions(app)
    except Exception as exc:
        if os.environ.get(RELOAD_ENV) != "1":
            raise
        # rayfn's own errors say what is wrong in one line; the user's code gets its
        # traceback. Both reach the terminal, so made harmless as the CLI's output is.
        trace = "" if isinstance(exc, Error) else "\n" + traceback.format_exc().rstrip()
        logger.error("cannot serve %s: %s: %s (waiting for a change)%s", harmless(path),
                     type(exc).__name__, harmless(exc), harmless(trace))
        return error_app(f"rayfn serve: {type(exc).__name__}: {exc}")
    return asgi


def deploy_functions(app: App) -> None:
    """Deploy the app's functions but its web endpoints (served here, not on Serve)
    under the ephemeral app's name, if ``rayfn serve`` named one."""
    from rayfn._client import get_client
    from rayfn.protocol.operations import RegistryApi

    ephemeral = os.environ.get(EPHEMERAL_ENV)
    if not ephemeral:
        return
    functions = [f for f in app._payload() if not json.loads(f.options).get("web_endpoint")]
    if functions:
        get_client().call(RegistryApi.deploy, ephemeral, functions, True)
        logger.info("functions %s run as the ephemeral app %s",
                    ", ".join(f.name for f in functions), harmless(ephemeral))


def ephemeral_name(app: str) -> str:
    """A name of its own for the app's functions while ``rayfn serve`` runs."""
    from rayfn.protocol.ids import new_call_id
    from rayfn.protocol.names import MAX_NAME_LENGTH

    suffix = ".serve-" + new_call_id()[-10:].lower()
    return app[: MAX_NAME_LENGTH - len(suffix)] + suffix


def stop_ephemeral(name: str) -> None:
    """Stop the ephemeral app, if a server process deployed it."""
    from rayfn.app import stop_app

    try:
        stop_app(name)
    except NotFoundError:
        pass
    except Error as exc:
        logger.warning("cannot stop the ephemeral app %s: %s", harmless(name), harmless(exc))


def error_app(message: str) -> Any:
    """An ASGI app that answers every request with HTTP 500 and ``message``."""
    body = (message + "\n").encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": body})

    return app


def connect_keeping_signals() -> bool:
    """Connect the rayfn client now, and keep uvicorn's signal handlers.

    Joining Ray replaces the process's SIGTERM handler with one that exits at once, which
    would turn uvicorn's graceful shutdown (and its reloader's restarts) into tracebacks.
    Connecting here, while uvicorn's handlers are installed, lets us put them back; a
    handler's first rayfn call then finds the client ready. Returns whether it connected.
    """
    from rayfn._client import get_client

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        get_client()
        return True
    except Error as exc:
        logger.warning("rayfn is not reachable yet (%s); endpoints will connect on use",
                       harmless(exc))
        return False
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)


def check_port_free(host: str, port: int) -> None:
    """Fail with one clear line, before uvicorn starts, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise InvalidError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def exposure_warning(host: str, port: int) -> str | None:
    """What to tell the user when ``host`` makes the endpoints reachable from other
    machines (None for loopback): they run with this machine's rayfn access."""
    if is_loopback(host):
        return None
    return (f"serving on {host or 'every address'}:{port}, beyond this machine: anyone "
            "who can reach it can call these endpoints, and through them the deployed "
            "functions they call; use --host 127.0.0.1 unless that is intended")


def url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def run(path: Path, app_ref: str | None, host: str, port: int, reload: bool,
        app_name: str) -> None:
    """Serve until interrupted (uvicorn handles Ctrl-C and SIGTERM), then stop the
    ephemeral app the server processes deployed."""
    import uvicorn

    resolved = path.resolve()
    ephemeral = ephemeral_name(app_name)
    os.environ[FILE_ENV] = str(resolved)
    os.environ[APP_ENV] = app_ref or ""
    os.environ[RELOAD_ENV] = "1" if reload else "0"
    os.environ[EPHEMERAL_ENV] = ephemeral
    os.environ[URL_ENV] = f"http://{url_host(host)}:{port}"
    options: dict[str, Any] = {}
    if reload:
        options = {
            "reload": True,
            "reload_dirs": [str(resolved.parent)],
            "reload_includes": [resolved.name],
        }
    # uvicorn re-raises the SIGTERM it stopped on once it is done, with the handler it
    # found: this one ends the command by an exception, so the ephemeral app is stopped.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run(FACTORY, factory=True, host=host, port=port, log_level="info", **options)
    finally:
        stop_ephemeral(ephemeral)
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
