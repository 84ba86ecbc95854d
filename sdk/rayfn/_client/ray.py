"""The client inside (or attached to) the Ray cluster: method calls on the registry actor.

Every call is safe to repeat (spawns carry their IDs), so while the registry restarts the
client retries with backoff for up to ``client_retry_seconds``.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import ray
from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError, RayTaskError

from rayfn._client.base import DeployedFunction
from rayfn._net import loopback_bootstrap
from rayfn._payload import Outcome
from rayfn.exception import ConnectionError
from rayfn.schemas import AppInfo, CallLogs, CallStatus, FunctionInfo, FunctionStats
from rayfn.settings import Settings
from rayfn_service.names import REGISTRY_ACTOR

logger = logging.getLogger(__name__)

try:  # present in recent Ray; a transient "restarting" signal
    from ray.exceptions import ActorUnavailableError
except ImportError:  # pragma: no cover
    ActorUnavailableError = RayActorError  # type: ignore[misc,assignment]

# The registry is restarting (or just died and Ray restarts it): ask again.
RETRYABLE = (RayActorError, ActorUnavailableError)
# Slack on top of the registry's own wait before the client gives up on one request.
_REQUEST_SLACK_SECONDS = 60.0
# spawn_map batches sent before the first is answered: the client pickles the next
# batch while the registry commits the last, and batches that meet share one commit.
_SPAWNS_IN_FLIGHT = 4


def registry_error(exc: RayTaskError) -> BaseException | None:
    """What a registry method raised, unwrapped from Ray's RayTaskError (None if Ray's own)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, RETRYABLE):
        return cause
    return None


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
        self._handle = self._lookup()

    def _lookup(self) -> Any:
        try:
            return ray.get_actor(REGISTRY_ACTOR, namespace=self.settings.namespace)
        except ValueError:
            raise ConnectionError(
                f"the rayfn registry is not running in namespace {self.settings.namespace!r}; "
                "start it with `rayfn start`"
            ) from None

    def _relookup(self) -> None:
        try:
            self._handle = ray.get_actor(REGISTRY_ACTOR, namespace=self.settings.namespace)
        except ValueError:
            pass

    def _call(self, method: str, *args: Any, wait: float = 0.0) -> Any:
        deadline = time.monotonic() + self.settings.client_retry_seconds
        delay = 0.1
        while True:
            try:
                ref = getattr(self._handle, method).remote(*args)
                return ray.get(ref, timeout=wait + _REQUEST_SLACK_SECONDS)
            except RayTaskError as exc:
                cause = registry_error(exc)
                if cause is not None:
                    raise cause from None
                error: BaseException = exc
            except RETRYABLE as exc:
                error = exc
                if isinstance(exc, ActorDiedError):
                    self._relookup()  # stopped for good; `rayfn start` may make a new one
            except GetTimeoutError as exc:
                error = exc
            if time.monotonic() + delay > deadline:
                raise ConnectionError(f"the rayfn registry did not answer: {error}") from error
            logger.info(
                "registry unavailable (%s); retrying in %.1f s", type(error).__name__, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def ping(self) -> dict[str, Any]:
        """The registry's own account: when it (re)started, its process, its store."""
        info: dict[str, Any] = self._call("ping")
        return info

    def deploy(
        self, app: str, functions: Sequence[DeployedFunction], ephemeral: bool = False
    ) -> int:
        return int(self._call("deploy", app, list(functions), ephemeral))

    def stop_app(self, app: str) -> int:
        return int(self._call("stop_app", app))

    def list_apps(self) -> list[AppInfo]:
        return list(self._call("list_apps"))

    def function_info(self, app: str, name: str) -> FunctionInfo:
        info: FunctionInfo = self._call("function_info", app, name)
        return info

    def spawn(self, app: str, name: str, calls: Sequence[tuple[str, bytes]]) -> None:
        self._call("spawn", app, name, list(calls))

    def spawn_batches(
        self, app: str, name: str, batches: Iterable[Sequence[tuple[str, bytes]]]
    ) -> None:
        """Spawn batch after batch, a few in flight; return when all are committed.

        The registry runs one caller's requests in the order sent, so the batches are
        queued in order. A batch whose request fails is sent again through ``spawn``,
        which retries while the registry restarts (its IDs are accepted only once)."""
        in_flight: collections.deque[tuple[Any, list[tuple[str, bytes]]]] = collections.deque()
        for batch in batches:
            calls = list(batch)
            in_flight.append((self._handle.spawn.remote(app, name, calls), calls))
            if len(in_flight) >= _SPAWNS_IN_FLIGHT:
                self._settle_spawn(app, name, *in_flight.popleft())
        while in_flight:
            self._settle_spawn(app, name, *in_flight.popleft())

    def _settle_spawn(
        self, app: str, name: str, ref: Any, calls: list[tuple[str, bytes]]
    ) -> None:
        try:
            ray.get(ref, timeout=_REQUEST_SLACK_SECONDS)
            return
        except RayTaskError as exc:
            cause = registry_error(exc)
            if cause is not None:
                raise cause from None
        except (*RETRYABLE, GetTimeoutError):
            pass
        self.spawn(app, name, calls)

    def get(self, call_id: str, timeout: float | None) -> Outcome:
        wait = self.settings.wait_chunk_seconds if timeout is None else timeout
        outcome: Outcome = self._call(
            "get", call_id, timeout, wait=min(wait, self.settings.wait_chunk_seconds)
        )
        return outcome

    def get_many(self, call_ids: Sequence[str], timeout: float) -> list[Outcome]:
        return list(
            self._call(
                "get_many",
                list(call_ids),
                timeout,
                wait=min(timeout, self.settings.wait_chunk_seconds),
            )
        )

    def status(self, call_id: str) -> CallStatus:
        status: CallStatus = self._call("status", call_id)
        return status

    def cancel(self, call_id: str) -> CallStatus:
        status: CallStatus = self._call("cancel", call_id)
        return status

    def logs(self, call_id: str) -> CallLogs:
        logs: CallLogs = self._call("logs", call_id)
        return logs

    def list_calls(
        self,
        app: str | None = None,
        function: str | None = None,
        state: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[CallStatus]:
        return list(self._call("list_calls", app, function, state, limit, before))

    def stats(self) -> list[FunctionStats]:
        return list(self._call("stats"))
