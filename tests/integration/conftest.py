from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _uses_service(service: Path) -> None:
    """Every integration test runs against the session's rayfn."""


@pytest.fixture
def isolated_registry(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start another registry on the session's Ray, with its own namespace, state dir and
    settings (e.g. a short retention), and point the SDK at it for this test."""
    import ray

    import rayfn
    from rayfn._client import reset
    from rayfn.settings import get_settings
    from rayfn_service.launch import ensure_registry
    from rayfn_service.names import REGISTRY_ACTOR

    started: list[Any] = []

    def start(**overrides: Any) -> Any:
        namespace = f"rayfn-test-{len(started)}-{tmp_path.name[-20:]}"
        settings = get_settings().model_copy(
            update={"namespace": namespace, "state_dir": tmp_path / namespace, **overrides}
        )
        ensure_registry(settings)
        started.append(namespace)
        rayfn.connect(namespace=namespace, state_dir=str(settings.state_dir))
        return settings

    try:
        yield start
    finally:
        for namespace in started:
            try:
                ray.kill(ray.get_actor(REGISTRY_ACTOR, namespace=namespace), no_restart=True)
            except ValueError:
                pass
        reset()


@pytest.fixture(params=["ray", "http"])
def transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once with the SDK inside the cluster (Ray) and once over REST."""
    import rayfn
    from rayfn._client import reset
    from rayfn.settings import get_settings
    from rayfn_service.server_process import server_url

    if request.param == "http":
        if "isolated_registry" in request.fixturenames:
            pytest.skip("an isolated registry has no REST server of its own")
        settings = get_settings()
        rayfn.connect(server_url(settings), token=settings.read_token())
    else:
        reset()
    try:
        yield str(request.param)
    finally:
        reset()


@pytest.fixture
def unique_app(request: pytest.FixtureRequest) -> str:
    """An app name no other test uses."""
    from rayfn.protocol.ids import new_call_id

    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:30]
    return f"t-{base}-{new_call_id()[-6:]}"
