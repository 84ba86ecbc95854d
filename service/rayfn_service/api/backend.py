"""The REST server's way to the registry: awaited actor calls, retried across restarts."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayTaskError

from rayfn._client.ray import RETRYABLE, registry_error
from rayfn.exception import ConnectionError, Error
from rayfn.settings import Settings
from rayfn_service.names import REGISTRY_ACTOR
from rayfn_service.store import CallRecord
from rayfn_service.store.reader import StoreReader

logger = logging.getLogger(__name__)



class Registry:
    """Async calls to the registry actor; rayfn errors come back as themselves."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._handle: Any = None
        self._reader: StoreReader | None = None
        self._reader_checked = False

    def _actor(self) -> Any:
        if self._handle is None:
            try:
                self._handle = ray.get_actor(REGISTRY_ACTOR, namespace=self._settings.namespace)
            except ValueError:
                raise ConnectionError("the rayfn registry is not running") from None
        return self._handle

    async def call(self, method: str, *args: Any) -> Any:
        deadline = time.monotonic() + self._settings.client_retry_seconds
        delay = 0.1
        while True:
            try:
                return await getattr(self._actor(), method).remote(*args)
            except RayTaskError as exc:
                cause = registry_error(exc)
                if isinstance(cause, Error):
                    raise cause from None
                raise
            except RETRYABLE as exc:
                if time.monotonic() + delay > deadline:
                    raise ConnectionError(f"the rayfn registry did not answer: {exc}") from exc
                logger.info("registry unavailable; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def alive(self) -> bool:
        try:
            await asyncio.wait_for(self.call("ping"), timeout=5)
            return True
        except Exception:
            return False

    async def finished(self, call_id: str) -> CallRecord | None:
        """The call from the store when it has finished and the store is readable here
        (this process runs on the registry's node); else None: ask the registry."""
        if not self._reader_checked:
            await self._open_reader()
        if self._reader is None:
            return None
        try:
            return self._reader.finished_call(call_id)
        except sqlite3.Error:
            return None

    async def _open_reader(self) -> None:
        info = await self.call("ping")
        if info.get("store_problem"):
            return  # the registry cannot open its store yet: look again next time
        self._reader_checked = True
        path = Path(info["store"])
        if info.get("node_id") == ray.get_runtime_context().get_node_id() and path.exists():
            try:
                self._reader = StoreReader(path)
            except sqlite3.Error:
                logger.warning("cannot read the store at %s; asking the registry", path)
