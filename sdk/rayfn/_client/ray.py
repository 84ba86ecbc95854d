"""The client inside (or attached to) the Ray cluster: method calls on the registry actor.

Every call is safe to repeat (spawns carry their IDs), so while the registry restarts the
client retries with backoff for up to ``client_retry_seconds``.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Sequence
from typing import Any, ParamSpec, TypeVar

import ray

from rayfn.exception import ConnectionError
from rayfn.network import loopback_bootstrap
from rayfn.protocol.actor import RegistryActor
from rayfn.protocol.operations import Operation, RegistryApi
from rayfn.protocol.retry import Transient
from rayfn.settings import Settings

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# spawn_map batches sent before the first is answered: the client pickles the next
# batch while the registry commits the last, and batches that meet share one commit.
_SPAWNS_IN_FLIGHT = 4


def ray_address(settings: Settings) -> str:
    if settings.address:
        return settings.address
    try:
        return settings.address_file.read_text().strip()
    except FileNotFoundError:
        raise ConnectionError(
            f"rayfn is not running (no {settings.address_file}); start it with `rayfn start`, "
            "or set RAYFN_ADDRESS to a Ray cluster where it runs"
        ) from None


def ensure_ray(settings: Settings, log_to_driver: bool = True) -> None:
    """Connect this process to the cluster as a Ray driver, unless it already is.

    ``log_to_driver=False`` keeps Ray's own messages (autoscaler events) off this process's
    output, for commands whose output is data."""
    if ray.is_initialized():
        return
    settings.apply_ray_environment()
    address = ray_address(settings)
    try:
        with loopback_bootstrap(address):
            ray.init(
                address=address,
                logging_level=logging.WARNING,
                log_to_driver=log_to_driver,
                configure_logging=False,
            )
    except (ConnectionError, OSError, RuntimeError) as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


class RayClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        ensure_ray(settings)
        self._registry = RegistryActor(settings.namespace,
                                       retry_seconds=settings.client_retry_seconds,
                                       wait_seconds=settings.wait_chunk_seconds)
        self._registry.lookup()  # not running: say so now rather than retry

    def call(self, op: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._registry.call(op, *args, **kwargs)

    def spawn_batches(
        self, app: str, name: str, batches: Iterable[Sequence[tuple[str, bytes]]],
        parent: str | None = None,
    ) -> None:
        """Spawn batch after batch, a few in flight; return when all are committed.

        The registry runs one caller's requests in the order sent, so the batches are
        queued in order. A batch whose request fails is sent again through ``call``,
        which retries while the registry restarts (its IDs are accepted only once)."""
        in_flight: collections.deque[tuple[Any, list[tuple[str, bytes]]]] = collections.deque()
        for batch in batches:
            calls = list(batch)
            in_flight.append((self._registry.submit(RegistryApi.spawn, app, name, calls, None,
                                                    parent), calls))
            if len(in_flight) >= _SPAWNS_IN_FLIGHT:
                self._settle_spawn(app, name, parent, *in_flight.popleft())
        while in_flight:
            self._settle_spawn(app, name, parent, *in_flight.popleft())

    def _settle_spawn(
        self, app: str, name: str, parent: str | None, ref: Any, calls: list[tuple[str, bytes]]
    ) -> None:
        try:
            self._registry.result(ref)
        except Transient:
            self.call(RegistryApi.spawn, app, name, calls, None, parent)
