"""Scenario 9: a deployment the registry cannot use is in the store (stored by an older
rayfn, or edited by hand), then the registry is killed. It must come back, serve every
other app, refuse the bad app's calls with a clear error, and let it be stopped."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest
import ray

import rayfn
from rayfn._client import get_client
from rayfn.exception import DeploymentError, NotFoundError
from rayfn.protocol.ids import new_call_id
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.payload import dumps_args
from rayfn_service.names import REGISTRY_ACTOR
from rayfn_service.store import FunctionRecord, SqliteStore
from rayfn_service.store.base import NewCall

from .harness import Tally, settle

pytestmark = [pytest.mark.fault, pytest.mark.timeout(600)]

# Each of these once went into the store and kept the registry from starting.
BAD_OPTIONS = {
    "huge_min_containers": {"min_containers": 10**30},
    "infinite_cpu": {"cpu": float("inf")},
    "huge_memory": {"memory": 10**30},
    "unknown_option": {"no_such_option": 1},
}


def _store_bad_app(store_path: Any, app: str) -> str:
    """Write a deployed app whose functions break every check, and one queued call of it,
    straight into the store (as an older rayfn could have); return the call's ID."""
    code = cloudpickle.dumps(lambda: None)
    store = SqliteStore(store_path)
    try:
        with store.transaction():
            version = store.next_version(app)
            store.deploy(app, [
                FunctionRecord(app, version, name, json.dumps(options), code, "{}")
                for name, options in BAD_OPTIONS.items()
            ], ephemeral=False, now=time.time())
            call_id = new_call_id()
            store.insert_calls([NewCall(call_id, app, "huge_min_containers", version,
                                        dumps_args((), {}), time.time())])
    finally:
        store.close()
    return call_id


def test_a_bad_stored_deployment_does_not_take_the_registry_down(
    isolated_registry: Callable[..., Any], unique_app: str
) -> None:
    settings = isolated_registry()
    good = rayfn.App(unique_app)

    @good.function()
    def double(i: int) -> int:
        return i * 2

    good.deploy()
    tally = Tally(
        "9. a bad deployment stored, then the registry killed",
        fault="a deployment no check accepts written into the store with a queued call, "
        "then the registry actor killed (`ray.kill`, restarted by Ray)",
    )
    started = time.monotonic()
    before = double.spawn_map(range(50))
    bad_app = f"{unique_app}-bad"
    bad_call_id = _store_bad_app(settings.store_path, bad_app)
    ray.kill(ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace), no_restart=False)
    tally.faults_injected = 1
    after = double.spawn_map(range(50, 100))  # waits for the restarted registry
    calls = [*before, *after]
    tally.accepted = len(calls) + 1

    settle(tally, calls, [i * 2 for i in range(100)], timeout=300)
    # The bad app's accepted call ends, with an error that says what is wrong.
    with pytest.raises(DeploymentError, match=f"{bad_app} version 1 cannot be loaded"):
        rayfn.FunctionCall.from_id(bad_call_id).get(timeout=120)
    tally.failed += 1
    status = rayfn.FunctionCall.from_id(bad_call_id).status()
    assert status.error_type is not None and status.error_type.endswith("DeploymentError")
    assert "min_containers" in (status.error_message or "")

    for name, options in BAD_OPTIONS.items():
        with pytest.raises(DeploymentError, match="deploy the app again or stop it") as info:
            rayfn.Function.from_name(bad_app, name).spawn().object_id  # noqa: B018
        assert next(iter(options)) in str(info.value)
    # The other apps and the listing still work, and the bad app can be stopped.
    assert {a.name for a in get_client().call(RegistryApi.list_apps)} >= {unique_app, bad_app}
    assert double.remote(21) == 42
    rayfn.app.stop_app(bad_app)
    with pytest.raises(NotFoundError):
        rayfn.Function.from_name(bad_app, "infinite_cpu").spawn().object_id  # noqa: B018
    apps = get_client().call(RegistryApi.list_apps)
    assert bad_app not in {a.name for a in apps if a.state == "deployed"}
    tally.seconds = time.monotonic() - started
    tally.record()
    assert tally.lost == 0, tally.notes[:20]
    assert tally.completed == 100
