"""The Registry: sole writer of call state, owner of every attempt's ObjectRef.

A plain class; ``launch.py`` makes it a named, detached, restartable Ray actor pinned to
the head node. On (re)start it reloads deployments from the store and re-queues calls
that were running, so no accepted call is lost when the actor dies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import ray

from rayfn.exception import (
    DeploymentError,
    InvalidError,
    NotFoundError,
    ResourcesUnavailableError,
    StoreError,
)
from rayfn.options import FunctionOptions
from rayfn.protocol.ids import validate_call_id
from rayfn.protocol.names import REGISTRY_ACTOR, validate_name
from rayfn.protocol.objects import DEFAULT_PARTITION_TTL, ObjectInfo
from rayfn.protocol.operations import Idempotency, RegistryApi
from rayfn.protocol.payload import CallOutcome, check_input_size
from rayfn.protocol.records import (
    CallQuery,
    DeployedFunction,
    DeployResult,
    MetricsSnapshot,
    OutputPage,
    RegistryAddress,
    RegistryInfo,
    ValuesPage,
)
from rayfn.protocol.secrets import SecretInfo
from rayfn.protocol.variants import parse_target
from rayfn.protocol.volumes import VolumeEntry, VolumeInfo
from rayfn.schemas import AppInfo, CallLogs, CallStatus, FunctionInfo, FunctionStats, ScheduleInfo
from rayfn.settings import Settings
from rayfn_service import schedules, secrets, web
from rayfn_service.admission import check_calls, check_spawnable, check_wait
from rayfn_service.app_output import AppOutput
from rayfn_service.capacity import CapacityMonitor, shape_of
from rayfn_service.catalog import Catalog, RuntimeFunction, checked
from rayfn_service.dispatch import Dispatcher
from rayfn_service.objects import Objects
from rayfn_service.secrets import Secrets
from rayfn_service.store import CallRecord, FunctionRecord, NewCall, Store, open_store
from rayfn_service.store.group_commit import GroupCommit
from rayfn_service.views import outcome_of, status_of
from rayfn_service.volumes import Volumes
from rayfn_service.waiting import Waiter, Waiters
from rayfn_service.web import has_web_endpoint

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
STORE_RETRY_SECONDS = 2.0
# How long an answer about many calls waits for more to end once the first has.
ANY_LINGER_SECONDS = 0.05
MAX_LISTED_CALLS = 1000
# A generator call's values per answer (and at most max_input_bytes of them past the
# first), and the children of a call listed at most.
VALUES_PER_PAGE = 1000
MAX_CHILDREN = 10_000
MAX_GRAPH_DEPTH = 100  # callers walked up to find a call graph's root


def _needs_store(
    method: Callable[Concatenate[Registry, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Registry, P], Coroutine[Any, Any, R]]:
    """Refuse at once, with StoreError, while the store cannot be opened."""

    @functools.wraps(method)
    async def guarded(registry: Registry, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if registry._store_problem is not None:
            raise StoreError(registry._store_problem)
        return await method(registry, *args, **kwargs)

    return guarded


def _run_at_normal_priority() -> None:
    """Undo the niceness Ray gives worker processes (15), as Ray does for its own job
    supervisor: every call passes through the registry, and on a busy node it must not
    wait behind the calls it dispatches. Needs the right to raise priority (root or
    CAP_SYS_NICE); without it the registry keeps Ray's niceness."""
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:  # niceness is per thread on Linux; later threads inherit it
        try:
            os.setpriority(os.PRIO_PROCESS, tid, 0)
        except OSError:
            logger.debug("cannot raise the registry's priority", exc_info=True)
            return


