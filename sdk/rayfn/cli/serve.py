"""``rayfn serve``: an app's web endpoints on this machine, reloaded when the file changes.

uvicorn's reloader runs the server in a fresh process per change and needs an import
string, so the command passes the user's ``FILE[::APP]`` in environment variables and
points uvicorn at :func:`factory`, which imports the file anew in that process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import traceback
from pathlib import Path
from typing import Any

from rayfn.cli.output import harmless
from rayfn.exception import Error, InvalidError
from rayfn.network import is_loopback

logger = logging.getLogger("rayfn.serve")

FILE_ENV = "_RAYFN_SERVE_FILE"
APP_ENV = "_RAYFN_SERVE_APP"
RELOAD_ENV = "_RAYFN_SERVE_RELOAD"
FACTORY = "rayfn.cli.serve:factory"


def load(path: Path, app_ref: str | None) -> tuple[Any, dict[str, str], str]:
    """Import ``path`` and build the ASGI app serving its App's web endpoints.

    Returns the ASGI app, each endpoint's path (by function name) and the App's name.
    """
    from rayfn.cli.loader import find_app, import_file
    from rayfn.web import local_app

    app = find_app(import_file(path), path, app_ref)
    asgi, routes = local_app(app)
    return asgi, routes, app.name


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
        asgi, _, _ = load(Path(path), os.environ.get(APP_ENV) or None)
    except Exception as exc:
        if os.environ.get(RELOAD_ENV) != "1":
            raise
        # rayfn's own errors say what is wrong in one line; the user's code gets its
        # traceback. Both reach the terminal, so made harmless as the CLI's output is.
        trace = "" if isinstance(exc, Error) else "\n" + traceback.format_exc().rstrip()
        logger.error("cannot serve %s: %s: %s (waiting for a change)%s", harmless(path),
                     type(exc).__name__, harmless(exc), harmless(trace))
        return error_app(f"rayfn serve: {type(exc).__name__}: {exc}")
    connect_keeping_signals()
    return asgi


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


def connect_keeping_signals() -> None:
    """Connect the rayfn client now, and keep uvicorn's signal handlers.

    Joining Ray replaces the process's SIGTERM handler with one that exits at once, which
    would turn uvicorn's graceful shutdown (and its reloader's restarts) into tracebacks.
    Connecting here, while uvicorn's handlers are installed, lets us put them back; a
    handler's first rayfn call then finds the client ready.
    """
    from rayfn._client import get_client

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        get_client()
    except Error as exc:
        logger.warning("rayfn is not reachable yet (%s); endpoints will connect on use",
                       harmless(exc))
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


def run(path: Path, app_ref: str | None, host: str, port: int, reload: bool) -> None:
    """Serve until interrupted (uvicorn handles Ctrl-C and SIGTERM)."""
    import uvicorn

    resolved = path.resolve()
    os.environ[FILE_ENV] = str(resolved)
    os.environ[APP_ENV] = app_ref or ""
    os.environ[RELOAD_ENV] = "1" if reload else "0"
    options: dict[str, Any] = {}
    if reload:
        options = {
            "reload": True,
            "reload_dirs": [str(resolved.parent)],
            "reload_includes": [resolved.name],
        }
    uvicorn.run(FACTORY, factory=True, host=host, port=port, log_level="info", **options)
