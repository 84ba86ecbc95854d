"""Scenario 7: the state directory's disk fills up, then turns read-only. Spawns fail at
once with StoreError and leave nothing behind; calls already accepted (even ones that
finish while nothing can be written) end with their results once the disk takes writes
again."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray

import rayfn
from rayfn.exception import StoreError
from rayfn_service.launch import ensure_registry
from rayfn_service.names import REGISTRY_ACTOR

from .harness import Tally, read_runs, settle, wait_until

# Drills run minutes on a busy machine; the default per-test limit is for ordinary tests.
pytestmark = [pytest.mark.fault, pytest.mark.timeout(900)]


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs of its own: a real file system that can really fill up."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    result = _mount("-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mountpoint))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb") as f:
        try:
            for _ in range(64):
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            return filler
    raise AssertionError("the disk never filled")


Calls = list[tuple[rayfn.FunctionCall[Any], int]]


def _spawn_until_refused(job: Any, log: str) -> tuple[Calls, float]:
    """Spawn calls with 64 KiB arguments until the store refuses one; return the calls that
    were accepted on the way and how long the refused spawn took."""
    accepted: Calls = []
    for i in range(1000, 1400):
        began = time.monotonic()
        try:
            accepted.append((job.spawn(i, log, "x" * 65536), i))
        except StoreError:
            return accepted, time.monotonic() - began
    raise AssertionError("the store accepted 25 MiB on a full disk")


def _gone(namespace: str) -> bool:
    try:
        ray.get_actor(REGISTRY_ACTOR, namespace=namespace)
    except ValueError:
        return True
    return False


def _accepts(job: Any, log: str) -> bool:
    try:
        job.spawn(9998, log).get(timeout=60)
    except StoreError:
        return False
    return True


def _rows(store: Path, app: str) -> int:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return int(db.execute("SELECT count(*) FROM calls WHERE app = ?", (app,)).fetchone()[0])
    finally:
        db.close()  # an open reader holds the WAL index: the disk could not turn read-only


def _holders(disk: Path) -> list[str]:
    """Processes with files open on ``disk`` (what keeps it from turning read-only)."""
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if any(f.path.startswith(str(disk)) for f in proc.open_files()):
                found.append(f"{proc.info['pid']} {proc.info['name']}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_disk_full_then_read_only(
    isolated_registry: Callable[..., Any], small_disk: Path, unique_app: str, tmp_path: Path
) -> None:
    settings = isolated_registry(state_dir=small_disk / "state")
    log = str(tmp_path / "runs")  # on the big disk: the calls themselves can write
    app = rayfn.App(unique_app)

    @app.function(max_containers=4)
    def job(i: int, log: str, pad: str = "", seconds: float = 0.0) -> int:
        import time

        with open(log, "a") as f:
            f.write(f"{i}\n")
        time.sleep(seconds)
        return i * 2

    app.deploy()
    tally = Tally(
        "7. the state directory's disk full, then read-only",
        fault="the store on a 32 MiB tmpfs: filled to the last byte, then freed; then "
        "remounted read-only, then read-write again",
    )
    started = time.monotonic()
    try:
        calls: Calls = list(zip(job.spawn_map(range(20), [log] * 20), range(20), strict=True))
        slow = [(job.spawn(i, log, "", 3.0), i) for i in range(100, 104)]  # end on a full disk
        wait_until(lambda: len(read_runs(Path(log))) >= 20, timeout=300, what="first calls")
        filler = _fill(small_disk)
        tally.faults_injected += 1
        during, refused_after = _spawn_until_refused(job, log)
        tally.notes.append(f"disk full: {len(during)} spawns still fitted, then a spawn was "
                           f"refused with StoreError after {refused_after:.2f} s")
        time.sleep(4)  # the slow calls end while their outcomes cannot be written
        filler.unlink()
        for call, i in slow:
            assert call.get(timeout=120) == i * 2
        calls += slow + during
        assert _rows(settings.store_path, unique_app) == len(calls)  # nothing half-written

        # A file system cannot turn read-only under a process that writes to it, so the
        # registry stops, the disk turns read-only, and the registry starts on it again.
        ray.kill(ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace), no_restart=True)
        wait_until(lambda: _gone(settings.namespace), timeout=60, what="the registry to end")
        try:
            wait_until(lambda: _mount("-o", "remount,ro", str(small_disk)).returncode == 0,
                       timeout=180, what="the registry to let go of the store")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; files open on it: {_holders(small_disk)}") from None
        tally.faults_injected += 1
        ensure_registry(settings)
        began = time.monotonic()
        with pytest.raises(StoreError, match="read-?only"):
            job.spawn(9999, log)
        tally.notes.append(f"read-only: spawn refused with StoreError after "
                           f"{time.monotonic() - began:.2f} s: the registry stays up and "
                           "names the problem")
        with pytest.raises(StoreError):
            calls[0][0].get(timeout=0)
        assert _mount("-o", "remount,rw", str(small_disk)).returncode == 0
        wait_until(lambda: _accepts(job, log), timeout=60, what="the store to open again")
        calls += list(zip(job.spawn_map(range(500, 520), [log] * 20), range(500, 520),
                          strict=True))
        tally.accepted = len(calls)
        settle(tally, [c for c, _ in calls], [i * 2 for _, i in calls], timeout=300)
    finally:
        try:
            ray.kill(ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace),
                     no_restart=True)
        except ValueError:
            pass
        _mount("-o", "remount,rw", str(small_disk))
    tally.seconds = time.monotonic() - started
    tally.count_runs(read_runs(Path(log)), [str(i) for _, i in calls])
    tally.record()
    assert tally.lost == 0 and tally.failed == 0, tally.notes[:20]
    assert tally.completed == tally.accepted
