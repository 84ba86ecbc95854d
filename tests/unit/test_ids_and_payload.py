"""Call IDs, the payload envelope, outcomes, timeouts and the exception hierarchy."""

from __future__ import annotations

import builtins
import threading
from types import SimpleNamespace
from typing import Any

import cloudpickle
import pytest

from rayfn import exception
from rayfn.call import FunctionCall, check_timeout, result_of
from rayfn.exception import (
    CancelledError,
    ExecutionError,
    FunctionTimeoutError,
    InvalidError,
    OutputExpiredError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
)
from rayfn.protocol import ids as _ids
from rayfn.protocol.ids import new_call_id, new_call_ids, validate_call_id
from rayfn.protocol.payload import (
    CallOutcome,
    ErrorInfo,
    dumps_args,
    encode_exception,
    encode_result,
    error_of,
    loads_args,
    rebuild_exception,
    unwrap,
)
from rayfn.states import CallState

ALPHABET = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
VALID_ID = "fc-01J9Z8Y7X6W5V4T3S2R1Q0P9N8"


# ---- call IDs ----------------------------------------------------------------------


def test_call_ids_are_fc_and_a_26_character_ulid() -> None:
    for call_id in new_call_ids(100) + [new_call_id()]:
        assert call_id.startswith("fc-")
        assert len(call_id) == 3 + 26
        assert set(call_id[3:]) <= ALPHABET
        assert validate_call_id(call_id) == call_id


def test_call_ids_are_unique_and_increasing_across_calls() -> None:
    ids = [new_call_id() for _ in range(1000)] + new_call_ids(1000) + new_call_ids(1000)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_call_ids_are_unique_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(8)]

    def make(slot: list[str]) -> None:
        for _ in range(200):
            slot.extend(new_call_ids(5))

    threads = [threading.Thread(target=make, args=(slot,)) for slot in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for slot in results for i in slot]
    assert len(set(ids)) == len(ids) == 8 * 200 * 5
    assert all(slot == sorted(slot) for slot in results)


def _frozen_clock(monkeypatch: pytest.MonkeyPatch, ms: int) -> list[int]:
    """Make ``_ids`` see a clock that only moves when the returned cell is changed."""
    now = [ms]
    clock = SimpleNamespace(time_ns=lambda: now[0] * 1_000_000)
    monkeypatch.setattr(_ids, "time", clock)
    return now


def test_ten_thousand_ids_in_one_millisecond_strictly_increase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _frozen_clock(monkeypatch, 1_700_000_000_000)
    monkeypatch.setattr(_ids, "_generator", _ids._Monotonic())
    ids = new_call_ids(5_000) + [new_call_id() for _ in range(5_000)]
    assert len(set(ids)) == 10_000
    assert ids == sorted(set(ids))  # strictly increasing
    # all of them carry the same millisecond: the first 10 characters are the timestamp
    assert {i[3:13] for i in ids} == {ids[0][3:13]}


def test_ids_keep_increasing_when_the_clock_goes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    now = _frozen_clock(monkeypatch, 1_700_000_000_000)
    monkeypatch.setattr(_ids, "_generator", _ids._Monotonic())
    before = new_call_ids(3)
    now[0] -= 5_000
    after = new_call_ids(3)
    assert before + after == sorted(before + after)
    assert len(set(before + after)) == 6


def test_random_part_overflow_rolls_into_the_next_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _frozen_clock(monkeypatch, 1_700_000_000_000)
    generator = _ids._Monotonic()
    monkeypatch.setattr(_ids, "_generator", generator)
    first = new_call_id()
    generator._last_random = _ids._RANDOM_MAX - 1
    ids = [first] + new_call_ids(3)
    assert ids == sorted(set(ids))  # strictly increasing
    assert all(validate_call_id(i) for i in ids)


