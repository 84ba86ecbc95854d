"""The contract's records: they cross process boundaries, so they must pickle to equal
values, stay frozen, and check what they carry."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest

from rayfn.exception import FunctionTimeoutError
from rayfn.protocol.payload import ErrorInfo, error_of
from rayfn.protocol.records import (
    AttemptOutcome,
    FunctionRef,
    OutcomeKind,
    RegistryAddress,
    TaskCall,
    TaskSpec,
)

REF = FunctionRef("shop", 3, "resize")
ADDRESS = RegistryAddress("rayfn", "rayfn-registry")
CALLS = (
    TaskCall("01ARZ3NDEKTSV4RRFFQ69G5FAV", 1, b"\x80args-1"),
    TaskCall("01ARZ3NDEKTSV4RRFFQ69G5FAW", 2, b"\x80args-2"),
    TaskCall("01ARZ3NDEKTSV4RRFFQ69G5FAX", 1, b""),
)
TIMEOUT_ERROR = error_of(FunctionTimeoutError, "resize timed out after 30 s (attempt 1)")

RECORDS: list[Any] = [
    REF,
    ADDRESS,
    CALLS[0],
    TaskSpec(code=b"\x80code", function=REF, timeout=30.0, registry=ADDRESS,
             report_node=True, calls=CALLS[:1]),
    AttemptOutcome(OutcomeKind.SUCCEEDED, 0.5, "hi\n", result=b"\x80v", result_json="1"),
    AttemptOutcome(OutcomeKind.SUCCEEDED, 0.5, "", result=b"\x80v"),
    AttemptOutcome(OutcomeKind.FAILED, 1.0, "", error=ErrorInfo("builtins.ValueError", "x",
                                                                 "Traceback ...")),
    AttemptOutcome(OutcomeKind.TIMED_OUT, 30.0, "slow", error=TIMEOUT_ERROR),
    AttemptOutcome(OutcomeKind.INVALID, 0.0, "", error=ErrorInfo("rayfn.exception.InvalidError",
                                                                  "bad", "")),
]
PICKLERS: list[tuple[str, Callable[[Any], bytes]]] = [
    ("pickle", pickle.dumps),
    ("cloudpickle", cloudpickle.dumps),
]


def _name(record: Any) -> str:
    return type(record).__name__


@pytest.mark.parametrize("dumps", [d for _, d in PICKLERS], ids=[n for n, _ in PICKLERS])
@pytest.mark.parametrize("record", RECORDS, ids=_name)
def test_each_record_pickles_to_an_equal_value(record: Any, dumps: Callable[[Any], bytes]) -> None:
    again = pickle.loads(dumps(record))
    assert again == record
    assert type(again) is type(record)
    assert again is not record


@pytest.mark.parametrize("record", [REF, ADDRESS, CALLS[0]], ids=_name)
def test_small_records_pickle_as_a_tuple_of_fields(record: Any) -> None:
    # (class, field values): no per-object dict of state, the cheap form Ray pays for.
    cls, fields = record.__reduce__()
    assert cls is type(record)
    assert fields == dataclasses.astuple(record)


@pytest.mark.parametrize("record", RECORDS, ids=_name)
def test_each_record_is_frozen(record: Any) -> None:
    first = dataclasses.fields(record)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, first, getattr(record, first))


def test_records_are_hashable_and_compare_by_value() -> None:
    # The worker caches functions by FunctionRef and registries by RegistryAddress.
    assert {REF: 1}[FunctionRef("shop", 3, "resize")] == 1
    assert FunctionRef("shop", 4, "resize") != REF
    assert {ADDRESS: 1}[RegistryAddress("rayfn", "rayfn-registry")] == 1


def test_a_task_of_several_calls_round_trips_with_its_calls_in_order() -> None:
    spec = TaskSpec(code=b"\x80code", function=REF, timeout=2.5, registry=ADDRESS,
                    report_node=False, calls=CALLS)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        again = pickle.loads(dumps(spec))
        assert again == spec
        assert again.calls == CALLS
        assert [c.call_id for c in again.calls] == [c.call_id for c in CALLS]
        assert all(isinstance(c, TaskCall) for c in again.calls)
        assert isinstance(again.function, FunctionRef)
        assert isinstance(again.registry, RegistryAddress)


def test_a_task_whose_code_is_a_list_keeps_the_list() -> None:
    # Large code travels as a one-element list (of an ObjectRef in real use).
    spec = TaskSpec(code=[b"stand-in"], function=REF, timeout=1.0,  # type: ignore[list-item]
                    registry=ADDRESS, report_node=True, calls=CALLS[:1])
    assert pickle.loads(pickle.dumps(spec)).code == [b"stand-in"]


def test_a_succeeded_outcome_needs_a_result() -> None:
    with pytest.raises(ValueError, match="result"):
        AttemptOutcome(OutcomeKind.SUCCEEDED, 0.1, "")


def test_a_succeeded_outcome_carries_no_error() -> None:
    with pytest.raises(ValueError, match="error"):
        AttemptOutcome(OutcomeKind.SUCCEEDED, 0.1, "", result=b"v", error=TIMEOUT_ERROR)


@pytest.mark.parametrize("kind", [OutcomeKind.FAILED, OutcomeKind.TIMED_OUT,
                                  OutcomeKind.INVALID])
def test_an_outcome_that_did_not_succeed_needs_its_error(kind: OutcomeKind) -> None:
    with pytest.raises(ValueError, match="error"):
        AttemptOutcome(kind, 0.1, "")


@pytest.mark.parametrize("kind", [OutcomeKind.FAILED, OutcomeKind.TIMED_OUT,
                                  OutcomeKind.INVALID])
def test_an_outcome_that_did_not_succeed_has_no_result(kind: OutcomeKind) -> None:
    with pytest.raises(ValueError, match="result"):
        AttemptOutcome(kind, 0.1, "", result=b"v", error=TIMEOUT_ERROR)


def test_the_checks_run_on_unpickling_too() -> None:
    # __reduce__ rebuilds through the constructor: a tampered tuple is refused.
    reduced: Any = AttemptOutcome(OutcomeKind.SUCCEEDED, 0.1, "", result=b"v").__reduce__()
    cls, fields = reduced
    broken = (fields[0], fields[1], fields[2], None, None, None)
    with pytest.raises(ValueError, match="result"):
        cls(*broken)


def test_outcome_kinds_are_stable_strings() -> None:
    # Their values cross versions (a worker and a registry of different releases).
    assert {kind.name: kind.value for kind in OutcomeKind} == {
        "SUCCEEDED": "succeeded",
        "FAILED": "failed",
        "TIMED_OUT": "timed_out",
        "INVALID": "invalid",
    }
    assert OutcomeKind("timed_out") is OutcomeKind.TIMED_OUT
    assert pickle.loads(pickle.dumps(OutcomeKind.INVALID)) is OutcomeKind.INVALID


def test_a_task_spec_crosses_ray_as_plain_tuples_and_comes_back_equal() -> None:
    spec = TaskSpec(b"code", FunctionRef("app", 3, "f"), 30.0, RegistryAddress("ns", "reg"),
                    True, (TaskCall("fc-a", 1, b"x"), TaskCall("fc-b", 2, b"y")))
    wire = spec.to_wire()
    assert _only_builtins(wire)  # what Ray serializes fastest
    assert TaskSpec.from_wire(pickle.loads(pickle.dumps(wire))) == spec


def test_an_attempt_outcome_crosses_ray_as_a_tuple_and_is_checked_on_arrival() -> None:
    done = AttemptOutcome(OutcomeKind.SUCCEEDED, 0.5, "hi\n", result=b"r", result_json="1")
    assert _only_builtins(done.to_wire())
    assert AttemptOutcome.from_wire(done.to_wire()) == done
    with pytest.raises(ValueError):
        AttemptOutcome.from_wire(("succeeded", 0.1, "", None, None, None))


def _only_builtins(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_only_builtins(item) for item in value)
    return value is None or type(value) in (str, bytes, int, float, bool)
