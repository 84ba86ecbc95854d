"""App: a named group of functions that is deployed, run ephemerally, and stopped together."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

import cloudpickle

from rayfn import _accepts
from rayfn._aio import aio_method, run_blocking
from rayfn._class_endpoints import endpoint_label, endpoint_methods, method_handler
from rayfn._client import get_client
from rayfn._decorator_options import Environment, environment_of, split_options
from rayfn._deferred_imports import shipped_with_imports
from rayfn.cls import Cls, class_spec_of
from rayfn.exception import InvalidError, SerializationError
from rayfn.experimental import check_not_clustered
from rayfn.function import Function
from rayfn.image import Image
from rayfn.options import FunctionOptions, Retries, check_mounts, check_secret_names
from rayfn.output import following_output
from rayfn.partial_function import batching_of, check_batched_signature, concurrency_of
from rayfn.protocol.ids import new_call_id
from rayfn.protocol.names import MAX_NAME_LENGTH, validate_name
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.records import DeployedFunction
from rayfn.schedule import Schedule
from rayfn.secret import Secret, secret_names
from rayfn.volume import Volume, create_missing
from rayfn.web import EndpointCode, web_endpoint_of

__all__ = ["App", "LocalEntrypoint", "stop_app"]

P = ParamSpec("P")
R = TypeVar("R")


class LocalEntrypoint:
    """A function that ``rayfn run`` calls on the local machine, inside ``app.run()``."""

    def __init__(self, app: App, fn: Callable[..., Any]) -> None:
        self.app = app
        self.fn = fn
        self.name = fn.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


class _AppRun:
    """What ``app.run()`` returns: a context manager for ``with`` and for ``async with``,
    which deploys and stops the app in a worker thread."""

    def __init__(self, make: Callable[[], AbstractContextManager[App]]) -> None:
        self._make = make
        self._active: AbstractContextManager[App] | None = None

    def __enter__(self) -> App:
        self._active = self._make()
        return self._active.__enter__()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        assert self._active is not None, "app.run() was exited without being entered"
        active, self._active = self._active, None
        return active.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> App:
        return await run_blocking(self.__enter__)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        # Shielded: a block cancelled while it exits still stops its app.
        return await asyncio.shield(run_blocking(self.__exit__, exc_type, exc, tb))


def _pickle_by_value(fn: Callable[..., Any]) -> None:
    """Scripts and notebooks are not importable on workers: ship their code by value."""
    module_name = getattr(fn, "__module__", None)
    module = sys.modules.get(module_name or "")
    path = getattr(module, "__file__", None) or ""
    if module is None or module_name == "__main__" or not path:
        return  # __main__ and unnamed code are pickled by value already
    if "site-packages" in path or "dist-packages" in path:
        return  # installed on the cluster, import it there
    cloudpickle.register_pickle_by_value(module)


class App:
    """Functions deployed together under one name (``App("my-job-queue")``)."""

    def __init__(
        self,
        name: str | None = None,
        *,
        image: Image | None = None,
        volumes: Mapping[str, Volume] | None = None,
        secrets: Sequence[Secret] | None = None,
        include_source: bool | None = None,
        **modal_options: Any,
    ) -> None:
        self.name = validate_name("app", name or "main")
        unknown = set(modal_options) - {"description", "tags", "env"}
        if unknown:
            raise InvalidError(f"App() has no option {sorted(unknown)[0]!r}")
        self._environment = environment_of(image, volumes, secrets, modal_options.get("env"))
        self.image = self._environment.image or Image.debian_slim()
        self._environments: dict[str, Environment] = {}
        self.registered_functions: dict[str, Function[..., Any]] = {}
        self.registered_classes: dict[str, Cls] = {}
        self.registered_entrypoints: dict[str, LocalEntrypoint] = {}
        self._running_name: str | None = None

    def __repr__(self) -> str:
        return f"App({self.name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (App, (self.name,))

    def target_name(self) -> str:
        """The app name calls go to: the ephemeral app while ``run()`` is active."""
        return self._running_name or self.name

    # ---- decorators --------------------------------------------------------------

    @overload
    def function(self, _fn: Callable[P, R]) -> Function[P, R]: ...

    @overload
    def function(
        self,
        _fn: None = None,
        *,
        retries: int | Retries | None = None,
        timeout: float = 300,
        max_containers: int | None = None,
        min_containers: int = 0,
        buffer_containers: int = 0,
        scaledown_window: float = 60,
        cpu: float | None = None,
        memory: int | None = None,
        gpu: Any = None,
        image: Image | None = None,
        volumes: Mapping[str, Volume] | None = None,
        secrets: Sequence[Secret] | None = None,
        schedule: Schedule | None = None,
        name: str | None = None,
        **modal_options: Any,
    ) -> Callable[[Callable[P, R]], Function[P, R]]: ...

    def function(
        self,
        _fn: Callable[P, R] | None = None,
        *,
        retries: int | Retries | None = None,
        timeout: float = 300,
        max_containers: int | None = None,
        min_containers: int = 0,
        buffer_containers: int = 0,
        scaledown_window: float = 60,
        cpu: float | None = None,
        memory: int | None = None,
        gpu: Any = None,
        image: Image | None = None,
        volumes: Mapping[str, Volume] | None = None,
        secrets: Sequence[Secret] | None = None,
        schedule: Schedule | None = None,
        name: str | None = None,
        **modal_options: Any,
    ) -> Function[P, R] | Callable[[Callable[P, R]], Function[P, R]]:
        """Register a function of this app. Options are checked here, once."""
        more, environment = split_options("@app.function()", {
            **modal_options, "image": image, "volumes": volumes, "secrets": secrets})
        options = {"retries": retries, "timeout": timeout, "max_containers": max_containers,
                   "min_containers": min_containers, "buffer_containers": buffer_containers,
                   "scaledown_window": scaledown_window, "cpu": cpu, "memory": memory,
                   "gpu": gpu, **more, "schedule": _schedule_json(schedule)}

        def wrap(fn: Callable[P, R]) -> Function[P, R]:
            if isinstance(fn, Function):
                raise InvalidError("@app.function() is applied twice to the same function")
            if isinstance(fn, type):
                raise InvalidError(f"{fn.__name__} is a class: decorate it with @app.cls()")
            if not callable(fn):
                raise InvalidError(f"@app.function() decorates functions, not {fn!r}")
            fn_name = name or getattr(fn, "__name__", None) or ""
            fn_options = FunctionOptions.build(
                **options, **_input_options(fn, fn_name), web_endpoint=web_endpoint_of(fn),
                generator=inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn))
            function: Function[P, R] = Function(fn_name, app=self, raw=fn, options=fn_options)
            self._register(fn_name, function, environment)
            return function

        return wrap(_fn) if _fn is not None else wrap

    def cls(
        self,
        _cls: type | None = None,
        *,
        retries: int | Retries | None = None,
        timeout: float = 300,
        max_containers: int | None = None,
        min_containers: int = 0,
        buffer_containers: int = 0,
        scaledown_window: float = 60,
        cpu: float | None = None,
        memory: int | None = None,
        gpu: Any = None,
        image: Image | None = None,
        volumes: Mapping[str, Volume] | None = None,
        secrets: Sequence[Secret] | None = None,
        schedule: Schedule | None = None,
        name: str | None = None,
        **modal_options: Any,
    ) -> Any:
        """Register a class of this app (``@app.cls()``): each container makes one
        instance, runs its ``@enter()`` methods once and serves many calls of its
        ``@method()`` methods; ``@exit()`` methods run when the container stops."""
        more, environment = split_options("@app.cls()", {
            **modal_options, "image": image, "volumes": volumes, "secrets": secrets})
        options = {"retries": retries, "timeout": timeout, "max_containers": max_containers,
                   "min_containers": min_containers, "buffer_containers": buffer_containers,
                   "scaledown_window": scaledown_window, "cpu": cpu, "memory": memory,
                   "gpu": gpu, **more, "schedule": _schedule_json(schedule)}

        def wrap(user_cls: type) -> Cls:
            if isinstance(user_cls, Cls):
                raise InvalidError("@app.cls() is applied twice to the same class")
            spec, batching = class_spec_of(user_cls)
            cls_name = name or user_cls.__name__
            concurrency = concurrency_of(user_cls)
            inputs: dict[str, Any] = dict(batching)
            if concurrency is not None:
                inputs.update(max_inputs=concurrency.max_inputs,
                              target_inputs=concurrency.target_inputs)
            cls_options = FunctionOptions.build(**options, **inputs, cls_spec=spec)
            if cls_options.schedule is not None:
                raise InvalidError(f"{cls_name}: schedule= is for functions, not classes")
            registered = Cls(cls_name, app=self, user_cls=user_cls, options=cls_options)
            if spec.methods:
                self._register(cls_name, registered, environment)
            self._register_class_endpoints(cls_name, user_cls, cls_options, environment)
            return registered

        return wrap(_cls) if _cls is not None else wrap

    def _register_class_endpoints(self, cls_name: str, user_cls: type,
                                  options: FunctionOptions, environment: Environment) -> None:
        """A class's web endpoint methods, each served as an endpoint of its own."""
        plain = dataclasses.replace(options, cls=None, max_batch_size=0, batch_wait_ms=0)
        for method, (_, endpoint) in endpoint_methods(user_cls).items():
            if endpoint.label is None:
                endpoint = dataclasses.replace(endpoint,
                                               label=endpoint_label(cls_name, method))
            name = f"{cls_name}.{method}"
            handler = method_handler(user_cls, method)
            function: Function[..., Any] = Function(
                name, app=self, raw=handler,
                options=dataclasses.replace(plain, web_endpoint=endpoint))
            self._register(name, function, environment)

    def _register(self, fn_name: str, function: Function[..., Any] | Cls,
                  environment: Environment) -> None:
        validate_name("function", fn_name)
        if fn_name in self.registered_functions or fn_name in self.registered_classes:
            raise InvalidError(f"app {self.name!r} already has a function {fn_name!r}")
        self._environments[fn_name] = environment
        if isinstance(function, Cls):
            self.registered_classes[fn_name] = function
        else:
            self.registered_functions[fn_name] = function

    def local_entrypoint(
        self, _fn: Callable[..., Any] | None = None, *, name: str | None = None
    ) -> Any:
        """Register a function that ``rayfn run FILE`` calls locally inside ``app.run()``."""

        def wrap(fn: Callable[..., Any]) -> LocalEntrypoint:
            entrypoint = LocalEntrypoint(self, fn)
            if name:
                entrypoint.name = name
            self.registered_entrypoints[entrypoint.name] = entrypoint
            return entrypoint

        return wrap(_fn) if _fn is not None else wrap

    # ---- lifecycle ---------------------------------------------------------------

    def _payload(self) -> list[DeployedFunction]:
        """What the registry stores: each function and class pickled; a web endpoint as
        the :class:`EndpointCode` its Serve replicas load it from."""
        shipped: list[tuple[str, Any, FunctionOptions]] = []
        for fn_name, function in self.registered_functions.items():
            raw = function.get_raw_f()
            check_not_clustered(raw, fn_name)
            _pickle_by_value(raw)
            code: Any = raw if function.options.web_endpoint is None \
                else EndpointCode.of(function)
            shipped.append((fn_name, code, function.options))
        for cls_name, registered in self.registered_classes.items():
            user_cls = registered.get_user_cls()
            _pickle_by_value(user_cls)
            shipped.append((cls_name, user_cls, registered.options))
        functions = []
        for fn_name, code, options in shipped:
            environment = self._environments[fn_name].under(self._environment)
            create_missing(volume for _, volume in environment.volumes)
            image = environment.image or Image.debian_slim()
            runtime_env = json.dumps(_with_uploads(image.runtime_env()))
            options = dataclasses.replace(
                options, volumes=check_mounts(environment.volume_names()),
                secrets=check_secret_names(secret_names(environment.secrets)))
            try:
                pickled = bytes(cloudpickle.dumps(shipped_with_imports(code)))
            except Exception as exc:
                raise SerializationError(f"cannot serialize {fn_name!r}: {exc}") from exc
            functions.append(DeployedFunction(fn_name, json.dumps(options.to_dict()),
                                              pickled, runtime_env))
        return functions

    @aio_method
    def deploy(self, name: str | None = None) -> int:
        """Deploy (or redeploy) the app; returns the new version. New calls use it;
        calls already accepted finish on the version they were spawned for.

        Web endpoints (``@rayfn.asgi_app()``) also start serving on the cluster's Ray
        Serve; ``function.get_web_url()`` then gives each one's URL.
        """
        if name is not None:
            self.name = validate_name("app", name)
        if not self.registered_functions and not self.registered_classes:
            raise InvalidError(f"app {self.name!r} has no functions to deploy")
        payload = self._payload()
        client = get_client()
        _accepts.settle()
        result = client.call(RegistryApi.deploy, self.name, payload)
        for fn_name, function in self.registered_functions.items():
            function._web_url = result.web_urls.get(fn_name)
        return result.version

    def run(self) -> _AppRun:
        """Run the app ephemerally: its functions are deployed under a private name for
        the duration of the block and stopped when it ends. ``with app.run():``, or
        ``async with app.run():`` in async code."""
        return _AppRun(self._run)

    @contextmanager
    def _run(self) -> Iterator[App]:
        if self._running_name is not None:
            raise InvalidError(f"app {self.name!r} is already running")
        suffix = ".run-" + new_call_id()[-10:].lower()
        ephemeral = self.name[: MAX_NAME_LENGTH - len(suffix)] + suffix
        client = get_client()
        _accepts.settle()
        # Named first: functions that call each other are pickled with the name their
        # calls must go to, the ephemeral app's.
        self._running_name = ephemeral
        try:
            if self.registered_functions or self.registered_classes:
                result = client.call(RegistryApi.deploy, ephemeral, self._payload(), True)
                # Web endpoints serve on Ray Serve while the block runs.
                for fn_name, function in self.registered_functions.items():
                    function._web_url = result.web_urls.get(fn_name)
        except BaseException:
            self._running_name = None
            raise
        try:
            with following_output(ephemeral):
                yield self
        finally:
            self._running_name = None
            for function in self.registered_functions.values():
                function._web_url = None
            _accepts.settle()
            if self.registered_functions or self.registered_classes:
                client.call(RegistryApi.stop_app, ephemeral)

    def stop(self) -> int:
        """Stop the deployed app; its unfinished calls are cancelled and its web
        endpoints stop serving."""
        return stop_app(self.name)