@pytest.mark.parametrize(
    "call_id",
    [
        "",
        "fc-",
        "fx-01J9Z8Y7X6W5V4T3S2R1Q0P9N8",  # wrong prefix
        "FC-01J9Z8Y7X6W5V4T3S2R1Q0P9N8",  # wrong prefix case
        "01J9Z8Y7X6W5V4T3S2R1Q0P9N8",  # no prefix
        "fc-01J9Z8Y7X6W5V4T3S2R1Q0P9N",  # 25 characters
        "fc-01J9Z8Y7X6W5V4T3S2R1Q0P9N8A",  # 27 characters
        "fc-01j9z8y7x6w5v4t3s2r1q0p9n8",  # lowercase
        "fc-01J9Z8Y7X6W5V4T3S2R1Q0P9NI",  # I is not in the alphabet
        "fc-01J9Z8Y7X6W5V4T3S2R1Q0P9NL",  # L
        "fc-01J9Z8Y7X6W5V4T3S2R1Q0P9NO",  # O
        "fc-01J9Z8Y7X6W5V4T3S2R1Q0P9NU",  # U
        "fc-81J9Z8Y7X6W5V4T3S2R1Q0P9N8",  # first character above 7 overflows 128 bits
        " fc-01J9Z8Y7X6W5V4T3S2R1Q0P9N8",
        "fc-01J9Z8Y7X6W5V4T3S2R1Q0P9N8\n",
        None,
        12345,
        b"fc-01J9Z8Y7X6W5V4T3S2R1Q0P9N8",
    ],
)
def test_malformed_call_ids_are_rejected(call_id: object) -> None:
    with pytest.raises(InvalidError, match="malformed call ID"):
        validate_call_id(call_id)


def test_well_formed_call_id_is_accepted() -> None:
    assert validate_call_id(VALID_ID) == VALID_ID


def test_function_call_from_id_validates_and_compares_by_id() -> None:
    call = FunctionCall.from_id(VALID_ID)
    assert call.object_id == VALID_ID
    assert call == FunctionCall(VALID_ID)
    assert len({call, FunctionCall(VALID_ID)}) == 1
    with pytest.raises(InvalidError):
        FunctionCall.from_id("fc-nope")


# ---- arguments and results ---------------------------------------------------------


def test_arguments_round_trip() -> None:
    data = dumps_args((1, "two", [3.0]), {"key": {"nested": None}})
    assert loads_args(data) == ((1, "two", [3.0]), {"key": {"nested": None}})


def test_unpicklable_argument_raises_serialization_error() -> None:
    with pytest.raises(SerializationError, match="arguments") as info:
        dumps_args((threading.Lock(),), {})
    assert info.value.__cause__ is not None


def test_unpicklable_result_raises_serialization_error() -> None:
    with pytest.raises(SerializationError, match="result"):
        encode_result(threading.Lock())


# ---- exceptions across the wire ----------------------------------------------------


