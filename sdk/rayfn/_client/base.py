"""What the SDK asks of the service, whatever the transport: the registry's operations
(``rayfn.protocol.operations``), passed as themselves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ParamSpec, Protocol, TypeVar

from rayfn.protocol.operations import Operation
from rayfn.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


class Client(Protocol):
    settings: Settings

    def call(self, op: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run one registry operation: ``client.call(RegistryApi.status, call_id)``."""
        ...

    def spawn_batches(
        self, app: str, name: str, batches: Iterable[Sequence[tuple[str, bytes]]],
        parent: str | None = None,
    ) -> None:
        """Spawn batch after batch (``spawn_map``); return when all are committed.
        ``parent``: the call whose code spawns them."""
        ...
