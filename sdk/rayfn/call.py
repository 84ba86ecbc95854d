"""FunctionCall: a handle on one spawned call, by its ID."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

from rayfn import _accepts
from rayfn._aio import aio_function, aio_method
from rayfn._client import get_client
from rayfn.call_graph import InputInfo, InputStatus
from rayfn.exception import InvalidError, NotFoundError, OutputExpiredError
from rayfn.exception import TimeoutError as RayfnTimeoutError
from rayfn.protocol.ids import validate_call_id
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.payload import CallOutcome, unwrap
from rayfn.schemas import CallStatus
from rayfn.states import CallState

__all__ = ["FunctionCall"]

R = TypeVar("R")
# Calls asked about per request while collecting: the oldest pending ones, which end
# first; a bigger window costs the registry a lookup per ID on every request.
POLL_WINDOW = 200
# Calls a call graph holds at most (a fan-out of thousands is still shown whole).
MAX_GRAPH_CALLS = 100_000


def check_timeout(timeout: float | None) -> float | None:
    """``None`` (or infinity) waits forever; otherwise seconds >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout):
        raise InvalidError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if timeout < 0:
        raise InvalidError(f"timeout must be >= 0 seconds, not {timeout!r}")
    if math.isinf(timeout):
        return None
    return float(timeout)


def result_of(outcome: CallOutcome) -> Any:
    if outcome.expired:
        raise OutputExpiredError(f"the result of {outcome.call_id} has expired and was deleted")
    return unwrap(outcome)


class FunctionCall(Generic[R]):
    """A spawned call. ``get`` can be called any number of times, from any process."""

    def __init__(self, object_id: str) -> None:
        self._object_id = validate_call_id(object_id)
        self._queued = False

    @property
    def object_id(self) -> str:
        """The call's ID; for a call spawned in a burst, read once the call is accepted."""
        self._accepted()
        return self._object_id

    def _accepted(self) -> None:
        _accept_all((self,))

    def __repr__(self) -> str:
        return f"FunctionCall({self.object_id!r})"

    def __getstate__(self) -> dict[str, Any]:
        self._accepted()  # another process cannot wait for this one's accept
        return {"_object_id": self._object_id, "_queued": False}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FunctionCall) and other._object_id == self._object_id

    def __hash__(self) -> int:
        return hash(self._object_id)

    @classmethod
    def _of_new_id(cls, call_id: str, queued: bool = False) -> FunctionCall[Any]:
        """A handle for an ID this process just made (no need to check its form);
        ``queued`` when its accept is still on its way."""
        call: FunctionCall[Any] = cls.__new__(cls)
        call._object_id = call_id
        call._queued = queued
        return call

    @classmethod
    def from_id(cls, function_call_id: str) -> FunctionCall[Any]:
        """A handle for an existing call. A malformed ID raises ``InvalidError`` here;
        an unknown one raises ``NotFoundError`` when first used."""
        return cls(function_call_id)

    @aio_method
    def get(self, timeout: float | None = None) -> R:
        """The call's return value.

        ``timeout=None`` waits until the call ends, ``0`` checks once. While the call is
        unfinished at the end of the timeout this raises ``TimeoutError``.
        """
        limit = check_timeout(timeout)
        self._accepted()
        deadline = None if limit is None else time.monotonic() + limit
        client = get_client()
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            outcome = client.call(RegistryApi.get, self._object_id, remaining)
            if outcome.state.is_terminal():
                value: R = result_of(outcome)
                return value
            if deadline is not None and time.monotonic() >= deadline:
                raise RayfnTimeoutError(
                    f"{self._object_id} is still {outcome.state.value} after {limit:g} s"
                )

    @aio_method
    def status(self) -> CallStatus:
        """State, attempts, timestamps and error of the call."""
        return get_client().call(RegistryApi.status, self.object_id)

    @aio_method
    def logs(self) -> str:
        """What the call's attempts printed to stdout and stderr so far (see
        ``CallLogs``): a running attempt's output shows about a second after it is
        printed."""
        return get_client().call(RegistryApi.logs, self.object_id).logs

    @aio_method
    def cancel(self, terminate_containers: bool = False) -> CallStatus:
        """Cancel the call: a queued call never runs, a running one is stopped and not
        retried. Cancelling a finished call changes nothing."""
        return get_client().call(RegistryApi.cancel, self.object_id)

    @aio_method
    def get_call_graph(self) -> list[InputInfo]:
        """The call graph the call is part of, from its root (its topmost caller, or the
        web request that spawned it) down through every call spawned, with their states,
        as Modal's: a list holding the root. At most ``MAX_GRAPH_CALLS`` calls."""
        client = get_client()
        root_id = client.call(RegistryApi.call_root, self.object_id)
        try:
            root = _input_info(client.call(RegistryApi.status, root_id))
        except NotFoundError:  # a web request that spawned the call: an input, not a call
            root = InputInfo(root_id, root_id, InputStatus.SUCCESS, CallState.SUCCEEDED,
                             "", "web request")
        frontier = [root]
        seen = 1
        while frontier and seen < MAX_GRAPH_CALLS:
            node = frontier.pop(0)
            for child in client.call(RegistryApi.children, node.object_id):
                if seen >= MAX_GRAPH_CALLS:
                    break
                info = _input_info(child)
                node.children.append(info)
                frontier.append(info)
                seen += 1
        return [root]

    @aio_function  # takes no self, as a staticmethod
    def gather(*function_calls: FunctionCall[Any]) -> list[Any]:
        """The values of several calls, in order; raises the first failure."""
        return list(_gather(function_calls))


def _input_info(status: CallStatus) -> InputInfo:
    return InputInfo(status.call_id, status.call_id, InputStatus.of(status.state),
                     status.state, status.app, status.function)


def _accept_all(calls: Sequence[FunctionCall[Any]]) -> None:
    """Wait, once for all, until the calls this process queued are committed (see
    ``_accepts``); raises what refused one of them."""
    _accepts.end_burst()
    queued = [c for c in calls if c._queued]
    if queued:
        _accepts.wait([c._object_id for c in queued])
        for c in queued:
            c._queued = False


def _gather(calls: Iterable[FunctionCall[Any]]) -> Iterable[Any]:
    calls = list(calls)
    _accept_all(calls)
    results = collect([c._object_id for c in calls], order_outputs=True,
                      return_exceptions=False)
    return (value for _, value in results)


def collect(
    call_ids: list[str],
    *,
    order_outputs: bool,
    return_exceptions: bool,
    progress: Any = None,
) -> Iterable[tuple[int, Any]]:
    """Yield ``(index, value)`` as calls finish, in input order when ``order_outputs``."""
    client = get_client()
    index_of = {call_id: i for i, call_id in enumerate(call_ids)}
    pending = dict(index_of)
    ready: dict[int, Any] = {}
    next_index = 0
    while pending:
        outcomes = client.call(RegistryApi.get_many,
                               list(itertools.islice(pending, POLL_WINDOW)), 10.0)
        for outcome in outcomes:
            if not outcome.state.is_terminal():
                continue
            i = pending.pop(outcome.call_id)
            try:
                value: Any = result_of(outcome)
            except Exception as exc:
                if not return_exceptions:
                    raise
                value = exc
            if progress is not None:
                progress()
            if order_outputs:
                ready[i] = value
            else:
                yield i, value
        while order_outputs and next_index in ready:
            yield next_index, ready.pop(next_index)
            next_index += 1
