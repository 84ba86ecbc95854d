"""The settlement policy: what becomes of a call when one of its attempts ends."""

from __future__ import annotations

import pickle

import pytest

from rayfn import Retries
from rayfn.exception import (
    ExecutionError,
    FunctionTimeoutError,
    InvalidError,
    ResourcesUnavailableError,
    SerializationError,
)
from rayfn.protocol.payload import ErrorInfo, encode_exception, error_of
from rayfn.protocol.records import AttemptOutcome, FunctionRef, OutcomeKind
from rayfn.states import CallState
from rayfn_service.settlement import (
    AttemptEnd,
    CallSoFar,
    Cancelled,
    Decision,
    Fail,
    Lost,
    Nothing,
    Requeue,
    Retry,
    Returned,
    Stranded,
    Stuck,
    Succeed,
    Unrunnable,
    attempt_log,
    settle,
)

REF = FunctionRef("shop", 3, "resize")
NOW = 1_000.0
BACKOFF = Retries(max_retries=3, backoff_coefficient=2.0, initial_delay=1.5, max_delay=5.0)


def call(attempts: int = 1, retries: Retries | None = None, timeout: float = 30.0) -> CallSoFar:
    return CallSoFar(function=REF, timeout=timeout, retries=retries, attempts=attempts)


def decide(end: AttemptEnd, attempts: int = 1, retries: Retries | None = None,
           now: float = NOW) -> Decision:
    return settle(end, call(attempts, retries), now)


def user_error(message: str = "boom") -> ErrorInfo:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return encode_exception(exc)


def returned(kind: OutcomeKind, output: str = "", *, result: bytes | None = None,
             result_json: str | None = None, error: ErrorInfo | None = None) -> Returned:
    return Returned(AttemptOutcome(kind, 0.25, output, result, result_json, error))


def failed(output: str = "") -> Returned:
    return returned(OutcomeKind.FAILED, output, error=user_error())


def timed_out(output: str = "") -> Returned:
    return returned(OutcomeKind.TIMED_OUT, output, error=error_of(
        FunctionTimeoutError, "resize timed out after 30 s (attempt 1)"))


def fail_of(decision: Decision) -> Fail:
    assert isinstance(decision, Fail), decision
    return decision


def retry_of(decision: Decision) -> Retry:
    assert isinstance(decision, Retry), decision
    return decision


# ---- success ---------------------------------------------------------------------------


def test_a_returned_value_succeeds_with_its_result_and_logs() -> None:
    value = pickle.dumps({"w": 10})
    decision = decide(returned(OutcomeKind.SUCCEEDED, "done\n", result=value,
                               result_json='{"w":10}'))
    assert decision == Succeed(result=value, result_json='{"w":10}', logs="done\n")


def test_a_success_of_a_retry_keeps_its_output_under_an_attempt_heading() -> None:
    decision = decide(returned(OutcomeKind.SUCCEEDED, "ok", result=b"x"), attempts=2,
                      retries=BACKOFF)
    assert decision == Succeed(result=b"x", result_json=None, logs="--- attempt 2 ---\nok\n")


# ---- user errors -----------------------------------------------------------------------


def test_a_user_error_with_retries_left_is_retried_after_the_first_delay() -> None:
    decision = retry_of(decide(failed("trying\n"), attempts=1, retries=BACKOFF))
    assert decision.ready_at == NOW + 1.5
    assert decision.logs == "trying\n"


def test_a_user_error_on_the_last_allowed_attempt_is_still_retried() -> None:
    # max_retries=3: attempts 1, 2 and 3 may fail and be tried again; the 4th is the last.
    assert isinstance(decide(failed(), attempts=3, retries=BACKOFF), Retry)


def test_a_user_error_with_no_retries_left_fails_with_the_users_error() -> None:
    error = user_error("bad pixel")
    decision = fail_of(decide(returned(OutcomeKind.FAILED, "x", error=error), attempts=4,
                              retries=BACKOFF))
    assert decision.state is CallState.FAILED
    assert decision.error == error
    assert decision.error.type_name == "builtins.ValueError"
    assert decision.logs == "--- attempt 4 ---\nx\n"


def test_a_user_error_without_retries_fails_at_once() -> None:
    decision = fail_of(decide(failed(), attempts=1, retries=None))
    assert decision.state is CallState.FAILED
    assert decision.error.message == "boom"
    assert decision.logs is None  # it printed nothing


def test_zero_retries_fail_the_first_attempt() -> None:
    assert isinstance(decide(failed(), attempts=1, retries=Retries(max_retries=0)), Fail)


# ---- timeouts --------------------------------------------------------------------------


def test_a_timeout_with_retries_left_is_retried() -> None:
    decision = retry_of(decide(timed_out("slow\n"), attempts=2, retries=BACKOFF))
    assert decision.ready_at == NOW + 3.0
    assert decision.logs == "--- attempt 2 ---\nslow\n"


def test_a_timeout_without_retries_ends_timed_out_with_the_workers_error() -> None:
    decision = fail_of(decide(timed_out(), retries=None))
    assert decision.state is CallState.TIMED_OUT
    assert decision.error.type_name == "rayfn.exception.FunctionTimeoutError"
    assert decision.error.message == "resize timed out after 30 s (attempt 1)"


def test_a_timeout_past_its_retries_ends_timed_out() -> None:
    decision = fail_of(decide(timed_out(), attempts=4, retries=BACKOFF))
    assert decision.state is CallState.TIMED_OUT


# ---- stuck past the timeout: the worker was killed -------------------------------------