class TwoArgError(Exception):
    """Pickles, but cannot be unpickled: ``args`` holds one value, ``__init__`` needs two."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


def _raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as the executor sees it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_exception_round_trip_keeps_type_and_remote_traceback() -> None:
    info = encode_exception(_raised(KeyError("missing-key")))
    assert info.type_name == "builtins.KeyError"
    assert "missing-key" in info.message
    assert "Traceback" in info.traceback and "_raised" in info.traceback

    rebuilt = rebuild_exception(info)
    assert type(rebuilt) is KeyError
    assert rebuilt.args == ("missing-key",)
    assert isinstance(rebuilt.__cause__, RemoteTraceback)
    assert rebuilt.__cause__.text == info.traceback
    assert "missing-key" in str(rebuilt.__cause__)


def test_rayfn_errors_round_trip() -> None:
    rebuilt = rebuild_exception(encode_exception(_raised(ExecutionError("worker died"))))
    assert type(rebuilt) is ExecutionError
    assert str(rebuilt) == "worker died"


def test_exception_that_cannot_be_unpickled_becomes_remote_error() -> None:
    info = encode_exception(_raised(TwoArgError(7, "boom")))
    assert info.exception is not None  # it pickles; unpickling is what fails
    rebuilt = rebuild_exception(info)
    assert isinstance(rebuilt, RemoteError)
    assert rebuilt.type_name == f"{__name__}.TwoArgError"
    assert rebuilt.traceback == info.traceback
    assert "TwoArgError" in str(rebuilt) and "7: boom" in str(rebuilt)


def test_exception_that_cannot_be_pickled_becomes_remote_error() -> None:
    exc = RuntimeError("holds a lock")
    exc.lock = threading.Lock()  # type: ignore[attr-defined]
    info = encode_exception(_raised(exc))
    assert info.exception is None
    rebuilt = rebuild_exception(info)
    assert isinstance(rebuilt, RemoteError)
    assert rebuilt.type_name == "builtins.RuntimeError"
    assert "holds a lock" in str(rebuilt)


def test_remote_error_survives_pickling() -> None:
    error = RemoteError("x.Y: bad", type_name="x.Y", traceback="tb text")
    copy = cloudpickle.loads(cloudpickle.dumps(error))
    assert (str(copy), copy.type_name, copy.traceback) == ("x.Y: bad", "x.Y", "tb text")


def test_error_of_builds_a_rebuildable_rayfn_error() -> None:
    info = error_of(ExecutionError, "function failed to load")
    assert info.type_name == "rayfn.exception.ExecutionError"
    rebuilt = rebuild_exception(info)
    assert type(rebuilt) is ExecutionError
    assert str(rebuilt) == "function failed to load"
    assert rebuilt.__cause__ is None  # no remote traceback to attach


# ---- outcomes ----------------------------------------------------------------------


def _outcome(state: CallState, **kwargs: Any) -> CallOutcome:
    return CallOutcome(call_id=VALID_ID, state=state, **kwargs)


def test_unwrap_succeeded_returns_the_value() -> None:
    value = {"answer": [42]}
    assert unwrap(_outcome(CallState.SUCCEEDED, result=encode_result(value))) == value


def test_unwrap_succeeded_none() -> None:
    assert unwrap(_outcome(CallState.SUCCEEDED, result=encode_result(None))) is None


def test_unwrap_cancelled_raises_cancelled_error() -> None:
    with pytest.raises(CancelledError, match=VALID_ID):
        unwrap(_outcome(CallState.CANCELLED))


def test_unwrap_timed_out_raises_function_timeout_error() -> None:
    error = error_of(FunctionTimeoutError, "ran past its 5 s timeout")
    with pytest.raises(FunctionTimeoutError, match="5 s timeout"):
        unwrap(_outcome(CallState.TIMED_OUT, error=error))


def test_unwrap_failed_raises_the_rebuilt_exception() -> None:
    error = encode_exception(_raised(ValueError("bad input")))
    with pytest.raises(ValueError, match="bad input") as info:
        unwrap(_outcome(CallState.FAILED, error=error))
    assert isinstance(info.value.__cause__, RemoteTraceback)


def test_unwrap_failed_without_detail_raises_execution_error() -> None:
    with pytest.raises(ExecutionError, match="without detail"):
        unwrap(_outcome(CallState.FAILED))


def test_result_of_an_expired_outcome_raises_output_expired() -> None:
    outcome = _outcome(CallState.SUCCEEDED, result=encode_result(1), expired=True)
    with pytest.raises(OutputExpiredError, match=VALID_ID):
        result_of(outcome)


def test_result_of_a_live_outcome_is_its_value() -> None:
    assert result_of(_outcome(CallState.SUCCEEDED, result=encode_result("ok"))) == "ok"


def test_error_info_has_no_pickle_by_default() -> None:
    assert ErrorInfo(type_name="t", message="m", traceback="").exception is None


# ---- check_timeout -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [(None, None), (float("inf"), None), (0, 0.0), (0.25, 0.25), (10, 10.0)],
)
def test_check_timeout_accepts(timeout: float | None, expected: float | None) -> None:
    result = check_timeout(timeout)
    assert result == expected
    assert result is None or type(result) is float


@pytest.mark.parametrize("timeout", [-1, -0.001, float("-inf"), float("nan"), "5", True, [1]])
def test_check_timeout_rejects(timeout: Any) -> None:
    with pytest.raises(InvalidError, match="timeout"):
        check_timeout(timeout)


# ---- hierarchy and states ----------------------------------------------------------


def test_timeout_error_is_both_rayfn_and_builtin() -> None:
    assert issubclass(exception.TimeoutError, builtins.TimeoutError)
    assert issubclass(exception.TimeoutError, exception.Error)
    for cls in (FunctionTimeoutError, OutputExpiredError):
        assert issubclass(cls, exception.TimeoutError)
    with pytest.raises(builtins.TimeoutError):
        raise FunctionTimeoutError("caught as the builtin")


def test_every_rayfn_exception_derives_from_error() -> None:
    for name in exception.__all__:
        cls = getattr(exception, name)
        assert issubclass(cls, exception.Error), name
    assert not issubclass(RemoteTraceback, exception.Error)


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (CallState.QUEUED, False),
        (CallState.RUNNING, False),
        (CallState.RETRYING, False),
        (CallState.SUCCEEDED, True),
        (CallState.FAILED, True),
        (CallState.TIMED_OUT, True),
        (CallState.CANCELLED, True),
    ],
)
def test_call_state_is_terminal(state: CallState, terminal: bool) -> None:
    assert state.is_terminal() is terminal


def test_call_state_is_its_string_value() -> None:
    assert str(CallState.TIMED_OUT) == "timed_out"
    assert CallState("running") is CallState.RUNNING
    assert isinstance(CallState.SUCCEEDED, str)
    assert f"{CallState.FAILED}" == "failed"
