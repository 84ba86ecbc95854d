"""What the SDK asks of the service, whatever the transport."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from rayfn._payload import Outcome
from rayfn.schemas import AppInfo, CallStatus, FunctionInfo, FunctionStats
from rayfn.settings import Settings

DeployedFunction = tuple[str, str, bytes, str]  # name, options JSON, code, runtime_env JSON


class Client(Protocol):
    settings: Settings

    def deploy(
        self, app: str, functions: Sequence[DeployedFunction], ephemeral: bool = False
    ) -> int: ...
    def stop_app(self, app: str) -> int: ...
    def list_apps(self) -> list[AppInfo]: ...
    def function_info(self, app: str, name: str) -> FunctionInfo: ...
    def spawn(self, app: str, name: str, calls: Sequence[tuple[str, bytes]]) -> None: ...
    def spawn_batches(
        self, app: str, name: str, batches: Iterable[Sequence[tuple[str, bytes]]]
    ) -> None: ...
    def get(self, call_id: str, timeout: float | None) -> Outcome: ...
    def get_many(self, call_ids: Sequence[str], timeout: float) -> list[Outcome]: ...
    def status(self, call_id: str) -> CallStatus: ...
    def cancel(self, call_id: str) -> CallStatus: ...
    def list_calls(
        self,
        app: str | None = None,
        function: str | None = None,
        state: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[CallStatus]: ...
    def stats(self) -> list[FunctionStats]: ...
