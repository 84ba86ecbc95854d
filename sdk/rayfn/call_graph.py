"""Modal's ``modal.call_graph``: what ``FunctionCall.get_call_graph()`` returns, the call
and the calls its code spawned (and theirs), with their states."""

from __future__ import annotations

import dataclasses
import enum

from rayfn.states import CallState

__all__ = ["InputInfo", "InputStatus"]


class InputStatus(enum.IntEnum):
    """Modal's states of an input; ``CallState`` says more (queued, retrying, ...)."""

    PENDING = 0
    SUCCESS = 1
    FAILURE = 2
    INIT_FAILURE = 3
    TERMINATED = 4
    TIMEOUT = 5

    @classmethod
    def of(cls, state: CallState) -> InputStatus:
        return {
            CallState.SUCCEEDED: cls.SUCCESS,
            CallState.FAILED: cls.FAILURE,
            CallState.CANCELLED: cls.TERMINATED,
            CallState.TIMED_OUT: cls.TIMEOUT,
        }.get(state, cls.PENDING)


@dataclasses.dataclass
class InputInfo:
    """One call in a call graph."""

    object_id: str  # the call's ID (``fc-...``)
    function_call_id: str  # the same: here a call is one input
    status: InputStatus
    state: CallState
    app_name: str
    function_name: str
    children: list[InputInfo] = dataclasses.field(default_factory=list)
