"""App: a named group of functions that is deployed, run ephemerally, and stopped together."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, overload

import cloudpickle

from rayfn import _accepts
from rayfn._client import get_client
from rayfn.exception import InvalidError, SerializationError
from rayfn.function import Function
from rayfn.options import FunctionOptions, Image, Retries
from rayfn.protocol.ids import new_call_id
from rayfn.protocol.names import MAX_NAME_LENGTH, validate_name
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.records import DeployedFunction
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

    def __init__(self, name: str | None = None, *, image: Image | None = None) -> None:
        self.name = validate_name("app", name or "main")
        self.image = image or Image.debian_slim()
        if not isinstance(self.image, Image):
            raise InvalidError(f"image must be a rayfn.Image, not {type(image).__name__}")
        self.registered_functions: dict[str, Function[..., Any]] = {}
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
        cpu: float | None = None,
        memory: int | None = None,
        gpu: Any = None,
        serialized: bool = False,
        name: str | None = None,
    ) -> Callable[[Callable[P, R]], Function[P, R]]: ...

    def function(
        self,
        _fn: Callable[P, R] | None = None,
        *,
        retries: int | Retries | None = None,
        timeout: float = 300,
        max_containers: int | None = None,
        min_containers: int = 0,
        cpu: float | None = None,
        memory: int | None = None,
        gpu: Any = None,
        serialized: bool = False,
        name: str | None = None,
    ) -> Function[P, R] | Callable[[Callable[P, R]], Function[P, R]]:
        """Register a function of this app. Options are checked here, once."""
        options = FunctionOptions.build(
            retries=retries,
            timeout=timeout,
            max_containers=max_containers,
            min_containers=min_containers,
            cpu=cpu,
            memory=memory,
            gpu=gpu,
        )

        def wrap(fn: Callable[P, R]) -> Function[P, R]:
            if isinstance(fn, Function):
                raise InvalidError("@app.function() is applied twice to the same function")
            if not callable(fn):
                raise InvalidError(f"@app.function() decorates functions, not {fn!r}")
            fn_name = name or getattr(fn, "__name__", None) or ""
            web_endpoint = web_endpoint_of(fn)
            fn_options = (
                options
                if web_endpoint is None
                else dataclasses.replace(options, web_endpoint=web_endpoint)
            )
            function: Function[P, R] = Function(fn_name, app=self, raw=fn, options=fn_options)
            if fn_name in self.registered_functions:
                raise InvalidError(f"app {self.name!r} already has a function {fn_name!r}")
            self.registered_functions[fn_name] = function
            return function

        return wrap(_fn) if _fn is not None else wrap

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
        """What the registry stores: each function pickled; a web endpoint as the
        :class:`EndpointCode` its Serve replicas load it from."""
        runtime_env = json.dumps(self.image.runtime_env())
        functions = []
        for fn_name, function in self.registered_functions.items():
            raw = function.get_raw_f()
            _pickle_by_value(raw)
            shipped: Any = raw if function.options.web_endpoint is None \
                else EndpointCode.of(function)
            try:
                code = bytes(cloudpickle.dumps(shipped))
            except Exception as exc:
                raise SerializationError(f"cannot serialize function {fn_name!r}: {exc}") from exc
            functions.append(DeployedFunction(fn_name, json.dumps(function.options.to_dict()),
                                              code, runtime_env))
        return functions

    def deploy(self, name: str | None = None) -> int:
        """Deploy (or redeploy) the app; returns the new version. New calls use it;
        calls already accepted finish on the version they were spawned for.

        Web endpoints (``@rayfn.asgi_app()``) also start serving on the cluster's Ray
        Serve; ``function.get_web_url()`` then gives each one's URL.
        """
        if name is not None:
            self.name = validate_name("app", name)
        if not self.registered_functions:
            raise InvalidError(f"app {self.name!r} has no functions to deploy")
        payload = self._payload()
        client = get_client()
        _accepts.settle()
        result = client.call(RegistryApi.deploy, self.name, payload)
        for fn_name, function in self.registered_functions.items():
            function._web_url = result.web_urls.get(fn_name)
        return result.version

    @contextmanager
    def run(self) -> Iterator[App]:
        """Run the app ephemerally: its functions are deployed under a private name for
        the duration of the block and stopped when it ends."""
        if self._running_name is not None:
            raise InvalidError(f"app {self.name!r} is already running")
        suffix = ".run-" + new_call_id()[-10:].lower()
        ephemeral = self.name[: MAX_NAME_LENGTH - len(suffix)] + suffix
        client = get_client()
        _accepts.settle()
        if self.registered_functions:
            client.call(RegistryApi.deploy, ephemeral, self._payload(), True)
        self._running_name = ephemeral
        try:
            yield self
        finally:
            self._running_name = None
            _accepts.settle()
            if self.registered_functions:
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
