"""The registry's host: ``python -m rayfn_service.host`` (``rayfn start`` runs it).

A small Ray driver that creates the registry actor and then stays alive. Ray ties every
task to the job of the process that created its owner, and the registry owns every
attempt: once that job ends, Ray ends each of its workers the moment it goes idle, so a
call arriving after a pause would wait for a new worker process (a second or more)
instead of reusing one. The host keeps the registry's job alive, and with it warm
workers between calls.

The host holds no state: killing it loses nothing. The registry keeps running (it is
detached) and only its workers stop being kept warm until ``rayfn start`` runs again,
which starts a new host; that host replaces a registry whose job has ended (a restart
of the registry, which re-queues its running calls, as any registry restart does).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from typing import Any

import ray

from rayfn.protocol.actor import RegistryActor
from rayfn.protocol.operations import RegistryApi
from rayfn.settings import Settings, get_settings
from rayfn_service.launch import (
    REGISTRY_START_TIMEOUT,
    connect_driver,
    ensure_registry,
    host_file,
)
from rayfn_service.names import REGISTRY_ACTOR
from rayfn_service.ray_head import HeadInfo, head_alive

logger = logging.getLogger("rayfn.host")

# How often the host checks that the Ray head is still there, and how long it may be
# unreachable before the host exits (a head stopped behind rayfn's back leaves no host).
CHECK_SECONDS = 5.0
HEAD_GONE_SECONDS = 30.0


def job_alive(job_id: str) -> bool:
    """Whether a Ray job's driver still runs (when unknown, assume it does)."""
    try:
        from ray._private import state

        for job in state.jobs():  # type: ignore[no-untyped-call]
            if job["JobID"] == job_id:
                return not job["IsDead"]
    except Exception:
        logger.debug("cannot read Ray's job table", exc_info=True)
    return True


def own_registry(settings: Settings, job: str) -> Any:
    """The registry, created by this process's ``job``; one left by an ended job is
    replaced."""
    try:
        existing = ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace)
    except ValueError:
        existing = None
    if existing is not None:
        registry = RegistryActor(settings.namespace, retry_seconds=0)
        owner = registry.result(registry.submit(RegistryApi.ping),
                                timeout=REGISTRY_START_TIMEOUT)["job_id"]
        if owner is not None and owner != job and not job_alive(owner):
            logger.warning("restarting the registry: the job that started it (%s) has ended, "
                           "so its workers would not be kept between calls", owner)
            ray.kill(existing, no_restart=True)
            _wait_until_gone(settings)
    return ensure_registry(settings)


def _wait_until_gone(settings: Settings, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace)
        except ValueError:
            return
        time.sleep(0.1)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    info = HeadInfo.load(settings)
    address = settings.address or (info.address if info else "auto")
    connect_driver(address, settings, log_to_driver=False)
    job = ray.get_runtime_context().get_job_id()
    own_registry(settings, job)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ready = host_file(settings)
    ready.write_text(json.dumps({"pid": os.getpid(), "job_id": job}))
    logger.info("the registry of namespace %s is hosted by job %s", settings.namespace, job)
    unreachable_since: float | None = None
    try:
        while not stop.wait(CHECK_SECONDS):
            if info is None or head_alive(info):
                unreachable_since = None
                continue
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > HEAD_GONE_SECONDS:
                logger.warning("the Ray head at %s is gone; the host exits", info.address)
                break
    finally:
        try:
            if json.loads(ready.read_text()).get("pid") == os.getpid():
                ready.unlink()
        except (OSError, ValueError):
            pass


if __name__ == "__main__":
    main()
