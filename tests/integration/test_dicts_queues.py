"""rayfn.Dict and rayfn.Queue on a real Ray: the registry keeps them in its store."""

from __future__ import annotations

import asyncio
import collections
import queue
import threading

import pytest

import rayfn
from rayfn._client import get_client
from rayfn.exception import InvalidError, NotFoundError
from rayfn.protocol.ids import new_call_id
from rayfn.protocol.operations import RegistryApi

from .waiting import wait_until


def unique(prefix: str) -> str:
    return f"{prefix}-{new_call_id()[-10:].lower()}"


@pytest.mark.usefixtures("transport")
def test_dict_operations() -> None:
    name = unique("d")
    d = rayfn.Dict.from_name(name, create_if_missing=True)
    assert d.name == name
    d["a"] = 1
    assert d.put("b", [2, 3]) is True
    assert d.put("b", "kept?", skip_if_exists=True) is False
    assert d["b"] == [2, 3]
    assert d.get("missing") is None and d.get("missing", 7) == 7
    d.update({("t", 1): None}, c=3)
    assert ("t", 1) in d and d.contains("c") and "zz" not in d
    assert d.get(("t", 1)) is None and d.contains(("t", 1))  # a stored None is there
    assert d.len() == 4
    assert dict(d.items()) == {"a": 1, "b": [2, 3], ("t", 1): None, "c": 3}
    assert sorted(map(str, d.keys())) == sorted(map(str, ["a", "b", ("t", 1), "c"]))
    assert sorted(map(str, d.values())) == sorted(map(str, [1, [2, 3], None, 3]))
    assert d.pop("a") == 1
    with pytest.raises(KeyError):
        d.pop("a")
    with pytest.raises(KeyError):
        d["a"]
    del d["c"]
    with pytest.raises(KeyError):
        del d["c"]
    # another handle on the same name sees the same entries
    assert rayfn.Dict.from_name(name)["b"] == [2, 3]
    d.clear()
    assert d.len() == 0 and list(d.items()) == []
    rayfn.Dict.delete(name)
    with pytest.raises(NotFoundError):
        d.get("b")
    with pytest.raises(NotFoundError):
        rayfn.Dict.delete(name)
    rayfn.Dict.delete(name, allow_missing=True)


def test_dict_pages_through_many_entries() -> None:
    with rayfn.Dict.ephemeral() as d:
        d.update({i: str(i) for i in range(2500)})
        assert d.len() == 2500
        assert dict(d.items()) == {i: str(i) for i in range(2500)}


def test_four_producers_four_consumers_deliver_each_item_exactly_once(unique_app: str) -> None:
    app = rayfn.App(unique_app)
    per_producer, producers, consumers = 300, 4, 4

    @app.function()
    def produce(q: rayfn.Queue, start: int, n: int) -> int:
        for begin in range(start, start + n, 50):  # in puts of several sizes
            q.put_many(list(range(begin, min(begin + 50, start + n))))
        q.put(-1, partition="done")
        return n

    @app.function()
    def consume(q: rayfn.Queue) -> list[int]:
        import queue as stdlib_queue

        got: list[int] = []
        while True:
            try:
                values = q.get_many(37, timeout=2)
            except stdlib_queue.Empty:
                # empty: stop once every producer has said it is done
                if q.len(partition="done") >= 4 and q.len() == 0:
                    return got
                continue
            got.extend(values)

    with app.run(), rayfn.Queue.ephemeral() as q:
        consuming = [consume.spawn(q) for _ in range(consumers)]
        producing = [produce.spawn(q, i * per_producer, per_producer) for i in range(producers)]
        assert [c.get(timeout=120) for c in producing] == [per_producer] * producers
        received = [v for c in consuming for v in c.get(timeout=120)]
    sent = list(range(producers * per_producer))
    assert collections.Counter(received) == collections.Counter(sent)


def test_blocking_get_wakes_when_an_item_is_put() -> None:
    def parked() -> int:
        return get_client().call(RegistryApi.ping)["waiting"]

    before = parked()
    with rayfn.Queue.ephemeral() as q:
        got: list[object] = []
        started = threading.Event()

        def consume() -> None:
            started.set()
            got.append(q.get(timeout=60))

        thread = threading.Thread(target=consume)
        thread.start()
        started.wait()
        # The get waits in the registry (a parked wait), not in a loop here.
        wait_until(lambda: parked() > before, what="the get to park in the registry")
        q.put("hello")
        thread.join(timeout=60)
        assert got == ["hello"]
        with pytest.raises(queue.Empty):
            q.get(timeout=0.2)
        assert q.get(block=False) is None
        assert q.get_many(5, block=False) == []


