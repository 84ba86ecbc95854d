"""End the processes an attempt started and left behind, when the attempt ends.

Ray reuses a worker process for many calls, so a child that outlives its call (a forked
helper, a daemon that detached itself) would stay on the node indefinitely. The worker
makes itself a child subreaper (Linux): descendants orphaned by their parent are
re-parented to it rather than to init, so even a double-forked daemon stays in view.
When the attempt ends, every child that was not there before it began is ended, with
its descendants: SIGTERM, a short grace, then SIGKILL, and reaped.

Children of an attempt whose worker is killed (a forced timeout or cancel) are not
reached here; Ray ends a dying worker's child processes itself.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

_PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 1.0
_subreaper = False


def _become_subreaper() -> None:
    global _subreaper
    if _subreaper or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not available: orphans go to init as usual
        pass
    _subreaper = True


def _direct_children() -> set[int]:
    """This process's children, cheaply (/proc); psutil only when /proc cannot say.

    Linux lists children per thread. Only threads running Python start processes for
    user code, and orphans re-parented to this subreaper join the main thread's list, so
    those threads are read, not the dozens of Ray's own native threads: this runs twice
    per call."""
    pid = os.getpid()
    found: set[int] = set()
    threads = {pid, *(t.native_id for t in threading.enumerate() if t.native_id)}
    try:
        for tid in threads:
            try:
                fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY)
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            try:
                found.update(int(p) for p in os.read(fd, 1 << 16).split())
            finally:
                os.close(fd)
        return found
    except OSError:
        import psutil

        return {c.pid for c in psutil.Process(pid).children()}


def started() -> set[int]:
    """Call as an attempt begins: the children that already exist."""
    _become_subreaper()
    return _direct_children()


def end_new(before: set[int]) -> list[int]:
    """End the children (and their descendants) that appeared since ``before``; return
    their PIDs."""
    new = _direct_children() - before
    if not new:
        return []
    import psutil

    procs: list[psutil.Process] = []
    for pid in new:
        try:
            child = psutil.Process(pid)
            procs.extend([*child.children(recursive=True), child])
        except psutil.NoSuchProcess:
            continue
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=GRACE_SECONDS)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=GRACE_SECONDS)
    _reap([p.pid for p in procs])
    return [p.pid for p in procs]


def _reap(pids: list[int]) -> None:
    """Collect the exit status of ended processes re-parented to this one (no zombies)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child, or already reaped
            pass
