"""Data rayfn returns about calls, apps and functions; one definition for SDK, CLI and REST."""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from rayfn.states import CallState

__all__ = ["CallStatus", "AppInfo", "FunctionInfo", "FunctionStats"]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).isoformat()


class CallStatus(BaseModel):
    """Where a call is: its state, attempts made, timestamps (Unix seconds) and error."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    app: str
    function: str
    version: int
    state: CallState
    attempts: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    expired: bool = False
    error_type: str | None = None
    error_message: str | None = None

    def describe(self) -> dict[str, Any]:
        """A flat, human-readable view (ISO timestamps) for printing."""
        data = self.model_dump(mode="json")
        for key in ("created_at", "started_at", "finished_at", "expires_at"):
            data[key] = _iso(getattr(self, key))
        return data


class FunctionInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    app: str
    name: str
    version: int
    options: dict[str, Any]


class AppInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    state: str
    ephemeral: bool
    updated_at: float
    functions: list[str]


class FunctionStats(BaseModel):
    """A function's queue: calls waiting, in Ray, retrying, and its window."""

    model_config = ConfigDict(frozen=True)

    app: str
    function: str
    queued: int
    running: int
    retrying: int
    in_ray: int
    window: int
