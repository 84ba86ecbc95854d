"""The ``.aio`` forms of blocking methods (rayfn._aio), without Ray.

Nothing here depends on timing: a blocking call that can only return once the event loop
has run other tasks shows the loop was not blocked.
"""

from __future__ import annotations

import asyncio
import contextvars
import pickle
import threading
import time
from collections.abc import Callable, Iterator

import cloudpickle
import pytest

from rayfn._aio import aio_function, aio_iter_method, aio_method


def _eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
WAIT_SECONDS = 30.0  # how long a blocking call waits for the loop before it gives up


class Worker:
    """A class with each kind of decorated method; module-level, so it pickles."""

    def __init__(self, label: str) -> None:
        self.label = label

    @aio_method
    def echo(self, /, value: int, *, suffix: str = "") -> str:
        """Echo ``value``."""
        return f"{self.label}:{value}{suffix}"

    @aio_method
    def thread_name(self) -> str:
        return threading.current_thread().name

    @aio_method
    def fail(self, message: str) -> None:
        raise ValueError(message)

    @aio_method
    def wait_for(self, event: threading.Event) -> bool:
        return event.wait(WAIT_SECONDS)

    @aio_method
    def context_value(self) -> str:
        return request_id.get()

    @aio_iter_method
    def count(self, n: int, log: list[str] | None = None) -> Iterator[tuple[int, str]]:
        try:
            for i in range(n):
                yield i, threading.current_thread().name
        finally:
            if log is not None:
                log.append("closed")

    @aio_function
    def join(*workers: Worker) -> str:
        return "+".join(w.label for w in workers)


def test_the_plain_call_stays_synchronous_in_the_calling_thread() -> None:
    worker = Worker("w")
    assert worker.echo(1, suffix="!") == "w:1!"
    assert worker.thread_name() == threading.current_thread().name
    assert [i for i, _ in worker.count(3)] == [0, 1, 2]
    assert Worker.join(worker, Worker("v")) == "w+v"


def test_aio_returns_the_same_value_from_a_worker_thread() -> None:
    worker = Worker("w")

    async def main() -> tuple[str, str]:
        return await worker.echo.aio(2, suffix="?"), await worker.thread_name.aio()

    value, thread = asyncio.run(main())
    assert value == "w:2?"
    assert thread != threading.current_thread().name and thread.startswith("rayfn-aio")


def test_aio_raises_what_the_blocking_call_raised() -> None:
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(Worker("w").fail.aio("boom"))


def test_the_event_loop_keeps_running_while_an_aio_call_blocks() -> None:
    """The blocking call returns True only if the heartbeat, a task on the same loop,
    ticks five times while it waits; a blocked loop would leave it waiting in vain."""
    released = threading.Event()
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while not released.is_set():
            await asyncio.sleep(0.01)
            ticks += 1
            if ticks >= 5:
                released.set()

    async def main() -> bool:
        beat = asyncio.create_task(heartbeat())
        released_in_time = await Worker("w").wait_for.aio(released)
        await beat
        return released_in_time

    assert asyncio.run(main()) is True
    assert ticks >= 5


def test_many_aio_calls_wait_at_once() -> None:
    """Ten calls that each wait until all ten have started: they can only all return if
    they run concurrently, off the loop."""
    started = threading.Barrier(10, timeout=WAIT_SECONDS)

    class Waiter:
        @aio_method
        def arrive(self) -> int:
            return started.wait()

    async def main() -> list[int]:
        return await asyncio.gather(*(Waiter().arrive.aio() for _ in range(10)))

    assert sorted(asyncio.run(main())) == list(range(10))


def test_context_variables_go_with_the_call() -> None:
    async def main() -> str:
        request_id.set("r-42")
        return await Worker("w").context_value.aio()

    assert asyncio.run(main()) == "r-42"


def test_aio_of_an_iterator_method_is_an_async_iterator_fetching_in_threads() -> None:
    async def main() -> list[tuple[int, str]]:
        return [item async for item in Worker("w").count.aio(4)]

    items = asyncio.run(main())
    assert [i for i, _ in items] == [0, 1, 2, 3]
    assert all(name.startswith("rayfn-aio") for _, name in items)