def test_a_stuck_attempt_with_retries_left_is_retried_without_logs() -> None:
    decision = retry_of(decide(Stuck(), attempts=1, retries=BACKOFF))
    assert decision == Retry(ready_at=NOW + 1.5, logs=None)


def test_a_stuck_attempt_without_retries_ends_timed_out_saying_its_worker_was_killed() -> None:
    decision = fail_of(settle(Stuck(), call(attempts=2, retries=Retries(max_retries=1),
                                            timeout=2.5), NOW))
    assert decision.state is CallState.TIMED_OUT
    assert decision.error.type_name == "rayfn.exception.FunctionTimeoutError"
    assert decision.error.message == (
        "resize timed out after 2.5 s and did not stop; its worker was killed (attempt 2)"
    )
    assert decision.logs is None


# ---- invalid arguments -----------------------------------------------------------------


@pytest.mark.parametrize("error_type", [InvalidError, SerializationError])
def test_invalid_arguments_fail_at_once_however_many_retries_are_left(
    error_type: type[InvalidError] | type[SerializationError],
) -> None:
    error = error_of(error_type, "resize() missing 1 required positional argument: 'w'")
    decision = fail_of(decide(returned(OutcomeKind.INVALID, "hm", error=error), attempts=1,
                              retries=BACKOFF))
    assert decision.state is CallState.FAILED
    assert decision.error == error
    assert decision.logs == "hm\n"


# ---- stopped by the registry -----------------------------------------------------------


def test_a_cancelled_attempt_needs_nothing() -> None:
    assert decide(Cancelled(), retries=BACKOFF) == Nothing()


def test_an_unrunnable_call_fails_naming_the_function_and_the_reason() -> None:
    decision = fail_of(decide(Unrunnable("no node has 4 GPUs"), retries=BACKOFF))
    assert decision.state is CallState.FAILED
    assert decision.error.type_name == "rayfn.exception.ResourcesUnavailableError"
    assert decision.error.message == (
        "shop.resize can never run on this cluster: no node has 4 GPUs"
    )
    assert isinstance(pickle.loads(decision.error.exception or b""), ResourcesUnavailableError)


def test_a_batch_mate_of_a_stopped_task_is_requeued_without_using_an_attempt() -> None:
    assert decide(Stranded(), attempts=4, retries=BACKOFF) == Requeue(alone=False)


# ---- the worker or its node died -------------------------------------------------------


def test_a_lone_task_whose_worker_died_past_rays_retries_fails_with_execution_error() -> None:
    died = RuntimeError("The worker died unexpectedly.\nTraceback: ...")
    decision = fail_of(decide(Lost(died, shared=False), retries=BACKOFF))
    assert decision.state is CallState.FAILED
    assert decision.error.type_name == "rayfn.exception.ExecutionError"
    assert decision.error.message == (
        "resize could not run: RuntimeError: The worker died unexpectedly."
    )
    assert isinstance(pickle.loads(decision.error.exception or b""), ExecutionError)


def test_a_lost_task_with_an_empty_message_still_names_the_error_type() -> None:
    decision = fail_of(decide(Lost(OSError(), shared=False)))
    assert decision.error.message == "resize could not run: OSError: "


def test_a_shared_task_whose_worker_died_requeues_its_calls_to_run_alone() -> None:
    died = RuntimeError("worker died")
    # Even with no user retries, and past them: a system retry uses no attempt.
    assert decide(Lost(died, shared=True), retries=None) == Requeue(alone=True)
    assert decide(Lost(died, shared=True), attempts=9, retries=BACKOFF) == Requeue(alone=True)


# ---- retry delays ----------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "delay"), [(1, 1.5), (2, 3.0), (3, 5.0)])
def test_retry_delays_grow_per_the_backoff_and_stop_at_max_delay(
    attempts: int, delay: float
) -> None:
    decision = retry_of(decide(failed(), attempts=attempts, retries=BACKOFF, now=50.0))
    assert decision.ready_at == 50.0 + delay
    assert BACKOFF.delay(attempts) == delay


def test_fixed_retries_wait_one_second_each_time() -> None:
    fixed = Retries.fixed(5)
    for attempts in (1, 2, 5):
        decision = retry_of(decide(failed(), attempts=attempts, retries=fixed, now=7.0))
        assert decision.ready_at == 8.0


def test_ready_at_is_on_the_clock_it_was_given() -> None:
    early = retry_of(decide(failed(), retries=BACKOFF, now=0.0))
    late = retry_of(decide(failed(), retries=BACKOFF, now=123.5))
    assert late.ready_at - early.ready_at == 123.5


# ---- the parts ---------------------------------------------------------------------------


def test_attempt_log_ends_lines_and_heads_retries() -> None:
    assert attempt_log(1, "") is None
    assert attempt_log(3, "") is None
    assert attempt_log(1, "a") == "a\n"
    assert attempt_log(1, "a\n") == "a\n"
    assert attempt_log(2, "b") == "--- attempt 2 ---\nb\n"


def test_settle_refuses_what_is_not_an_attempt_end() -> None:
    with pytest.raises(TypeError, match="not an AttemptEnd"):
        settle("lost", call(), NOW)  # type: ignore[arg-type]


def test_the_policy_inputs_and_decisions_are_frozen() -> None:
    decision = fail_of(decide(failed()))
    with pytest.raises(AttributeError):
        decision.state = CallState.SUCCEEDED  # type: ignore[misc]
    with pytest.raises(AttributeError):
        call().attempts = 2  # type: ignore[misc]
