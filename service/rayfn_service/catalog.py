"""Deployed functions as the registry runs them: options, Ray task, code in Ray's store."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import ray

from rayfn.exception import InvalidError
from rayfn.options import FunctionOptions
from rayfn.protocol.records import FunctionRef
from rayfn.protocol.variants import SEPARATOR, Variant, check_params, parse_target
from rayfn_service.call_environment import runtime_env_with
from rayfn_service.container import Container
from rayfn_service.executor import Code, execute_batch
from rayfn_service.store import FunctionRecord, Store

logger = logging.getLogger(__name__)

# Code this small travels inside each task (Ray inlines small arguments); that costs less
# than pickling an ObjectRef into every task and fetching it in the worker. Larger code
# goes to Ray's object store once and each worker fetches it once.
INLINE_CODE_BYTES = 32 * 1024


@dataclasses.dataclass
class RuntimeFunction:
    app: str
    version: int
    name: str
    options: FunctionOptions
    task: Any  # the executor with this function's Ray options
    batch_task: Any  # the same for several calls: not re-run by Ray (see dispatch)
    code: Code  # the pickled function, or a ref to it in Ray's store when it is large
    variant: Variant  # which parameters and option overrides ``name`` stands for
    container: Any = None  # the container actor with its Ray options, if it uses them
    record: FunctionRecord | None = None  # as stored (its variants are made from it)
    ref: FunctionRef = dataclasses.field(init=False)  # made once: every task carries it

    def __post_init__(self) -> None:
        self.ref = FunctionRef(self.app, self.version, self.name)


class Catalog:
    """Loads each (app, version, function) once from the store and keeps it ready.

    A stored function that does not pass the checks a deploy makes (stored by an older
    rayfn, or edited) is not loaded: it is remembered with the reason, its calls are
    refused with ``DeploymentError``, and everything else goes on working, so no row of
    the store can keep the registry from starting."""

    def __init__(self, store: Store, system_retries: int, volume_root: Path) -> None:
        self._store = store
        self._system_retries = system_retries
        self._volume_root = volume_root
        self._loaded: dict[tuple[str, int, str], RuntimeFunction] = {}
        self._broken: dict[tuple[str, int, str], str] = {}
        self._current: dict[tuple[str, str], int] = {}

    def refresh_current(self) -> None:
        self._current = {(f.app, f.name): f.version for f in self._store.live_functions()}

    def current_version(self, app: str, name: str) -> int | None:
        """The live version of the function ``name`` (or a variant of it) names."""
        return self._current.get((app, name.partition(SEPARATOR)[0]))

    def current(self, app: str, name: str) -> RuntimeFunction | None:
        version = self.current_version(app, name)
        return None if version is None else self.get(app, version, name)

    def check_variant(self, fn: RuntimeFunction, name: str) -> RuntimeFunction:
        """The variant ``name`` of the loaded base function, checked: InvalidError when
        its parameters or options are not ones the function takes."""
        variant = parse_target(name)
        if variant.plain:
            return fn
        key = (fn.app, fn.version, name)
        loaded = self._loaded.get(key)
        if loaded is None:
            where = f"{fn.app}.{variant.base}"
            spec = fn.options.cls
            if variant.params:
                if spec is None:
                    raise InvalidError(f"{where} is a function: it takes no parameters")
                if check_params(spec, dict(variant.params), where) != variant.params:
                    raise InvalidError(f"{where}: parameters not in canonical form")
            elif spec is not None and spec.parameters:
                check_params(spec, {}, where)  # raises for a parameter without a default
            options = variant.options(fn.options)
            assert fn.record is not None
            record = dataclasses.replace(fn.record, name=name,
                                         options=json.dumps(options.to_dict()))
            loaded = self._build(record, variant)
            self._loaded[key] = loaded
        return loaded

    def live_keys(self) -> list[tuple[str, str]]:
        return list(self._current)

    def get(self, app: str, version: int, name: str) -> RuntimeFunction | None:
        """The function ready to run; None when the store has no such function or it
        cannot be loaded (then ``problem`` says why)."""
        key = (app, version, name)
        loaded = self._loaded.get(key)
        base, separator, _ = name.partition(SEPARATOR)
        if loaded is None and separator:  # a variant: checked when its calls were taken
            fn = self.get(app, version, base)
            try:
                return None if fn is None else self.check_variant(fn, name)
            except InvalidError as exc:
                self._broken[key] = str(exc)
                return None
        if loaded is None and key not in self._broken:
            record = self._store.get_function(app, name, version)
            if record is None:
                return None
            try:
                record = checked(record)
            except Exception as exc:  # whatever the stored row holds, say it and go on
                self._broken[key] = (f"the deployment of {app} version {version} cannot be "
                                     f"loaded: {exc}; deploy the app again or stop it")
                logger.error("%s", self._broken[key])
                return None
            loaded = self._build(record)
            self._loaded[key] = loaded
        return loaded

    def problem(self, app: str, version: int, name: str) -> str | None:
        """Why the stored function cannot be loaded, once ``get`` has tried."""
        return self._broken.get((app, version, name))

    def forget_app(self, app: str) -> None:
        for cache in (self._loaded, self._broken):
            for key in [k for k in cache if k[0] == app]:
                del cache[key]

    def _build(self, record: FunctionRecord, variant: Variant | None = None) -> RuntimeFunction:
        options, task, batch_task = _tasks_for(record, self._system_retries,
                                               self._volume_root)
        return RuntimeFunction(
            app=record.app,
            version=record.version,
            name=record.name,
            options=options,
            task=task,
            batch_task=batch_task,
            code=record.code if len(record.code) <= INLINE_CODE_BYTES else [ray.put(record.code)],
            variant=variant or Variant(record.name),
            container=container_actor(record, options, self._volume_root)
            if options.uses_containers else None,
            record=record,
        )


def _tasks_for(
    record: FunctionRecord, system_retries: int, volume_root: Path = Path("/volumes"),
) -> tuple[FunctionOptions, Any, Any]:
    """The function's options, its Ray task, and the same task for several calls (which Ray
    does not re-run: see dispatch)."""
    options = FunctionOptions.from_dict(json.loads(record.options))
    runtime_env = runtime_env_with(json.loads(record.runtime_env), options, volume_root)
    ray_options: dict[str, Any] = {
        **options.ray_options(),
        "max_retries": system_retries,
        "retry_exceptions": False,
        "name": f"rayfn:{record.app}.{record.name}",
    }
    if runtime_env:
        ray_options["runtime_env"] = runtime_env
    # Options given to ray.remote once, not through .options() on every submit, which
    # re-checks them each time (a third of the submit's cost).
    return (options, ray.remote(**ray_options)(execute_batch),
            ray.remote(**{**ray_options, "max_retries": 0})(execute_batch))


def container_actor(record: FunctionRecord, options: FunctionOptions,
                    volume_root: Path) -> Any:
    """The container actor class with the function's resources. Ray never restarts it
    (``max_restarts=0``): the registry starts a new container and runs the inputs of a
    dead one again, counting it against the system retries."""
    runtime_env = runtime_env_with(json.loads(record.runtime_env), options, volume_root)
    actor_options: dict[str, Any] = {
        **options.ray_options(),
        "max_restarts": 0,
        "max_task_retries": 0,
        # Its inputs, plus its lifecycle and interrupt calls, which must never wait.
        "max_concurrency": options.max_inputs + 4,
    }
    if runtime_env:
        actor_options["runtime_env"] = runtime_env
    return ray.remote(**actor_options)(Container)


def checked(record: FunctionRecord) -> FunctionRecord:
    """The record with its options normalized, or InvalidError when its options or runtime
    env are not what the SDK sends. Deploys come from any REST client; a record that could
    not be loaded later would break every function's dispatch, so it is refused up front."""
    where = f"function {record.app}.{record.name}"
    try:
        raw = json.loads(record.options)
        runtime_env = json.loads(record.runtime_env)
    except ValueError as exc:
        raise InvalidError(f"{where}: options and runtime_env must be JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(runtime_env, dict):
        raise InvalidError(f"{where}: options and runtime_env must be JSON objects")
    try:
        loaded = FunctionOptions.from_dict(raw)  # unknown names raise TypeError
        # build() checks every value, as @app.function() does.
        options = FunctionOptions.build(**loaded.arguments())
        normal = dataclasses.replace(
            record, options=json.dumps(options.to_dict()), runtime_env=json.dumps(runtime_env)
        )
        _tasks_for(normal, 0)  # Ray checks the runtime env and resources here
    except InvalidError as exc:
        raise InvalidError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:  # unknown option names, Ray's own checks
        raise InvalidError(f"{where}: invalid options: {exc}") from None
    return normal