def test_leaving_an_async_for_early_closes_the_blocking_generator() -> None:
    log: list[str] = []

    async def main() -> list[int]:
        seen = []
        items = Worker("w").count.aio(100, log)
        async for i, _ in items:
            seen.append(i)
            if i == 2:
                break
        await items.aclose()
        return seen

    assert asyncio.run(main()) == [0, 1, 2]
    _eventually(lambda: bool(log))  # the generator is closed in a worker thread
    assert log == ["closed"]


def test_an_async_iterator_raises_what_the_blocking_one_raised() -> None:
    class Broken:
        @aio_iter_method
        def items(self) -> Iterator[int]:
            yield 1
            raise KeyError("second")

    async def main() -> list[int]:
        return [i async for i in Broken().items.aio()]

    with pytest.raises(KeyError, match="second"):
        asyncio.run(main())


def test_on_the_class_methods_are_unbound_and_functions_static() -> None:
    worker = Worker("w")
    assert Worker.echo(worker, 3) == "w:3"
    assert asyncio.run(Worker.echo.aio(worker, 4)) == "w:4"
    assert Worker.echo is Worker.echo  # one unbound object: it pickles by reference
    # aio_function takes no self, from the class or from an instance
    assert worker.join(Worker("a")) == "a"
    assert asyncio.run(Worker.join.aio(worker, Worker("b"))) == "w+b"


def test_bound_methods_keep_the_name_and_docstring() -> None:
    bound = Worker("w").echo
    assert bound.__name__ == "echo"
    assert bound.__qualname__ == "Worker.echo"
    assert bound.__doc__ == "Echo ``value``."
    assert bound.__self__.label == "w"  # type: ignore[attr-defined]
    assert "Worker.echo" in repr(bound)


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_objects_and_their_bound_methods_still_pickle(dumps: object) -> None:
    worker = Worker("w")
    copied = pickle.loads(dumps(worker))  # type: ignore[operator]
    assert copied.echo(5) == "w:5"
    assert "echo" not in vars(copied)  # the descriptor stores nothing on the instance
    bound = pickle.loads(dumps(worker.echo))  # type: ignore[operator]
    assert bound(6) == "w:6"
    assert asyncio.run(bound.aio(7)) == "w:7"
    assert pickle.loads(dumps(Worker.join)) is Worker.join  # type: ignore[operator]
    assert pickle.loads(dumps(Worker.echo)) is Worker.echo  # type: ignore[operator]


def test_functions_and_calls_pickle_with_their_aio_methods() -> None:
    """Function and FunctionCall instances go into Ray tasks by pickle: the decorated
    methods must neither break that nor be carried along."""
    from rayfn.call import FunctionCall
    from rayfn.function import Function
    from rayfn.protocol.ids import new_call_id

    f = Function.from_name("some-app", "some_fn")
    for dumps in (pickle.dumps, cloudpickle.dumps):
        copied = pickle.loads(dumps(f))
        assert (copied.app_name, copied.name) == ("some-app", "some_fn")
        assert hasattr(copied.remote, "aio") and hasattr(copied.map, "aio")
        remote = pickle.loads(dumps(f.remote))
        assert remote.__self__.name == "some_fn"
    call = FunctionCall._of_new_id(new_call_id())
    copied_call = pickle.loads(cloudpickle.dumps(call))
    assert copied_call == call and hasattr(copied_call.get, "aio")
    assert pickle.loads(pickle.dumps(FunctionCall.gather)) is FunctionCall.gather


def test_sdk_methods_have_an_aio_form() -> None:
    from rayfn.app import App
    from rayfn.call import FunctionCall
    from rayfn.function import Function
    from rayfn.protocol.ids import new_call_id

    f = Function.from_name("some-app", "some_fn")
    for method in (f.remote, f.spawn, f.spawn_map, f.map, f.starmap, f.for_each, f.hydrate):
        assert callable(method.aio), method
    call = FunctionCall._of_new_id(new_call_id())
    for method in (call.get, call.status, call.logs, call.cancel):
        assert callable(method.aio), method
    assert callable(FunctionCall.gather.aio)
    assert callable(App("a").deploy.aio)
    run = App("a").run()
    assert hasattr(run, "__enter__") and hasattr(run, "__aenter__")
