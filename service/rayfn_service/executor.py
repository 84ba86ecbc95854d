"""The Ray task that runs one attempt of a user function.

It returns plain data the registry can read without the user's modules: ``("ok",
result_bytes)`` or ``("error", ErrorInfo)``. Every user exception is caught here, so a
Ray-level failure of this task always means the process or node died.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import ray

from rayfn._client import set_in_cluster_namespace
from rayfn._payload import encode_exception, encode_result, error_of, loads_args
from rayfn.exception import ExecutionError

FunctionKey = tuple[str, int, str]
Outcome = tuple[str, Any]

# A worker keeps the functions it ran, so a deployment's code is fetched once per worker.
_CACHE_SIZE = 64
_functions: collections.OrderedDict[FunctionKey, Callable[..., Any]] = collections.OrderedDict()
_registries: dict[tuple[str, str], Any] = {}

# Past this delay between submission and start, the attempt's timeout clock is moved to
# the real start (the task waited for resources, e.g. for the autoscaler).
START_NOTICE_AFTER_SECONDS = 1.0


def _load(key: FunctionKey, code_ref: list[ray.ObjectRef]) -> Callable[..., Any]:
    fn = _functions.get(key)
    if fn is None:
        fn = cloudpickle.loads(ray.get(code_ref[0]))
        _functions[key] = fn
        if len(_functions) > _CACHE_SIZE:
            _functions.popitem(last=False)
    else:
        _functions.move_to_end(key)
    return fn


def _notice_start(registry: tuple[str, str], call_id: str, attempt: int, started: float) -> None:
    handle = _registries.get(registry)
    if handle is None:
        handle = ray.get_actor(registry[1], namespace=registry[0])
        _registries[registry] = handle
    handle.attempt_started.remote(call_id, attempt, started)


def execute(
    code_ref: list[ray.ObjectRef],
    key: FunctionKey,
    call_id: str,
    attempt: int,
    args: bytes,
    submitted_at: float,
    registry: tuple[str, str],
) -> Outcome:
    started = time.time()
    set_in_cluster_namespace(registry[0])  # spawns from inside go to the same registry
    if started - submitted_at > START_NOTICE_AFTER_SECONDS:
        try:
            _notice_start(registry, call_id, attempt, started)
        except Exception:  # the registry may be restarting; the call still runs
            pass
    try:
        fn = _load(key, code_ref)
    except Exception as exc:
        return ("error", error_of(ExecutionError, f"cannot load function {key[2]!r}: {exc!r}"))
    try:
        positional, keywords = loads_args(args)
    except Exception as exc:
        return ("error", error_of(ExecutionError, f"cannot load the arguments: {exc!r}"))
    try:
        value = fn(*positional, **keywords)
    except (Exception, SystemExit) as exc:
        return ("error", encode_exception(exc))
    try:
        return ("ok", encode_result(value))
    except Exception as exc:
        return ("error", encode_exception(exc))


remote_execute = ray.remote(execute)
