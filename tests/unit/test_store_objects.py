"""Dicts and Queues in SqliteStore, on a real SQLite file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayfn_service.store.sqlite import SqliteStore

T0 = 1_700_000_000.0
DAY = 24 * 3600.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state" / "rayfn.db")
    yield s
    s.close()


def put(store: SqliteStore, name: str, values: list[bytes], partition: str = "",
        now: float = T0, ttl: float = DAY, max_items: int = 5000) -> bool:
    with store.transaction():
        return store.queue_put(name, partition, values, now=now, ttl=ttl,
                               max_items=max_items, max_partitions=3)


def take(store: SqliteStore, name: str, n: int, partition: str = "", now: float = T0,
         max_bytes: int = 1 << 20) -> list[bytes]:
    with store.transaction():
        return store.queue_take(name, partition, n, now, max_bytes)


def test_objects_are_made_once_and_deleted_with_their_contents(store: SqliteStore) -> None:
    with store.transaction():
        first = store.create_object("dict", "d", ephemeral=False, now=T0)
        again = store.create_object("dict", "d", ephemeral=True, now=T0 + 5)
        store.dict_put("d", [(b"k", b"v")], skip_if_exists=False, now=T0)
    assert first == again and first.created_at == T0 and not again.ephemeral
    assert store.get_object("queue", "d") is None  # kinds are separate
    with store.transaction():
        assert store.delete_object("dict", "d")
        assert not store.delete_object("dict", "d")
    assert store.get_object("dict", "d") is None
    assert store.dict_len("d") == 0


def test_dict_put_get_pop_and_skip_if_exists(store: SqliteStore) -> None:
    with store.transaction():
        assert store.dict_put("d", [(b"a", b"1"), (b"b", b"2")], skip_if_exists=False,
                              now=T0) == 2
        assert store.dict_put("d", [(b"a", b"9")], skip_if_exists=True, now=T0) == 0
        assert store.dict_put("d", [(b"b", b"3")], skip_if_exists=False, now=T0) == 1
    assert store.dict_get("d", b"a") == (b"1", T0)
    assert store.dict_get("d", b"b") == (b"3", T0)
    assert store.dict_get("other", b"a") is None
    assert store.dict_contains("d", b"a") and not store.dict_contains("d", b"z")
    with store.transaction():
        assert store.dict_pop("d", b"a") == b"1"
        assert store.dict_pop("d", b"a") is None
    assert store.dict_len("d") == 1


def test_dict_pages_cover_every_entry_once(store: SqliteStore) -> None:
    entries = [(f"k{i:04}".encode(), b"x" * 10) for i in range(250)]
    with store.transaction():
        store.dict_put("d", entries, skip_if_exists=False, now=T0)
    seen: list[bytes] = []
    after: bytes | None = None
    while page := store.dict_page("d", after, 100, max_bytes=10_000):
        seen.extend(k for k, _ in page)
        after = page[-1][0]
    assert seen == sorted(k for k, _ in entries)
    # the byte bound cuts a page short, but never below one entry
    assert len(store.dict_page("d", None, 100, max_bytes=1)) == 1


def test_queue_take_returns_oldest_first_and_each_item_once(store: SqliteStore) -> None:
    assert put(store, "q", [b"1", b"2", b"3"])
    assert put(store, "q", [b"4"])
    assert take(store, "q", 2) == [b"1", b"2"]
    assert take(store, "q", 10) == [b"3", b"4"]
    assert take(store, "q", 10) == []
    assert put(store, "q", [b"aa", b"bb", b"cc"])
    # the byte bound leaves the rest in place, but never takes fewer than one
    assert take(store, "q", 10, max_bytes=1) == [b"aa"]
    assert take(store, "q", 10, max_bytes=4) == [b"bb", b"cc"]
    assert put(store, "q", [b"5"])  # seqs keep growing after the partition emptied
    assert take(store, "q", 1) == [b"5"]


def test_concurrent_takes_never_share_an_item(store: SqliteStore) -> None:
    sent = [str(i).encode() for i in range(400)]
    assert put(store, "q", sent)
    got: list[bytes] = []
    lock = threading.Lock()

    def consume() -> None:
        while values := take(store, "q", 7):
            with lock:
                got.extend(values)

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(sent)


def test_partitions_are_independent_and_bounded(store: SqliteStore) -> None:
    assert put(store, "q", [b"a"], partition="p1")
    assert put(store, "q", [b"b"], partition="p2")
    assert put(store, "q", [b"c"])
    assert not put(store, "q", [b"d"], partition="p3")  # a fourth partition: full
    assert take(store, "q", 5, partition="p2") == [b"b"]
    assert store.queue_len("q", "p1", T0) == 1
    assert store.queue_len("q", None, T0) == 2
    assert not put(store, "q", [b"x"] * 3, partition="p1", max_items=3)  # 1 + 3 > 3
    assert put(store, "q", [b"x"] * 2, partition="p1", max_items=3)
    with store.transaction():
        assert store.queue_clear("q", "p1") == 3
    assert store.queue_len("q", "p1", T0) == 0
    with store.transaction():
        store.queue_clear("q", None)
    assert store.queue_len("q", None, T0) == 0


def test_queue_page_reads_without_taking(store: SqliteStore) -> None:
    assert put(store, "q", [b"1", b"2", b"3"])
    assert store.queue_page("q", "", -1, 2, 10_000, T0) == [(0, b"1"), (1, b"2")]
    assert store.queue_page("q", "", 1, 10, 10_000, T0) == [(2, b"3")]
    assert store.queue_len("q", "", T0) == 3


def test_expired_partitions_hold_nothing_and_are_swept(store: SqliteStore) -> None:
    assert put(store, "q", [b"old"], ttl=10)
    assert put(store, "q", [b"kept"], partition="p", ttl=100)
    later = T0 + 20
    assert take(store, "q", 1, now=later) == []
    assert store.queue_len("q", None, later) == 1
    # a put after expiry starts the partition anew
    assert put(store, "q", [b"new"], now=later, ttl=10)
    assert take(store, "q", 5, now=later) == [b"new"]
    assert put(store, "q", [b"gone"], now=later, ttl=10)
    with store.transaction():
        swept = store.sweep_objects(later + 10, dict_idle=DAY, ephemeral_idle=DAY)
    assert swept == 2  # the partition and its item
    assert store.queue_page("q", "", -1, 10, 10_000, later) == []
    assert store.queue_len("q", "p", later) == 1


def test_sweep_drops_idle_dict_entries_and_idle_ephemeral_objects(store: SqliteStore) -> None:
    with store.transaction():
        store.create_object("dict", "kept", ephemeral=False, now=T0)
        store.create_object("queue", "~eph", ephemeral=True, now=T0)
        store.dict_put("kept", [(b"old", b"1"), (b"used", b"2")], skip_if_exists=False,
                       now=T0)
        store.dict_touch("kept", b"used", T0 + 5 * DAY)
    with store.transaction():
        store.sweep_objects(T0 + 7 * DAY, dict_idle=7 * DAY, ephemeral_idle=DAY)
    assert store.dict_get("kept", b"old") is None
    assert store.dict_get("kept", b"used") is not None
    assert store.get_object("dict", "kept") is not None
    assert store.get_object("queue", "~eph") is None


def test_objects_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = SqliteStore(path)
    with first.transaction():
        first.create_object("queue", "q", ephemeral=False, now=T0)
        first.queue_put("q", "", [b"1"], now=T0, ttl=DAY, max_items=10, max_partitions=10)
    first.close()
    second = SqliteStore(path)
    try:
        assert second.get_object("queue", "q") is not None
        with second.transaction():
            assert second.queue_take("q", "", 1, T0, 100) == [b"1"]
    finally:
        second.close()
