"""Where calls run: what ``stats`` (and so ``rayfn status``) says each function holds."""

from __future__ import annotations

import time

import pytest

import rayfn
from rayfn._client import get_client
from rayfn.protocol.operations import RegistryApi

pytestmark = pytest.mark.usefixtures("transport")


def test_stats_name_the_node_a_running_call_is_on(unique_app: str) -> None:
    import ray

    app = rayfn.App(unique_app)

    @app.function(timeout=120)
    def hold(seconds: float) -> str:
        import time

        import ray

        time.sleep(seconds)
        return str(ray.get_runtime_context().get_node_id())

    app.deploy()
    call = rayfn.Function.from_name(unique_app, "hold").spawn(6.0)
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 120
    while not seen and time.monotonic() < deadline:
        stats = next(s for s in get_client().call(RegistryApi.stats) if s.app == unique_app)
        seen = stats.nodes
        time.sleep(0.2)
    node_id = call.get(timeout=120)
    # The session's cluster has one node; the call ran there, and was seen running there.
    assert seen == {node_id: 1}
    assert node_id in {n["NodeID"] for n in ray.nodes()}
    after = next(s for s in get_client().call(RegistryApi.stats) if s.app == unique_app)
    assert after.nodes == {}