class Registry:
    async def __init__(self, settings_json: str) -> None:  # type: ignore[misc]
        _run_at_normal_priority()
        self._settings = Settings.model_validate_json(settings_json)
        self._waiters = Waiters()  # requests waiting for calls to end, or for values
        self._volumes = Volumes(self._settings.volumes_path)
        self._app_output = AppOutput(self._waiters.nudged)  # what apps' calls print
        self._pings = 0
        self._capacity = CapacityMonitor()
        self._started_at = time.time()
        self._store_problem: str | None = None
        try:
            await self._open_store()
        except StoreError as exc:
            # A read-only or full state directory: stay up and say so to every request
            # (rather than crash-loop), and open the store once the disk allows it.
            self._store_problem = f"{exc} (the registry tries again every few seconds)"
            logger.error("cannot open the store: %s", exc)
            self._reopener = asyncio.get_running_loop().create_task(self._open_when_possible())

    async def _open_store(self) -> None:
        store: Store = open_store(self._settings.store_path)
        commit = GroupCommit(store)
        try:
            requeued = await commit.run(store.recover)
        except BaseException:
            commit.close()
            store.close()
            raise
        self._store, self._commit = store, commit
        self._catalog = Catalog(self._store, self._settings.system_retries,
                                self._settings.volumes_path)
        self._dispatcher = Dispatcher(
            self._store,
            self._commit,
            self._catalog,
            default_window=self._settings.default_window,
            retention_seconds=self._settings.retention_seconds,
            batch_seconds=self._settings.batch_seconds,
            max_batch=self._settings.max_batch,
            registry_address=RegistryAddress(self._settings.namespace, REGISTRY_ACTOR),
            on_finished=self._waiters.ended,
            capacity=lambda: self._capacity.current,
            system_retries=self._settings.system_retries,
            on_output=lambda claim, before, after, final: self._app_output.progress(
                claim.app, claim.function, claim.id, before, after, final),
        )
        self._objects = Objects(self._store, self._commit, self._waiters, self._settings)
        self._secrets = Secrets(self._store, self._commit)
        await self._capacity.refresh()  # before dispatching: calls no node can run fail
        if requeued:
            logger.warning(
                "re-queued %d calls that were running when the registry stopped", requeued
            )
        self._catalog.refresh_current()
        for app, name in self._store.queued_functions():
            self._dispatcher.kick(app, name)
        self._dispatcher.warm()
        self._request_min_containers()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        self._capacity_watch = asyncio.get_running_loop().create_task(self._watch_capacity())
        self._scheduler = schedules.Scheduler(
            self._store, self._commit, poll_seconds=self._settings.schedule_poll_seconds,
            catch_up=self._settings.schedule_catch_up, fired=self._schedule_fired)
        self._schedules = asyncio.get_running_loop().create_task(self._scheduler.run_forever())

    async def _open_when_possible(self) -> None:
        while self._store_problem is not None:
            await asyncio.sleep(STORE_RETRY_SECONDS)
            try:
                await self._open_store()
            except StoreError as exc:
                self._store_problem = f"{exc} (the registry tries again every few seconds)"
                continue
            self._store_problem = None
            logger.warning("the store at %s is writable again", self._settings.store_path)

    # ---- health ------------------------------------------------------------------

    async def ping(self) -> RegistryInfo:
        self._pings += 1
        return {
            "started_at": self._started_at,
            "store": str(self._settings.store_path),
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "job_id": ray.get_runtime_context().get_job_id(),  # of the process that made it
            "store_problem": self._store_problem,
            "waiting": self._waiters.parked,  # requests waiting for calls to end now
            "pings": self._pings,  # this one included
        }

    # ---- deployments -------------------------------------------------------------

    @_needs_store
    async def deploy(
        self, app: str, functions: Sequence[DeployedFunction], ephemeral: bool = False
    ) -> DeployResult:
        validate_name("app", app)
        if not functions:
            raise InvalidError(f"app {app!r} has no functions to deploy")
        if not all(isinstance(f, DeployedFunction) for f in functions):
            raise InvalidError("deploy takes DeployedFunction records")
        names = [validate_name("function", f.name) for f in functions]
        if len(set(names)) < len(names):
            raise InvalidError(f"app {app!r} names a function twice")
        # Version 0 for the check; the real one is set in the write.
        valid = [checked(FunctionRecord(app, 0, f.name, f.options, f.code, f.runtime_env))
                 for f in functions]
        schedules.check_scheduled(valid)
        wanted = [(r.name, FunctionOptions.from_dict(json.loads(r.options)).secrets)
                  for r in valid]
        self._check_volumes(app, valid)

        def write() -> int:
            secrets.check_deployable(self._store, wanted)
            version = self._store.next_version(app)
            records = [dataclasses.replace(r, version=version) for r in valid]
            now = time.time()
            deployed = self._store.deploy(app, records, ephemeral=ephemeral, now=now)
            schedules.sync_on_deploy(self._store, app, records, now)
            return deployed

        served_before = self._serves_endpoints(app)
        version = await self._commit.run(write)
        self._catalog.refresh_current()
        self._dispatcher.refresh_windows()
        self._dispatcher.warm()
        self._request_min_containers()
        logger.info("deployed %s version %d (%d functions)", app, version, len(functions))
        if ephemeral:
            self._app_output.open(app)  # `rayfn run` follows what its calls print
        endpoints = [f for f in functions if has_web_endpoint(f.options)]
        urls: dict[str, str] = {}
        if endpoints or served_before:  # ephemeral apps (``with app.run()``) too
            urls = await web.in_worker(web.sync_task, app, endpoints, self._settings,
                                    served_before)
        return DeployResult(version, urls)

    @_needs_store
    async def stop_app(self, app: str) -> int:
        """Stop an app: it takes no new calls and its unfinished calls are cancelled."""
        now = time.time()
        expires = now + self._settings.retention_seconds

        def write() -> tuple[int, list[str]] | None:
            if not self._store.stop_app(app, now):
                return None
            self._store.drop_schedules(app)
            return self._store.cancel_app_calls(app, now, expires)

        served = self._serves_endpoints(app)
        result = await self._commit.run(write)
        if result is None:
            raise NotFoundError(f"no deployed app named {app!r}")
        if served:
            await web.in_worker(web.remove_task, app, self._settings)
        cancelled, started = result
        self._dispatcher.cancel_all(started)
        # Wake whoever waits on a call that just ended (few waiters, however long the queue).
        waited_on = self._waiters.waited_on()
        for record in self._store.get_calls(waited_on, finished_only=True):
            self._waiters.ended(record.id)
        self._catalog.refresh_current()
        self._catalog.forget_app(app)
        self._app_output.close(app)
        self._request_min_containers()
        return cancelled

    @_needs_store
    async def list_apps(self) -> list[AppInfo]:
        timed: dict[str, list[ScheduleInfo]] = {}
        for record in self._store.list_schedules():
            timed.setdefault(record.app, []).append(schedules.info_of(record))
        return [
            AppInfo(
                name=a.name,
                version=a.version,
                state=a.state,
                ephemeral=a.ephemeral,
                updated_at=a.updated_at,
                functions=list(a.functions),
                schedules=timed.get(a.name, []),
            )
            for a in self._store.list_apps()
        ]

    @_needs_store
    async def function_info(self, app: str, name: str) -> FunctionInfo:
        validate_name("app", app)
        validate_name("function", name)
        version = self._catalog.current_version(app, name)
        if version is None:
            if self._store.get_app(app) is None or not self._app_live(app):
                raise NotFoundError(f"app {app!r} is not deployed")
            raise NotFoundError(f"app {app!r} has no function {name!r}")
        fn = self._loaded(app, name, version)
        timed = [schedules.info_of(r) for r in self._store.list_schedules(app)
                 if r.function == name]
        return FunctionInfo(app=app, name=name, version=fn.version, options=fn.options.to_dict(),
                            schedule=timed[0] if timed else None)

    def _loaded(self, app: str, name: str, version: int) -> RuntimeFunction:
        """The live function, loaded once, then cached; DeploymentError when its stored
        deployment cannot be loaded."""
        fn = self._catalog.get(app, version, name)
        if fn is None:
            raise DeploymentError(self._catalog.problem(app, version, name)
                                  or f"{app}.{name} version {version} is not in the store")
        return fn

    def _serves_endpoints(self, app: str) -> bool:
        """Whether the deployed version of ``app`` has web endpoints (which Serve runs);
        True when it cannot be loaded, so that Serve is asked rather than left serving."""
        for key_app, name in self._catalog.live_keys():
            if key_app == app:
                fn = self._catalog.current(key_app, name)
                if fn is None or fn.options.web_endpoint is not None:
                    return True
        return False

    def _app_live(self, app: str) -> bool:
        record = self._store.get_app(app)
        return record is not None and record.state == "deployed"

    # ---- calls -------------------------------------------------------------------

    @_needs_store
    async def spawn(
        self,
        app: str,
        name: str,
        calls: Sequence[tuple[str, bytes]],
        idempotency: Idempotency | None = None,
        parent: str | None = None,
    ) -> list[str]:
        """Accept calls (IDs chosen by the client); answer after they are committed.

        Re-sending the same IDs is harmless, so clients retry freely across restarts.
        With ``idempotency`` (key, request hash), a repeated request returns the calls
        the first one made instead of making new ones.
        """
        return await self._accept(app, name, calls, idempotency, parent, generator=False)

    @_needs_store
    async def spawn_generator(
        self, app: str, name: str, call_id: str, args: bytes, parent: str | None = None
    ) -> str:
        (accepted,) = await self._accept(app, name, [(call_id, args)], None, parent,
                                         generator=True)
        return accepted

    async def _accept(
        self, app: str, name: str, calls: Sequence[tuple[str, bytes]],
        idempotency: Idempotency | None, parent: str | None, *, generator: bool,
    ) -> list[str]:
        validate_name("app", app)
        if parent is not None:
            validate_call_id(parent)
        base = parse_target(name).base
        version = self._catalog.current_version(app, base)
        if version is None:
            await self.function_info(app, base)  # raises the precise NotFoundError
            raise NotFoundError(f"{app}.{base} is not deployed")
        function = self._catalog.check_variant(self._loaded(app, base, version), name)
        check_spawnable(function.options, f"{app}.{base}", name, generator)
        check_calls(calls, self._settings.max_input_bytes, f"{app}.{name}")
        reason = await self._capacity.shortfall(shape_of(function.options.ray_options()))
        if reason is not None:
            raise ResourcesUnavailableError(f"{app}.{function.variant.describe()} can never "
                                            f"run on this cluster: {reason}")
        now = time.time()
        rows = [NewCall(call_id, app, name, version, args, now) for call_id, args in calls]

        def write() -> list[str]:
            ids = [row.id for row in rows]
            if idempotency is not None:
                known = self._store.remember_idempotent(idempotency[0], idempotency[1], ids)
                if known != ids:
                    return known
            self._store.insert_calls(rows)
            if parent is not None:
                self._store.add_children(parent, ids)
            return ids

        accepted = await self._commit.run(write)
        self._dispatcher.metrics.accepted(app, name, len(rows))
        self._dispatcher.kick(app, name)
        return accepted

    def _record(
        self, call_id: str, with_payload: bool = True, status_only: bool = False
    ) -> CallRecord:
        validate_call_id(call_id)
        record = self._store.get_call(call_id, with_payload=with_payload,
                                      status_only=status_only)
        if record is None:
            raise NotFoundError(f"no call with ID {call_id}")
        return record

    @_needs_store
    async def get(self, call_id: str, timeout: float | None) -> CallOutcome:
        """The call's outcome; waits up to ``timeout`` (capped) while it is unfinished."""
        record = self._record(call_id)
        if not record.state.is_terminal() and (timeout is None or timeout > 0):
            wait = (
                self._settings.wait_chunk_seconds
                if timeout is None
                else min(timeout, self._settings.wait_chunk_seconds)
            )
            await self._wait(call_id, wait)
            record = self._record(call_id)
        return outcome_of(record, time.time())

    @_needs_store
    async def wait(self, call_id: str, timeout: float) -> None:
        """Return when the call has ended, or after ``timeout`` (capped) seconds."""
        record = self._record(call_id, with_payload=False)
        if not record.state.is_terminal() and timeout > 0:
            await self._wait(call_id, min(timeout, self._settings.wait_chunk_seconds))

    @_needs_store
    async def get_many(
        self, call_ids: Sequence[str], timeout: float, include_pending: bool = False
    ) -> list[CallOutcome]:
        """The finished calls among ``call_ids``, waiting up to ``timeout`` for the first.

        With ``include_pending``, unfinished calls are listed too (state only). Without
        it, pending calls cost one index lookup each and build nothing, so clients may
        poll thousands at a time. Once one ends, the answer waits a moment for others,
        so a client collecting many calls makes a request per handful, not per call."""
        for call_id in call_ids:
            validate_call_id(call_id)
        ids = list(dict.fromkeys(call_ids))
        # Listen before looking, so a call that ends in between is not missed.
        with self._waiters.listening(ids if timeout > 0 else ()) as waiter:
            states = self._store.call_states(ids)
            if len(states) < len(ids):
                missing = next(c for c in ids if c not in states)
                raise NotFoundError(f"no call with ID {missing}")
            done = [c for c, state in states.items() if state.is_terminal()]
            if not done and timeout > 0:
                await self._wait_for_any(waiter, timeout, linger=len(ids) > 1)
                done = list(dict.fromkeys(waiter.ended))
        if include_pending:
            records = self._store.get_calls(ids)
        else:
            records = self._store.get_calls(done, finished_only=True)
        now = time.time()
        return [outcome_of(r, now) for r in records]

    @_needs_store
    async def status(self, call_id: str) -> CallStatus:
        return status_of(self._record(call_id, status_only=True), time.time())

    @_needs_store
    async def logs(self, call_id: str) -> CallLogs:
        validate_call_id(call_id)
        found = self._store.get_logs(call_id)
        if found is None:
            raise NotFoundError(f"no call with ID {call_id}")
        state, logs = found
        # Ended attempts are in the store; a running one's output so far is in memory.
        return CallLogs(call_id=call_id, state=state,
                        logs=logs + self._dispatcher.live_log(call_id))

    @_needs_store
    async def cancel(self, call_id: str) -> CallStatus:
        record = self._record(call_id, with_payload=False)
        if not record.state.is_terminal():
            await self._dispatcher.cancel(call_id)
        return status_of(self._record(call_id, status_only=True), time.time())

    @_needs_store
    async def list_calls(self, query: CallQuery) -> list[CallStatus]:
        if not isinstance(query, CallQuery):
            raise InvalidError("list_calls takes a CallQuery")
        if query.before is not None:
            validate_call_id(query.before)
        if not 1 <= query.limit <= MAX_LISTED_CALLS:
            raise InvalidError(f"limit must be between 1 and {MAX_LISTED_CALLS}")
        now = time.time()
        return [status_of(r, now) for r in self._store.list_calls(query)]

    @_needs_store
    async def stats(self) -> list[FunctionStats]:
        depths = self._store.queue_depths()
        running = self._dispatcher.running_counts()
        by_node = self._dispatcher.running_by_node()
        keys = set(depths) | set(self._catalog.live_keys())
        return [
            FunctionStats(
                app=app,
                function=name,
                queued=depths.get((app, name), {}).get("queued", 0),
                running=depths.get((app, name), {}).get("running", 0),
                retrying=depths.get((app, name), {}).get("retrying", 0),
                in_ray=running.get((app, name), 0),
                window=self._dispatcher.window_of(app, name),
                nodes=by_node.get((app, name), {}),
            )
            for app, name in sorted(keys)
        ]

    @_needs_store
    async def metrics(self) -> tuple[MetricsSnapshot, list[FunctionStats]]:
        return self._dispatcher.metrics.snapshot(), await self.stats()

    async def attempt_started(self, call_id: str, attempt: int, node_id: str) -> None:
        """Called by a worker as an attempt starts: where it runs."""
        self._dispatcher.attempt_started(call_id, attempt, node_id)

    async def attempt_output(self, call_id: str, attempt: int, text: str) -> None:
        """Called by a worker while an attempt runs: what it printed so far."""
        self._dispatcher.attempt_output(call_id, attempt, text)

    @_needs_store
    async def generator_values(self, call_id: str, start: int, timeout: float) -> ValuesPage:
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise InvalidError(f"start must be an index >= 0, not {start!r}")
        timeout = min(check_wait(timeout), self._settings.wait_chunk_seconds)
        with self._waiters.listening([call_id]) as waiter:  # before looking
            page = self._values_page(call_id, start)
            if not page.values and not page.done and timeout > 0 \
                    and await self._waiters.park(waiter, timeout):
                page = self._values_page(call_id, start)
        return page

    def _values_page(self, call_id: str, start: int) -> ValuesPage:
        record = self._record(call_id, with_payload=False)
        values = self._store.get_values(call_id, start, VALUES_PER_PAGE,
                                        self._settings.max_input_bytes)
        return ValuesPage(start, tuple(values), record.state.is_terminal() and not values)

    @_needs_store
    async def children(self, call_id: str) -> list[CallStatus]:
        ids = self._store.get_children(validate_call_id(call_id), MAX_CHILDREN)
        if not ids:  # a web request's ID has children but no call of its own
            self._record(call_id, with_payload=False)  # NotFoundError for an unknown call
        now = time.time()
        records = {r.id: r for r in self._store.get_calls(ids)}
        return [status_of(records[i], now) for i in ids if i in records]

    @_needs_store
    async def call_root(self, call_id: str) -> str:
        current = validate_call_id(call_id)
        self._record(current, with_payload=False)  # NotFoundError for an unknown call
        for _ in range(MAX_GRAPH_DEPTH):
            parent = self._store.get_parent(current)
            if parent is None:
                break
            current = parent
        return current

    async def attempt_values(
        self, call_id: str, attempt: int, start: int, values: list[bytes]
    ) -> None:
        """Called by a worker as a generator attempt yields: kept before it answers, so
        every value is in the store before the attempt's outcome."""
        if self._store_problem is not None:
            raise StoreError(self._store_problem)
        if not self._dispatcher.is_running(call_id, attempt):
            return  # a late report of an attempt that was stopped
        for value in values:
            check_input_size(value, self._settings.max_input_bytes, f"a value of {call_id}")
        await self._commit.run(lambda: self._store.add_values(call_id, start, values),
                               durable=False)
        self._waiters.nudged(call_id)

    async def attempt_stuck(self, call_id: str, attempt: int) -> None:
        """Called by a worker whose attempt ignored its timeout (see executor)."""
        if self._store_problem is None:
            self._dispatcher.attempt_stuck(call_id, attempt)

    # ---- what an app's calls print ------------------------------------------------

    @_needs_store
    async def app_output(self, app: str, cursor: int, timeout: float) -> OutputPage:
        validate_name("app", app)
        if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
            raise InvalidError(f"cursor must be an integer >= 0, not {cursor!r}")
        timeout = min(check_wait(timeout), self._settings.wait_chunk_seconds)
        if not self._app_output.is_open(app):
            if not self._app_live(app):
                raise NotFoundError(f"no deployed app named {app!r}")
            self._app_output.open(app)
        with self._waiters.listening([AppOutput.key(app)]) as waiter:  # before looking
            page = self._app_output.page(app, cursor)
            if not page.lines and timeout > 0 and await self._waiters.park(waiter, timeout):
                page = self._app_output.page(app, page.cursor)
        return page

    # ---- secrets (secrets.py) ----------------------------------------------------

    @_needs_store
    async def secret_create(self, name: str, values: dict[str, str],
                            overwrite: bool = False) -> None:
        await self._secrets.create(name, values, overwrite)
        logger.info("stored secret %s", name)  # its name only, never a value

    @_needs_store
    async def secret_list(self) -> list[SecretInfo]:
        return self._secrets.listing()

    @_needs_store
    async def secret_delete(self, name: str) -> None:
        await self._secrets.delete(name)
        logger.info("deleted secret %s", name)

    @_needs_store
    async def secret_values(self, names: list[str]) -> dict[str, str]:
        """The values of the named secrets, merged in order, for a call's process."""
        return self._secrets.values(names)

    # ---- volumes (volumes.py) ------------------------------------------------------

    def _check_volumes(self, app: str, records: Sequence[FunctionRecord]) -> None:
        """A deploy mounts only volumes that exist (the SDK makes create_if_missing ones
        first): else the calls would fail on every node, one by one."""
        for record in records:
            for _, name in json.loads(record.options).get("volumes", ()):
                if not self._volumes.exists(name):
                    raise NotFoundError(f"Volume {name!r} (mounted by function "
                                        f"{app}.{record.name}) not found: create it with "
                                        "`rayfn volume create` or create_if_missing=True")

    async def volume_create(self, name: str, exist_ok: bool = False) -> VolumeInfo:
        return await self._volumes.create(name, exist_ok)

    async def volume_list(self) -> list[VolumeInfo]:
        return await self._volumes.all()

    async def volume_delete(self, name: str) -> None:
        await self._volumes.delete(name)

    async def volume_listdir(self, name: str, path: str, recursive: bool = False
                             ) -> list[VolumeEntry]:
        return await self._volumes.listdir(name, path, recursive)

    async def volume_read(self, name: str, path: str, offset: int, length: int) -> bytes:
        return await self._volumes.read(name, path, offset, length)

    async def volume_write(self, name: str, path: str, upload: str, offset: int,
                           data: bytes, final: bool) -> None:
        await self._volumes.write(name, path, upload, offset, data, final)

    async def volume_remove(self, name: str, path: str, recursive: bool = False) -> None:
        await self._volumes.remove(name, path, recursive)

    async def volume_copy(self, name: str, sources: Sequence[str], dest: str) -> None:
        await self._volumes.copy(name, sources, dest)

    # ---- dicts and queues (objects.py) --------------------------------------------

    @_needs_store
    async def object_open(
        self, kind: str, name: str, create_if_missing: bool, ephemeral: bool = False
    ) -> ObjectInfo:
        return await self._objects.open(kind, name, create_if_missing, ephemeral)

    @_needs_store
    async def object_delete(self, kind: str, name: str, allow_missing: bool = False) -> None:
        await self._objects.delete(kind, name, allow_missing)

    @_needs_store
    async def dict_get(self, name: str, key: bytes) -> bytes | None:
        return await self._objects.dict_get(name, key)

    @_needs_store
    async def dict_contains(self, name: str, key: bytes) -> bool:
        return await self._objects.dict_contains(name, key)

    @_needs_store
    async def dict_put(
        self, name: str, items: Sequence[tuple[bytes, bytes]], skip_if_exists: bool = False
    ) -> int:
        return await self._objects.dict_put(name, items, skip_if_exists)

    @_needs_store
    async def dict_pop(self, name: str, key: bytes) -> bytes | None:
        return await self._objects.dict_pop(name, key)

    @_needs_store
    async def dict_len(self, name: str) -> int:
        return await self._objects.dict_len(name)

    @_needs_store
    async def dict_entries(self, name: str, after: bytes | None) -> list[tuple[bytes, bytes]]:
        return await self._objects.dict_entries(name, after)

    @_needs_store
    async def dict_clear(self, name: str) -> None:
        await self._objects.dict_clear(name)

    @_needs_store
    async def queue_put(
        self, name: str, partition: str | None, values: Sequence[bytes],
        partition_ttl: float = DEFAULT_PARTITION_TTL, timeout: float = 0.0,
    ) -> bool:
        return await self._objects.queue_put(name, partition, values, partition_ttl, timeout)

    @_needs_store
    async def queue_get(
        self, name: str, partition: str | None, n_values: int, timeout: float = 0.0
    ) -> list[bytes]:
        return await self._objects.queue_get(name, partition, n_values, timeout)

    @_needs_store
    async def queue_len(self, name: str, partition: str | None, total: bool = False) -> int:
        return await self._objects.queue_len(name, partition, total)

    @_needs_store
    async def queue_items(
        self, name: str, partition: str | None, after: int, timeout: float = 0.0
    ) -> list[tuple[int, bytes]]:
        return await self._objects.queue_items(name, partition, after, timeout)

    @_needs_store
    async def queue_clear(
        self, name: str, partition: str | None, all: bool = False  # noqa: A002
    ) -> None:
        await self._objects.queue_clear(name, partition, all)

    # ---- waiting -----------------------------------------------------------------

    async def _wait_for_any(self, waiter: Waiter, timeout: float, linger: bool) -> None:
        """Until one call ends (then ``ANY_LINGER_SECONDS`` more when ``linger``), or
        ``timeout`` (capped)."""
        limit = min(timeout, self._settings.wait_chunk_seconds)
        began = time.monotonic()
        if not await self._waiters.park(waiter, limit):
            return
        if linger:
            await asyncio.sleep(min(ANY_LINGER_SECONDS, max(limit - (time.monotonic() - began), 0)))

    async def _wait(self, call_id: str, timeout: float) -> None:
        """Until the call ends, or ``timeout``."""
        with self._waiters.listening([call_id]) as waiter:  # before the check
            record = self._store.get_call(call_id, with_payload=False)
            if record is not None and not record.state.is_terminal():
                await self._waiters.park(waiter, timeout)

    # ---- upkeep ------------------------------------------------------------------

    def _schedule_fired(self, app: str, name: str, calls: int) -> None:
        self._dispatcher.metrics.accepted(app, name, calls)
        self._dispatcher.kick(app, name)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.sweep_interval_seconds)
            try:
                while await self._commit.run(
                    lambda: self._store.sweep_expired(
                        time.time(), idempotency_retention=self._settings.retention_seconds),
                    durable=False
                ):
                    pass
            except Exception:
                logger.exception("expiry sweep failed; will try again")
            try:
                await self._objects.sweep()
            except Exception:
                logger.exception("expiry sweep of Dicts and Queues failed; will try again")

    async def _watch_capacity(self) -> None:
        """Fail calls no node can ever run, also when the cluster shrinks under them."""
        while True:
            await asyncio.sleep(self._settings.capacity_refresh_seconds)
            try:
                await self._capacity.refresh()
                self._dispatcher.fail_unrunnable()
            except Exception:
                logger.exception("capacity check failed; will try again")

    def _request_min_containers(self) -> None:
        bundles: list[dict[str, float]] = []
        for app, name in self._catalog.live_keys():
            fn = self._catalog.current(app, name)
            if fn is not None and fn.options.min_containers:
                shape = fn.options.resource_shape()
                bundles.extend([shape] * fn.options.min_containers)
        try:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=bundles)
        except Exception:  # no autoscaler (a fixed local cluster): nothing to ask
            logger.debug("request_resources unavailable", exc_info=True)


def settings_for_registry(settings: Settings) -> str:
    return json.dumps(json.loads(settings.model_dump_json()))


def _implements(registry: Registry) -> RegistryApi:
    """Never called: mypy checks here that the actor offers every operation of the
    contract, with the declared arguments and results."""
    return registry
