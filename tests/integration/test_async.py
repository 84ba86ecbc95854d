"""Async functions on the workers and the ``.aio`` forms of calls, on a real Ray.

The event-loop checks rest on what ran, not on timing: a remote function waits for a file
that only a heartbeat task on the caller's loop writes, so it can only return True if the
loop kept running while the caller awaited it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rayfn
from rayfn.exception import FunctionTimeoutError, InvalidError
from rayfn.states import CallState

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 60.0  # how long a function waits for the heartbeat before giving up


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _rayfn(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``rayfn`` command in a process of its own, as a user runs it."""
    executable = Path(sys.executable).parent / "rayfn"
    result = subprocess.run([str(executable), *args], capture_output=True, text=True,
                            timeout=180, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, (
        f"rayfn {' '.join(args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


async def _heartbeat(ticks: list[int], signal_file: Path, after: int) -> None:
    """Tick every 10 ms; after ``after`` ticks, write ``signal_file``."""
    while True:
        await asyncio.sleep(0.01)
        ticks.append(1)
        if len(ticks) == after:
            signal_file.write_text("go")


@pytest.mark.usefixtures("transport")
def test_an_async_function_is_awaited_on_the_worker(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    async def double_later(x: int) -> tuple[int, bool]:
        import asyncio

        await asyncio.sleep(0.05)
        return 2 * x, asyncio.get_running_loop().is_running()

    app.deploy()
    assert double_later.remote(21) == (42, True)
    by_name = rayfn.Function.from_name(unique_app, "double_later")
    assert by_name.remote(x=5) == (10, True)
    # Its signature is still checked on the worker, for a function looked up by name.
    call = by_name.spawn(1, 2)
    with pytest.raises(InvalidError, match=r"double_later\(x\): wrong arguments"):
        call.get(timeout=60)
    assert call.status().state is CallState.FAILED
    # Function.local of an async function returns its coroutine, as in Modal.
    assert asyncio.run(double_later.local(1)) == (2, True)


def test_an_async_function_times_out_as_a_timeout(unique_app: str, tmp_path: Path) -> None:
    """Awaiting, blocking inside the coroutine, and swallowing the cancellation: each one
    is stopped at the deadline by the alarm (not force-killed later by the watchdog) and
    reported as a timeout. Only the one that catches its cancellation reaches the code
    after its wait, and returning then does not make it a success."""
    app = rayfn.App(unique_app)

    @app.function(timeout=1)
    async def stalls(path: str, how: str) -> str:
        import asyncio
        import time

        with open(path, "a") as f:
            f.write("start\n")
        if how == "await":
            await asyncio.sleep(60)
        elif how == "block":
            time.sleep(60)
        else:  # "swallow": catches its cancellation and carries on
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                pass
        with open(path, "a") as f:
            f.write("end\n")
        return "finished"

    @app.function(timeout=1)
    def plain_sleeper() -> str:
        import time

        time.sleep(60)
        return "never"

    app.deploy()
    for how in ("await", "block", "swallow"):
        log = tmp_path / how
        call = stalls.spawn(str(log), how)
        with pytest.raises(FunctionTimeoutError, match="stalls timed out after 1 s"):
            call.get(timeout=120)
        assert call.status().state is CallState.TIMED_OUT, how
        assert _lines(log) == (["start", "end"] if how == "swallow" else ["start"]), how
    # The worker's alarm still stops plain code afterwards.
    with pytest.raises(FunctionTimeoutError, match="plain_sleeper timed out after 1 s"):
        plain_sleeper.remote()


@pytest.mark.usefixtures("transport")
def test_the_aio_forms_of_calls(unique_app: str, tmp_path: Path) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    async def square(x: int) -> int:
        import asyncio

        await asyncio.sleep(0.01)
        return x * x

    @app.function()
    def add(a: int, b: int) -> int:
        print("adding", a, b)
        return a + b

    async def main() -> None:
        async with app.run():
            assert await square.remote.aio(7) == 49
            call = await square.spawn.aio(8)
            assert await call.get.aio(timeout=60) == 64
            status = await call.status.aio()
            assert status.state is CallState.SUCCEEDED
            assert [v async for v in square.map.aio(range(6))] == [0, 1, 4, 9, 16, 25]
            unordered = [v async for v in add.map.aio([1, 2, 3], [10, 20, 30],
                                                      order_outputs=False)]
            assert sorted(unordered) == [11, 22, 33]
            assert [v async for v in add.starmap.aio([(1, 1), (2, 2)])] == [2, 4]
            calls = await add.spawn_map.aio([1, 2], [3, 4])
            assert await rayfn.FunctionCall.gather.aio(*calls) == [4, 6]
            assert "adding 1 3" in await calls[0].logs.aio()
            assert (await calls[0].cancel.aio()).state is CallState.SUCCEEDED  # finished
            together = await asyncio.gather(*(add.remote.aio(i, i) for i in range(10)))
            assert together == [2 * i for i in range(10)]
            assert (await square.hydrate.aio()) is square

    asyncio.run(main())
    # The async block stopped the ephemeral app as the sync one does.
    assert app.target_name() == unique_app


def test_the_event_loop_keeps_ticking_while_awaiting_calls(
    unique_app: str, tmp_path: Path
) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def wait_for(path: str, seconds: float) -> bool:
        import os
        import time

        deadline = time.monotonic() + seconds
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    async def await_remote(signal_file: Path) -> tuple[bool, int]:
        ticks: list[int] = []
        beat = asyncio.create_task(_heartbeat(ticks, signal_file, after=5))
        released = await wait_for.remote.aio(str(signal_file), WAIT_SECONDS)
        beat.cancel()
        return released, len(ticks)

    async def iterate_map(signal_file: Path) -> tuple[list[bool], int]:
        ticks: list[int] = []
        beat = asyncio.create_task(_heartbeat(ticks, signal_file, after=5))
        released = [r async for r in wait_for.map.aio([str(signal_file)] * 3,
                                                      [WAIT_SECONDS] * 3)]
        beat.cancel()
        return released, len(ticks)

    async def await_call(signal_file: Path) -> tuple[bool, int]:
        ticks: list[int] = []
        beat = asyncio.create_task(_heartbeat(ticks, signal_file, after=5))
        call = await wait_for.spawn.aio(str(signal_file), WAIT_SECONDS)
        released = await call.get.aio()
        beat.cancel()
        return released, len(ticks)

    with app.run():
        released, ticks = asyncio.run(await_remote(tmp_path / "remote"))
        assert released is True and ticks >= 5
        released_all, ticks = asyncio.run(iterate_map(tmp_path / "map"))
        assert released_all == [True, True, True] and ticks >= 5
        released, ticks = asyncio.run(await_call(tmp_path / "get"))
        assert released is True and ticks >= 5


def test_for_each_runs_every_input_and_drops_the_values(
    unique_app: str, tmp_path: Path
) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def record(folder: str, i: int) -> int:
        import pathlib

        pathlib.Path(folder, str(i)).write_text("ran")
        if i == 3:
            raise ValueError("three fails")
        return i

    ok, failing, ignoring = (tmp_path / name for name in ("ok", "failing", "ignoring"))
    for folder in (ok, failing, ignoring):
        folder.mkdir()
    with app.run():
        assert record.for_each([str(ok)] * 3, range(3)) is None
        assert sorted(os.listdir(ok)) == ["0", "1", "2"]
        with pytest.raises(ValueError, match="three fails"):
            record.for_each([str(failing)] * 5, range(5))
        asyncio.run(record.for_each.aio([str(ignoring)] * 5, range(5),
                                        ignore_exceptions=True))
        assert sorted(os.listdir(ignoring)) == ["0", "1", "2", "3", "4"]


def test_deploy_aio(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    async def hello(name: str) -> str:
        return f"hello {name}"

    async def main() -> tuple[int, str]:
        version = await app.deploy.aio()
        looked_up = await rayfn.Function.from_name(unique_app, "hello").hydrate.aio()
        return version, await looked_up.remote.aio("there")

    version, greeting = asyncio.run(main())
    assert version >= 1 and greeting == "hello there"


def test_rayfn_run_awaits_an_async_entrypoint_and_async_functions(
    unique_app: str, tmp_path: Path
) -> None:
    script = tmp_path / "async_entry.py"
    script.write_text(
        "import asyncio\n"
        "import rayfn\n"
        f"app = rayfn.App({unique_app!r})\n"
        "\n"
        "@app.function()\n"
        "async def double(x: int) -> int:\n"
        "    await asyncio.sleep(0.01)\n"
        "    return 2 * x\n"
        "\n"
        "@app.local_entrypoint()\n"
        "async def main(n: int = 3):\n"
        "    await asyncio.sleep(0)\n"
        "    print('doubled', await double.remote.aio(n))\n"
        "    print('doubled again', double.remote(n + 1))\n"
    )
    ran = _rayfn("run", str(script), "--n", "4")
    assert ran.stdout.splitlines()[-2:] == ["doubled 8", "doubled again 10"]
    assert "never awaited" not in ran.stderr
    function_ran = _rayfn("run", f"{script}::double", "--x", "21")
    assert function_ran.stdout.splitlines()[-1] == "42"


def test_the_async_example_prints_its_results() -> None:
    ran = _rayfn("run", "examples/async_calls.py")
    assert ran.stdout.splitlines()[-4:] == [
        "remote: 16",
        "gathered: [0, 1, 4, 9, 16]",
        "spawned: [10, 11, 12]",
        "map total: 285",
    ]