def stop_app(name: str) -> int:
    """Stop the deployed app ``name`` (its web endpoints too); returns how many unfinished
    calls were cancelled."""
    client = get_client()
    _accepts.settle()
    return client.call(RegistryApi.stop_app, name)


def _input_options(fn: Callable[..., Any], name: str) -> dict[str, Any]:
    """What ``@concurrent`` and ``@batched`` marks on a function ask for; a batched
    function takes lists (one element per input) in every parameter."""
    found: dict[str, Any] = {}
    concurrency = concurrency_of(fn)
    if concurrency is not None:
        found.update(max_inputs=concurrency.max_inputs, target_inputs=concurrency.target_inputs)
    batching = batching_of(fn)
    if batching is not None:
        check_batched_signature(fn, name)
        found.update(max_batch_size=batching.max_batch_size, batch_wait_ms=batching.wait_ms)
    return found



def _schedule_json(schedule: object) -> str | None:
    if schedule is None:
        return None
    if not isinstance(schedule, Schedule):
        raise InvalidError(f"schedule must be a rayfn.Period or rayfn.Cron, not "
                           f"{type(schedule).__name__}")
    return schedule.to_json()


def _with_uploads(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """The Image's local files and modules uploaded to the cluster (Ray's package store),
    named by their URIs: the registry, perhaps on another machine, cannot read them."""
    if not any(not str(m).startswith(("gcs://", "s3://", "https://"))
               for m in runtime_env.get("py_modules", ())):
        return runtime_env
    from rayfn._client.ray import RayClient

    if not isinstance(get_client(), RayClient):  # a Ray client has joined the cluster
        raise InvalidError(
            "Image.add_local_dir, add_local_file and add_local_python_source upload files "
            "to the Ray cluster: deploy from a machine that joins the cluster (without "
            "RAYFN_SERVER_URL), or put the files in a Volume")
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    return dict(upload_py_modules_if_needed(dict(runtime_env), include_gitignore=False))
