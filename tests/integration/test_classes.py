"""Classes and containers on a real Ray: enter once per container, state between inputs,
exit at scale-down, parameters, concurrency bounds, batches, cancels, dead containers
and an enter that fails.

The classes record what happened to them in files (their containers run on this
machine), so the assertions rest on what ran, not on what the service says about it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import rayfn
from rayfn.exception import CancelledError, ExecutionError, InvalidError
from rayfn.states import CallState

from .waiting import wait_until


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_enter_once_per_container_and_state_between_inputs(
        unique_app: str, tmp_path: Path) -> None:
    log = tmp_path / "events"
    app = rayfn.App(unique_app)

    @app.cls(max_containers=2, scaledown_window=1)
    class Counter:
        path: str = rayfn.parameter(default="")

        @rayfn.enter()
        def load(self) -> None:
            with open(self.path, "a") as f:
                f.write(f"enter {os.getpid()}\n")
            self.total = 0

        @rayfn.method()
        def add(self, k: int) -> tuple[int, int]:
            time.sleep(0.05)
            self.total += k
            return os.getpid(), self.total

        @rayfn.exit()
        def unload(self) -> None:
            with open(self.path, "a") as f:
                f.write(f"exit {os.getpid()}\n")

    app.deploy()
    counter = Counter(path=str(log))
    results = list(counter.add.map([1] * 40))
    enters = [line.split()[1] for line in _lines(log) if line.startswith("enter")]
    pids = {pid for pid, _ in results}
    assert 1 <= len(enters) <= 2 and {int(p) for p in enters} == pids
    for pid in pids:  # each container kept its own running total, input after input
        totals = sorted(total for p, total in results if p == pid)
        assert totals == list(range(1, len(totals) + 1))
    # Idle for scaledown_window: the containers stop and run their exit methods.
    wait_until(lambda: sum(line.startswith("exit") for line in _lines(log)) == len(enters),
               timeout=60)
    # A call after scale-down starts a new container: enter runs again.
    pid, total = counter.add.remote(5)
    assert total == 5 and pid not in pids
    rayfn.App(unique_app).stop()


def test_parameters_pick_a_pool_each(unique_app: str, tmp_path: Path) -> None:
    app = rayfn.App(unique_app)

    @app.cls(scaledown_window=1)
    class Greeter:
        greeting: str = rayfn.parameter(default="hello")
        times: int = rayfn.parameter(default=1)
        loud: bool = rayfn.parameter(default=False)
        suffix: bytes = rayfn.parameter(default=b"")

        @rayfn.method()
        def greet(self, name: str) -> tuple[str, int]:
            text = f"{self.greeting} {name}" * self.times + self.suffix.decode()
            return (text.upper() if self.loud else text), os.getpid()

    app.deploy()
    plain, pid_plain = Greeter().greet.remote("ray")
    loud, pid_loud = Greeter(greeting="hi", loud=True, suffix=b"!").greet.remote("ray")
    assert plain == "hello ray" and loud == "HI RAY!"
    assert pid_plain != pid_loud  # one pool of containers per set of parameter values
    # Looked up by name, with Modal's names.
    looked_up = rayfn.Cls.from_name(unique_app, "Greeter")
    assert looked_up(times=2).greet.remote("x")[0] == "hello xhello x"
    with pytest.raises(InvalidError, match="must be a int"):
        looked_up(times="2")
    with pytest.raises(InvalidError, match="no parameter 'colour'"):
        Greeter(colour="red")
    with pytest.raises(InvalidError, match="not a @method"):
        Greeter().shout  # noqa: B018
    with pytest.raises(InvalidError, match="64 bits"):
        Greeter(times=2**80)
    with pytest.raises(InvalidError, match="by keyword"):
        Greeter("hi")
    app.stop()


def test_concurrent_inputs_reach_max_and_never_exceed_it(
        unique_app: str, tmp_path: Path) -> None:
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    app = rayfn.App(unique_app)

    @app.function(max_containers=1)
    @rayfn.concurrent(max_inputs=4)
    def slow(i: int, where: str) -> int:
        start = time.time()
        time.sleep(0.4)
        Path(where, str(i)).write_text(f"{start} {time.time()} {os.getpid()}")
        return i

    @app.cls(max_containers=1)
    @rayfn.concurrent(max_inputs=3)
    class AsyncWorker:
        @rayfn.method()
        async def work(self, i: int, where: str) -> int:
            import asyncio

            start = time.time()
            await asyncio.sleep(0.4)
            Path(where, f"a{i}").write_text(f"{start} {time.time()} {os.getpid()}")
            return i

    app.deploy()
    assert sorted(slow.map(range(16), [str(spans_dir)] * 16)) == list(range(16))
    assert sorted(AsyncWorker().work.map(range(9), [str(spans_dir)] * 9)) == list(range(9))
    for prefix, most in (("", 4), ("a", 3)):
        rows = [p.read_text().split() for p in spans_dir.iterdir()
                if p.name[0].isdigit() == (prefix == "")]
        spans = [(float(a), float(b)) for a, b, _ in rows]
        assert _overlap(spans) == most
        assert len({pid for _, _, pid in rows}) == 1  # all in the one container
    app.stop()


def test_batches_form_up_to_max_size(unique_app: str, tmp_path: Path) -> None:
    sizes = tmp_path / "sizes"
    app = rayfn.App(unique_app)

    @app.function(max_containers=1)
    @rayfn.batched(max_batch_size=8, wait_ms=500)
    def double(xs: list[int], where: list[str]) -> list[int]:
        with open(where[0], "a") as f:
            f.write(f"{len(xs)}\n")
        return [2 * x for x in xs]

    @app.cls(max_containers=1)
    class Adder:
        @rayfn.batched(max_batch_size=4, wait_ms=200)
        async def add(self, xs: list[int], ys: list[int]) -> list[int]:
            return [x + y for x, y in zip(xs, ys, strict=True)]

    app.deploy()
    calls = double.spawn_map(range(40), [str(sizes)] * 40)
    assert [c.get(timeout=120) for c in calls] == [2 * x for x in range(40)]
    batch_sizes = [int(n) for n in _lines(sizes)]
    assert sum(batch_sizes) == 40 and max(batch_sizes) == 8
    assert batch_sizes.count(8) >= 3  # inputs queued together were run together
    # A lone input runs once wait_ms has passed, in a batch of one.
    assert double.remote(21, str(sizes)) == 42 and _lines(sizes)[-1] == "1"
    assert list(Adder().add.map(range(10), range(10))) == [2 * x for x in range(10)]
    app.stop()


def test_a_failing_batch_fails_its_calls_only(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function(max_containers=1)
    @rayfn.batched(max_batch_size=4, wait_ms=100)
    def picky(xs: list[int]) -> list[int]:
        if 13 in xs:
            raise ValueError("no thirteen")
        return xs

    @app.function(max_containers=1)
    @rayfn.batched(max_batch_size=4, wait_ms=100)
    def short(xs: list[int]) -> list[int]:
        return xs[:-1]

    app.deploy()
    assert picky.remote(1) == 1
    with pytest.raises(ValueError, match="no thirteen"):
        picky.remote(13)
    with pytest.raises(ExecutionError, match="returned 0 values for 1 inputs"):
        short.remote(1)
    app.stop()


def test_enter_that_fails_fails_the_calls_with_a_clear_error(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.cls()
    class Broken:
        @rayfn.enter()
        def load_model(self) -> None:
            raise FileNotFoundError("weights.bin")

        @rayfn.method()
        def predict(self, x: int) -> int:
            return x

    app.deploy()
    call = Broken().predict.spawn(1)
    with pytest.raises(ExecutionError, match="Broken.load_model") as caught:
        call.get(timeout=180)
    assert "could not start" in str(caught.value) and "weights.bin" in str(caught.value)
    status = call.status()
    assert status.state is CallState.FAILED
    assert status.error_message is not None and "could not start" in status.error_message
    app.stop()


def test_a_killed_container_loses_no_call(unique_app: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    app = rayfn.App(unique_app)

    @app.cls(max_containers=1, retries=0)
    @rayfn.concurrent(max_inputs=3)
    class Victim:
        @rayfn.method()
        def work(self, i: int, where: str) -> int:
            with open(where, "a") as f:
                f.write(f"{i} {os.getpid()}\n")
            time.sleep(3)
            return i

    app.deploy()
    calls = Victim().work.spawn_map(range(3), [str(marks)] * 3)
    wait_until(lambda: len(_lines(marks)) == 3, timeout=120)
    os.kill(int(_lines(marks)[0].split()[1]), signal.SIGKILL)
    assert [c.get(timeout=180) for c in calls] == [0, 1, 2]
    pids = {line.split()[1] for line in _lines(marks)}
    assert len(pids) == 2  # every input ran again, in a new container
    # No user retry was used (retries=0): the container's death was not the calls' fault.
    assert all(c.status().state is CallState.SUCCEEDED for c in calls)
    app.stop()


def test_cancel_in_a_concurrent_container_stops_that_input_only(
        unique_app: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    app = rayfn.App(unique_app)

    @app.cls(max_containers=1)
    @rayfn.concurrent(max_inputs=2)
    class Shared:
        @rayfn.enter()
        def start(self) -> None:
            self.pid = os.getpid()

        @rayfn.method()
        def loop(self, i: int, where: str, seconds: float) -> int:
            with open(where, "a") as f:
                f.write(f"start {i} {self.pid}\n")
            deadline = time.time() + seconds
            while time.time() < deadline:  # Python code: a cancel can stop it here
                time.sleep(0.05)
            with open(where, "a") as f:
                f.write(f"end {i} {self.pid}\n")
            return self.pid

    app.deploy()
    shared = Shared()
    doomed = shared.loop.spawn(0, str(marks), 60.0)
    survivor = shared.loop.spawn(1, str(marks), 4.0)
    wait_until(lambda: sum(line.startswith("start") for line in _lines(marks)) == 2,
               timeout=120)
    doomed.cancel()
    with pytest.raises(CancelledError):
        doomed.get(timeout=30)
    pid = survivor.get(timeout=60)
    assert f"end 1 {pid}" in _lines(marks) and not any(
        line.startswith("end 0") for line in _lines(marks))
    # The container was not killed for the cancel: it serves the next call too.
    assert shared.loop.remote(2, str(marks), 0.0) == pid
    app.stop()


def test_with_options_and_bad_options(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function(timeout=60)
    def sleepy(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @app.cls(cpu=1)
    class Sized:
        @rayfn.method()
        def cpus(self) -> float:
            import ray

            return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 0))

    app.deploy()
    from rayfn.exception import FunctionTimeoutError

    with pytest.raises(FunctionTimeoutError):
        sleepy.with_options(timeout=1).remote(5)
    assert sleepy.remote(0.1) == 0.1
    assert Sized.with_options(cpu=2)().cpus.remote() == 2.0
    assert Sized().cpus.remote() == 1.0
    from rayfn.exception import ResourcesUnavailableError

    with pytest.raises(ResourcesUnavailableError, match=r"Sized\[gpu=8\.0\] can never run"):
        Sized.with_options(gpu=8)().cpus.spawn()
    with pytest.raises(InvalidError, match="cpu"):
        Sized.with_options(cpu=-1)
    with pytest.raises(InvalidError, match="does not take"):
        sleepy.with_options(colour="red")
    with pytest.raises(InvalidError, match="max_inputs"):
        rayfn.concurrent(max_inputs=0)
    with pytest.raises(InvalidError, match="max_batch_size"):
        rayfn.batched(max_batch_size=1001, wait_ms=10)
    with pytest.raises(InvalidError, match="receives a list"):

        @app.function()
        @rayfn.batched(max_batch_size=4, wait_ms=10)
        def not_lists(x: int) -> list[int]:
            return [x]

    with pytest.raises(InvalidError, match="only have one @batched"):

        @app.cls()
        class TwoBatched:
            @rayfn.batched(max_batch_size=4, wait_ms=10)
            def a(self, xs: list[int]) -> list[int]:
                return xs

            @rayfn.batched(max_batch_size=4, wait_ms=10)
            def b(self, xs: list[int]) -> list[int]:
                return xs

    app.stop()


def _run_example(path: str) -> list[str]:
    """``rayfn run`` of one of the project's examples, as a user runs it: what it printed."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([str(Path(sys.executable).parent / "rayfn"), "run", path],
                            capture_output=True, text=True, timeout=300, cwd=root)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout.splitlines()