@pytest.mark.usefixtures("transport")
def test_queue_partitions_order_and_iterate() -> None:
    with rayfn.Queue.ephemeral() as q:
        assert q.name is None
        q.put_many([1, 2, 3])
        q.put("a", partition="p")
        q.put("b", partition="p", partition_ttl=60)
        assert q.len() == 3 and q.len(partition="p") == 2 and q.len(total=True) == 5
        assert list(q.iterate()) == [1, 2, 3]  # left in place
        assert q.get() == 1
        assert q.get(partition="p") == "a"
        assert q.get_many(10) == [2, 3]
        with pytest.raises(InvalidError):
            q.len(partition="p", total=True)
        q.clear(partition="p")
        assert q.len(partition="p") == 0
        q.put_many(["x", "y"], partition="p")
        q.put("z")
        q.clear(all=True)
        assert q.len(total=True) == 0


def test_ephemeral_objects_are_deleted_at_exit() -> None:
    with rayfn.Dict.ephemeral() as d:
        d["k"] = "v"
        assert d["k"] == "v"
        assert d.info().ephemeral
    with pytest.raises(NotFoundError, match="ephemeral"):
        d.get("k")

    async def in_async_block() -> rayfn.Queue:
        async with rayfn.Queue.ephemeral() as q:
            await q.put.aio(5)
            assert await q.get.aio() == 5
            return q

    q = asyncio.run(in_async_block())
    with pytest.raises(NotFoundError):
        q.len()


def test_handles_passed_to_spawn_reach_the_same_object(unique_app: str) -> None:
    app = rayfn.App(unique_app)
    name = unique("shared")

    @app.function()
    def record(d: rayfn.Dict, q: rayfn.Queue, key: str) -> str:
        d[key] = q.get(timeout=30)
        return str(d.name)

    with app.run(), rayfn.Queue.ephemeral() as q:
        d = rayfn.Dict.from_name(name, create_if_missing=True)
        call = record.spawn(d, q, "got")
        q.put({"from": "driver"})
        assert call.get(timeout=60) == name
        assert d["got"] == {"from": "driver"}
    rayfn.Dict.delete(name)


def test_aio_forms() -> None:
    async def main() -> None:
        async with rayfn.Dict.ephemeral() as d:
            assert await d.put.aio("k", 1)
            await d.update.aio(j=2)
            assert await d.get.aio("k") == 1
            assert await d.contains.aio("j")
            assert await d.len.aio() == 2
            assert sorted([k async for k in d.keys.aio()]) == ["j", "k"]
            assert await d.pop.aio("k") == 1
            await d.clear.aio()
        async with rayfn.Queue.ephemeral() as q:
            await q.put_many.aio([1, 2])
            assert [v async for v in q.iterate.aio()] == [1, 2]
            assert await q.get_many.aio(5) == [1, 2]
            assert await q.len.aio() == 0
            with pytest.raises(queue.Empty):
                await q.get.aio(timeout=0.1)

    asyncio.run(main())


@pytest.mark.usefixtures("transport")
def test_bad_input_gives_rayfn_errors() -> None:
    missing = unique("missing")
    with pytest.raises(NotFoundError):
        rayfn.Dict.from_name(missing).get("k")
    with pytest.raises(NotFoundError):
        rayfn.Queue.from_name(missing).put(1)
    with pytest.raises(InvalidError):
        rayfn.Dict.from_name("no spaces allowed")
    with pytest.raises(InvalidError):
        rayfn.Queue.from_name("../up")
    with rayfn.Dict.ephemeral() as d:
        with pytest.raises(InvalidError, match="limit"):
            d["k" * 100_000] = 1
        with pytest.raises(rayfn.exception.SerializationError):
            d["lock"] = threading.Lock()
    with rayfn.Queue.ephemeral() as q:
        with pytest.raises(InvalidError, match="64"):
            q.put(1, partition="p" * 65)
        with pytest.raises(InvalidError):
            q.put(1, partition="")
        with pytest.raises(InvalidError):
            q.get_many(0)
        with pytest.raises(InvalidError):
            q.get(timeout=-1)
        with pytest.raises(InvalidError):
            q.put(1, partition_ttl=0)
        with pytest.raises(InvalidError):
            q.put_many(5)  # type: ignore[arg-type]
        with pytest.raises(InvalidError):
            q.clear(partition="p", all=True)
