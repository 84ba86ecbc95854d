"""How the SDK reaches the service: one process-wide client, chosen by settings."""

from __future__ import annotations

import threading

from rayfn._client.base import Client
from rayfn.settings import Settings, get_settings

_lock = threading.Lock()
_client: Client | None = None
# Set by the executor inside a cluster task: the namespace of the registry running it.
_in_cluster_namespace: str | None = None


def set_in_cluster_namespace(namespace: str) -> None:
    global _in_cluster_namespace
    _in_cluster_namespace = namespace


def _make_client(settings: Settings) -> Client:
    """HTTP when a server URL is set (and not inside the cluster), else Ray."""
    if settings.server_url and _in_cluster_namespace is None:
        from rayfn._client.http import HttpClient

        return HttpClient(settings)
    from rayfn._client.ray import RayClient

    return RayClient(settings)


def get_client() -> Client:
    global _client
    with _lock:
        if _client is None:
            settings = get_settings()
            if _in_cluster_namespace is not None:
                settings = settings.model_copy(update={"namespace": _in_cluster_namespace})
            _client = _make_client(settings)
        return _client


def connect(
    address: str | None = None,
    *,
    token: str | None = None,
    namespace: str | None = None,
    state_dir: str | None = None,
) -> Client:
    """Point this process at a rayfn service and return its client.

    ``address`` is either a REST server URL (``http://host:8000``, with ``token``) or a
    Ray cluster address; with neither, the settings decide (``RAYFN_SERVER_URL``, else the
    cluster ``rayfn start`` recorded).
    """
    global _client
    update: dict[str, object] = {}
    if address is not None and address.startswith(("http://", "https://")):
        update["server_url"] = address
    elif address is not None:
        update["address"] = address
        update["server_url"] = ""
    if token is not None:
        update["token"] = token
    if namespace is not None:
        update["namespace"] = namespace
    if state_dir is not None:
        update["state_dir"] = state_dir
    settings: Settings = get_settings().model_copy(update=update)
    with _lock:
        _client = _make_client(settings)
        return _client


def reset() -> None:
    """Forget the process-wide client (the next use connects again)."""
    global _client
    with _lock:
        _client = None