def test_the_class_example_prints_its_results() -> None:
    assert _run_example("examples/model_class.py")[-3:] == [
        "default: ['low', 'high', 'high']",
        "strict: ['low', 'low', 'high']",
        "spawned: high",
    ]


def test_the_batching_example_prints_its_results() -> None:
    assert _run_example("examples/dynamic_batching.py")[-2:] == [
        "lengths: [3, 5, 5, 2, 5]",
        "scaled: [104, 205, 306]",
    ]


def test_min_containers_are_warm_and_buffer_containers_spare(
        unique_app: str, tmp_path: Path) -> None:
    log = tmp_path / "enters"
    app = rayfn.App(unique_app)

    @app.cls(min_containers=1, scaledown_window=60)
    class Warm:
        path: str = rayfn.parameter(default=str(log))

        @rayfn.enter()
        def load(self) -> None:
            with open(self.path, "a") as f:
                f.write(f"{os.getpid()}\n")

        @rayfn.method()
        def pid(self) -> int:
            return os.getpid()

    @app.cls(max_containers=3, buffer_containers=1, scaledown_window=60)
    class Spare:
        path: str = rayfn.parameter(default=str(tmp_path / "spare"))

        @rayfn.enter()
        def load(self) -> None:
            with open(self.path, "a") as f:
                f.write(f"{os.getpid()}\n")

        @rayfn.method()
        def hold(self, seconds: float) -> int:
            time.sleep(seconds)
            return os.getpid()

    app.deploy()
    # Deployed, never called: min_containers=1 has a container up, its enter run.
    wait_until(lambda: len(_lines(log)) == 1, timeout=120)
    assert Warm().pid.remote() == int(_lines(log)[0])  # the warm one serves the call
    # One busy input: one container for it, and buffer_containers=1 spare beside it.
    busy = Spare().hold.spawn(8.0)
    wait_until(lambda: len(_lines(tmp_path / "spare")) == 2, timeout=120)
    spare_pids = {int(p) for p in _lines(tmp_path / "spare")}
    assert Spare().hold.remote(0.0) in spare_pids  # the spare takes the next call at once
    busy.get(timeout=60)
    app.stop()
