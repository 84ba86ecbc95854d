"""Generator functions (``remote_gen``) and call graphs, on a real Ray."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import rayfn
from rayfn.call_graph import InputInfo, InputStatus
from rayfn.exception import InvalidError
from rayfn.states import CallState

from .waiting import wait_until


@pytest.mark.usefixtures("transport")
def test_values_arrive_as_the_remote_side_yields_them(unique_app: str, tmp_path: Path) -> None:
    go_on = tmp_path / "go-on"
    app = rayfn.App(unique_app)

    @app.function()
    def countdown(n: int, gate: str):  # type: ignore[no-untyped-def]
        import os
        import time

        yield "first"
        while not os.path.exists(gate):  # the caller opens it once it has "first"
            time.sleep(0.05)
        yield from range(n, 0, -1)

    @app.function()
    async def ticks(n: int):  # type: ignore[no-untyped-def]
        import asyncio

        for i in range(n):
            await asyncio.sleep(0.01)
            yield {"tick": i}

    with app.run():
        values = countdown.remote_gen(3, str(go_on))
        assert next(values) == "first"  # while the remote side waits for the gate
        go_on.write_text("")
        assert list(values) == [3, 2, 1]

        async def collect() -> list[object]:
            return [v async for v in ticks.remote_gen.aio(4)]

        assert asyncio.run(collect()) == [{"tick": i} for i in range(4)]
        with pytest.raises(InvalidError, match="generator"):
            countdown.spawn(3, str(go_on))
        with pytest.raises(InvalidError, match="generator"):
            countdown.remote(3, str(go_on))


def test_a_generator_that_raises_gives_its_values_then_the_error(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def flaky(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)
        raise ValueError("out of values")

    @app.function()
    def plain(x: int) -> int:
        return x

    with app.run():
        got: list[int] = []
        with pytest.raises(ValueError, match="out of values"):
            for value in flaky.remote_gen(3):
                got.append(value)
        assert got == [0, 1, 2]
        with pytest.raises(InvalidError, match="not a generator"):
            list(plain.remote_gen(1))
        with pytest.raises(ValueError, match="out of values"):  # no value before it
            list(flaky.remote_gen(0))
        # Looked up by name: the registry refuses a spawn of a generator as well.
        with pytest.raises(InvalidError, match="generator"):
            rayfn.Function.from_name(app.target_name(), "flaky").spawn(1)


def test_a_generator_method_of_a_class(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.cls()
    class Tokenizer:
        @rayfn.enter()
        def load(self) -> None:
            self.vocab = {"a": 1, "b": 2}

        @rayfn.method()
        def tokens(self, text: str):  # type: ignore[no-untyped-def]
            for ch in text:
                yield self.vocab.get(ch, 0)

        @rayfn.method()
        async def slow_tokens(self, text: str):  # type: ignore[no-untyped-def]
            import asyncio

            for ch in text:
                await asyncio.sleep(0.01)
                yield ch.upper()

    with app.run():
        assert list(Tokenizer().tokens.remote_gen("abc")) == [1, 2, 0]
        assert list(Tokenizer().slow_tokens.remote_gen("ab")) == ["A", "B"]
        with pytest.raises(InvalidError, match="generator"):
            Tokenizer().tokens.spawn("ab")


def test_call_graph_shows_the_calls_a_call_spawned(unique_app: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    app = rayfn.App(unique_app)

    @app.function()
    def leaf(x: int, gate: str) -> int:
        import os
        import time

        while x == 2 and not os.path.exists(gate):
            time.sleep(0.05)
        return x

    @app.function()
    def middle(x: int, gate: str) -> int:
        return leaf.remote(x * 2, gate)

    @app.function()
    def root(gate: str) -> list[int]:
        calls = [leaf.spawn(0, gate), middle.spawn(1, gate)]
        return [c.get() for c in calls]

    with app.run():
        call = root.spawn(str(release))
        # While the grandchild waits, the graph shows it running (or queued) under middle.
        wait_until(lambda: len(_flat(call.get_call_graph()[0])) == 4, timeout=120)
        (graph,) = call.get_call_graph()
        assert graph.object_id == call.object_id and graph.function_name == "root"
        assert graph.status is InputStatus.PENDING
        names = sorted(child.function_name for child in graph.children)
        assert names == ["leaf", "middle"]
        middle_node = next(c for c in graph.children if c.function_name == "middle")
        assert [g.function_name for g in middle_node.children] == ["leaf"]
        assert middle_node.children[0].state in (CallState.QUEUED, CallState.RUNNING)
        release.write_text("")
        assert call.get(timeout=120) == [0, 2]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            nodes = _flat(call.get_call_graph()[0])
            if all(n.status is InputStatus.SUCCESS for n in nodes):
                break
            time.sleep(0.1)
        assert all(n.status is InputStatus.SUCCESS for n in _flat(call.get_call_graph()[0]))


def _flat(node: InputInfo) -> list[InputInfo]:
    return [node, *(n for child in node.children for n in _flat(child))]


def test_the_streaming_example_prints_its_results() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    ran = subprocess.run([str(Path(sys.executable).parent / "rayfn"), "run",
                          "examples/streaming.py"], capture_output=True, text=True,
                         timeout=300, cwd=root)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-6:] == [
        "3...", "2...", "1...", "liftoff", "sum: 14",
        "children: ['square', 'square', 'square', 'square']",
    ]
