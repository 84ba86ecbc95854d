"""Function: a deployed (or deployable) function and the ways to call it."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import cloudpickle

from rayfn import _accepts
from rayfn._aio import aio_iter_method, aio_method
from rayfn._client import get_client
from rayfn._progress import progress_bar
from rayfn.call import FunctionCall, collect, result_of
from rayfn.exception import InvalidError
from rayfn.options import FunctionOptions
from rayfn.protocol.ids import new_call_ids
from rayfn.protocol.names import validate_name
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.payload import check_arguments, check_input_size, dumps_args
from rayfn.protocol.variants import Variant, overrides_of, parse_target
from rayfn.runtime import current_call
from rayfn.settings import get_settings

if TYPE_CHECKING:
    from rayfn.app import App

__all__ = ["Function"]

P = ParamSpec("P")
R = TypeVar("R")
# How long one request for a generator's next values waits (the registry caps it too).
WAIT_SECONDS = 10.0


class Function(Generic[P, R]):
    """A function of an app. Made by ``@app.function()`` or ``Function.from_name``."""

    def __init__(
        self,
        name: str,
        *,
        app: App | None = None,
        app_name: str | None = None,
        raw: Callable[P, R] | None = None,
        options: FunctionOptions | None = None,
        method: str | None = None,
        target: str | None = None,
        bound_local: Callable[..., Any] | None = None,
    ) -> None:
        self._name = validate_name("function", name)
        self._app = app
        self._app_name = app_name
        self._raw = raw
        self.options = options or FunctionOptions()
        self._web_url: str | None = None
        # A method of a class: its calls name the method; ``target`` names the class's
        # variant (parameters, options) its calls are spawned to; ``bound_local`` runs it
        # on a local instance.
        self._method = method
        self._target = target or self._name
        self._bound_local = bound_local
        self._checked_against: Callable[..., Any] | None = None
        if raw is not None:
            self._checked_against = raw if method is None else unbound(raw)

    # ---- identity ----------------------------------------------------------------

    @classmethod
    def from_name(
        cls, app_name: str, name: str, *, environment_name: str | None = None
    ) -> Function[..., Any]:
        """A deployed function, looked up lazily: the first call raises ``NotFoundError``
        if ``app_name`` has no function ``name`` deployed."""
        validate_name("app", app_name)
        return cls(name, app_name=app_name)

    @property
    def name(self) -> str:
        return self._name

    @property
    def app(self) -> App | None:
        """The App this function was declared on (None when looked up by name)."""
        return self._app

    @property
    def app_name(self) -> str:
        """The app the calls go to: the running ephemeral app inside ``app.run()``."""
        if self._app is not None:
            return self._app.target_name()
        assert self._app_name is not None
        return self._app_name

    def __repr__(self) -> str:
        if self._method is not None:
            return f"Function({self.app_name!r}, {self._name + '.' + self._method!r})"
        return f"Function({self.app_name!r}, {self._target!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Inside the cluster a function refers to its deployment by name, never by value.
        return (_function_from_name, (self.app_name, self._name, self._method, self._target))

    def with_options(self, **options: Any) -> Function[P, R]:
        """The same function with other resources, timeout, retries or scaling
        (``cpu=``, ``memory=``, ``gpu=``, ``timeout=``, ``retries=``,
        ``max_containers=``, ...): its calls are queued and run apart from the plain
        function's, with these options."""
        if self._method is not None:
            raise InvalidError("use Cls.with_options(...) for the methods of a class")
        variant = parse_target(self._target)
        merged = {**dict(variant.overrides), **options}
        if self._raw is not None:
            self.options.overridden(merged)  # checked against the real options now
        target = Variant(variant.base, variant.params, overrides_of(merged)).name()
        copy: Function[P, R] = Function(self._name, app=self._app, app_name=self._app_name,
                                        raw=self._raw, options=self.options, target=target)
        return copy

    def get_raw_f(self) -> Callable[P, R]:
        if self._raw is None:
            raise InvalidError(f"{self!r} was looked up by name; its code is on the cluster")
        return self._raw

    def get_web_url(self) -> str | None:
        """The URL of this web endpoint once ``deploy`` has run it on Ray Serve (else None)."""
        return self._web_url

    def _check_callable(self) -> None:
        if self.options.web_endpoint is not None:
            raise InvalidError(
                f"{self!r} is a web endpoint (@rayfn.asgi_app()): it is served over HTTP, "
                "not called; serve it with `rayfn serve FILE` or `rayfn deploy FILE`"
            )
        if self.options.generator:
            raise InvalidError(f"{self!r} is a generator function: it cannot be spawned "
                               "or mapped (as in Modal); iterate over it inside a call")

    @aio_method
    def hydrate(self) -> Function[P, R]:
        """Check now that the function is deployed (raises ``NotFoundError`` if not)."""
        get_client().call(RegistryApi.function_info, self.app_name, self._name)
        return self

    # ---- calling -----------------------------------------------------------------

    def local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here, in this process."""
        if self._bound_local is not None:
            value: R = self._bound_local(*args, **kwargs)
            return value
        if self._method is not None:
            raise InvalidError(f"{self!r} was looked up by name; its code is on the cluster")
        return self.get_raw_f()(*args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.local(*args, **kwargs)

    def _encode(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        if self._checked_against is not None:  # one looked up by name is checked remotely
            check_arguments(self._checked_against, self._name, args, kwargs)
        if self._method is not None:  # a container of the class runs the named method
            args = (self._method, *args)
        payload = dumps_args(args, kwargs)
        return check_input_size(payload, get_settings().max_input_bytes, self._name)

    @aio_method
    def spawn(self, /, *args: P.args, **kwargs: P.kwargs) -> FunctionCall[R]:
        """Queue one call and return its handle at once. Its ID can be read only once the
        call is committed; in a burst of spawns, commits are batched (see ``_accepts``)."""
        self._check_callable()
        payload = self._encode(args, kwargs)
        (call_id,) = new_call_ids(1)
        queued = _accepts.spawn(get_client(), self.app_name, self._target, call_id, payload,
                                current_call())
        return FunctionCall._of_new_id(call_id, queued)

    @aio_iter_method
    def remote_gen(self, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[Any]:
        """Run a generator function on the cluster and yield its values as it yields
        them (``async for v in f.remote_gen.aio(...)`` in async code)."""
        if self._raw is not None and not self.options.generator:
            raise InvalidError(f"{self!r} is not a generator function: use remote()")
        if self.options.web_endpoint is not None:
            self._check_callable()
        payload = self._encode(args, kwargs)
        (call_id,) = new_call_ids(1)
        client = get_client()
        _accepts.end_burst()
        client.call(RegistryApi.spawn_generator, self.app_name, self._target, call_id,
                    payload, current_call())
        start = 0
        while True:
            page = client.call(RegistryApi.generator_values, call_id, start, WAIT_SECONDS)
            for value in page.values:
                yield cloudpickle.loads(value)
            start += len(page.values)
            if page.done:  # raises what ended it, if it did not succeed
                result_of(client.call(RegistryApi.get, call_id, 0.0))
                return

    @aio_method
    def remote(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function on the cluster and wait for its value."""
        return self.spawn(*args, **kwargs).get()

    @aio_method
    def spawn_map(
        self, *input_iterators: Iterable[Any], kwargs: dict[str, Any] | None = None
    ) -> list[FunctionCall[R]]:
        """Queue one call per input (zipped like ``map``); return the calls, in order."""
        return [
            FunctionCall._of_new_id(cid)
            for cid in self._spawn_inputs(input_iterators, kwargs or {})
        ]

    @aio_iter_method
    def map(
        self,
        *input_iterators: Iterable[Any],
        kwargs: dict[str, Any] | None = None,
        order_outputs: bool = True,
        return_exceptions: bool = False,
        show_progress: bool | None = None,
    ) -> Iterator[R]:
        """Run the function over the inputs in parallel and yield the values.

        With ``return_exceptions`` a failed input yields its exception instead of raising.
        A progress bar shows while this runs in a terminal or notebook.
        """
        call_ids = self._spawn_inputs(input_iterators, kwargs or {})
        with progress_bar(len(call_ids), f"{self._name}", show_progress) as advance:
            for _, value in collect(
                call_ids,
                order_outputs=order_outputs,
                return_exceptions=return_exceptions,
                progress=advance,
            ):
                yield value

    @aio_iter_method
    def starmap(
        self,
        input_iterator: Iterable[tuple[Any, ...]],
        kwargs: dict[str, Any] | None = None,
        order_outputs: bool = True,
        return_exceptions: bool = False,
    ) -> Iterator[R]:
        columns = list(zip(*input_iterator, strict=True))
        return self.map(
            *columns,
            kwargs=kwargs,
            order_outputs=order_outputs,
            return_exceptions=return_exceptions,
        )

    @aio_method
    def for_each(
        self,
        *input_iterators: Iterable[Any],
        kwargs: dict[str, Any] | None = None,
        ignore_exceptions: bool = False,
    ) -> None:
        """Run the function over the inputs in parallel for its effects, and wait for
        all of them; the values are dropped. The first failure raises, unless
        ``ignore_exceptions``."""
        for _ in self.map(*input_iterators, kwargs=kwargs, order_outputs=False,
                          return_exceptions=ignore_exceptions):
            pass

    def _spawn_inputs(
        self, input_iterators: tuple[Iterable[Any], ...], kwargs: dict[str, Any]
    ) -> list[str]:
        self._check_callable()
        if not input_iterators:
            raise InvalidError("map needs at least one iterable of inputs")
        client = get_client()
        call_ids: list[str] = []
        inputs = zip(*input_iterators)  # noqa: B905 - map stops at the shortest, as in Modal

        def batches() -> Iterator[list[tuple[str, bytes]]]:
            for payloads in _batches(self._encode(tuple(args), kwargs) for args in inputs):
                ids = new_call_ids(len(payloads))
                call_ids.extend(ids)
                yield list(zip(ids, payloads, strict=True))

        client.spawn_batches(self.app_name, self._target, batches(), current_call())
        return call_ids


def _batches(payloads: Iterator[bytes]) -> Iterator[list[bytes]]:
    """Payloads in requests of at most ``spawn_batch_size`` inputs and, past the first
    input, ``max_input_bytes`` bytes: a batch of large inputs still fits one request."""
    settings = get_settings()
    batch: list[bytes] = []
    size = 0
    for payload in payloads:
        if batch and (len(batch) >= settings.spawn_batch_size
                      or size + len(payload) > settings.max_input_bytes):
            yield batch
            batch, size = [], 0
        batch.append(payload)
        size += len(payload)
    if batch:
        yield batch


def unbound(method: Callable[..., Any]) -> Callable[..., Any]:
    """A class's method as its callers see it, without ``self``: what arguments are
    checked against."""
    return types.MethodType(method, object()) if inspect.isfunction(method) else method


def _function_from_name(app_name: str, name: str, method: str | None = None,
                        target: str | None = None) -> Function[..., Any]:
    validate_name("app", app_name)
    return Function(name, app_name=app_name, method=method, target=target)
