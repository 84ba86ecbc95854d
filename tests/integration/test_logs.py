"""Per-call logs: what each call printed, its own only, over the SDK and over REST."""

from __future__ import annotations

from pathlib import Path

import pytest

import rayfn
from rayfn.exception import InvalidError, NotFoundError
from rayfn.states import CallState

from .waiting import wait_until

pytestmark = pytest.mark.usefixtures("transport")


def test_each_call_keeps_its_own_output(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def chatty(x: int) -> int:
        import sys

        print(f"computing {x}")
        print(f"warning {x}", file=sys.stderr)
        return x * 2

    @app.function()
    def quiet(x: int) -> int:
        return x

    app.deploy()
    list(chatty.map(range(10)))  # short calls: the next ones share Ray tasks
    calls = chatty.spawn_map(range(40))
    assert rayfn.FunctionCall.gather(*calls) == [x * 2 for x in range(40)]
    for x, call in enumerate(calls):
        assert call.logs() == f"computing {x}\nwarning {x}\n"
    assert quiet.spawn(1).get(timeout=60) == 1
    quiet_calls = quiet.spawn_map(range(3))
    rayfn.FunctionCall.gather(*quiet_calls)
    assert [c.logs() for c in quiet_calls] == ["", "", ""]


def test_retries_are_told_apart_and_a_long_log_keeps_its_end(
    unique_app: str, tmp_path: Path
) -> None:
    app = rayfn.App(unique_app)

    @app.function(retries=rayfn.Retries(max_retries=2, initial_delay=0.1))
    def flaky(marker: str) -> str:
        import os

        attempt = 2 if os.path.exists(marker) else 1
        print(f"attempt {attempt} starts", end="")  # no newline: the log adds one
        if attempt == 1:
            open(marker, "w").close()
            raise RuntimeError("first attempt fails")
        os.remove(marker)
        return "ok"

    @app.function()
    def loud(lines: int) -> int:
        for i in range(lines):
            print(f"line {i:06d}")
        return lines

    app.deploy()
    call = flaky.spawn(str(tmp_path / "failed-once"))
    assert call.get(timeout=120) == "ok"
    assert call.logs() == "attempt 1 starts\n--- attempt 2 ---\nattempt 2 starts\n"

    long = loud.spawn(20_000)  # 12 characters a line: 240,000 in all
    assert long.get(timeout=120) == 20_000
    head, _, kept = long.logs().partition("\n")
    assert head == f"[{20_000 * 12 - 64 * 1024} earlier characters not kept]"
    assert kept.endswith("line 019999\n") and len(kept) == 64 * 1024


def test_logs_of_an_unknown_or_malformed_id() -> None:
    with pytest.raises(NotFoundError):
        rayfn.FunctionCall.from_id("fc-" + "0" * 26).logs()
    with pytest.raises(InvalidError):
        rayfn.FunctionCall.from_id("not-an-id").logs()


def test_a_running_call_shows_what_it_printed_so_far(unique_app: str, tmp_path: Path) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def stepwise(go: str) -> str:
        import os
        import time

        print("step 1 of 2", flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.05)
        print("step 2 of 2")
        return "done"

    app.deploy()
    go = tmp_path / "go"
    call = stepwise.spawn(str(go))
    wait_until(lambda: call.logs() == "step 1 of 2\n", timeout=60, what="the first step's line")
    assert call.status().state is CallState.RUNNING
    go.touch()
    assert call.get(timeout=60) == "done"
    assert call.logs() == "step 1 of 2\nstep 2 of 2\n"
