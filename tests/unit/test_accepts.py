"""The accept pipeline: a burst of spawns is sent in batches, and no ID is observable
before its call is committed. The client here records requests; the pipeline's own
logic (batching, waiting, refusals) is what runs."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from rayfn import _accepts
from rayfn.call import FunctionCall
from rayfn.exception import NotFoundError
from rayfn.protocol.operations import RegistryApi


class RecordingClient:
    """Answers each spawn request after ``release`` is set; can refuse them."""

    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self.refuse: BaseException | None = None
        self.lock = threading.Lock()

    def call(self, op: Any, app: str, name: str, calls: Sequence[tuple[str, bytes]],
             idempotency: object = None, parent: str | None = None) -> None:
        assert op is RegistryApi.spawn  # the only operation the pipeline sends
        self.release.wait(10)
        with self.lock:
            self.requests.append([c for c, _ in calls])
        if self.refuse is not None:
            raise self.refuse


@pytest.fixture
def pipeline() -> _accepts.AcceptPipeline:
    return _accepts.AcceptPipeline()


def test_a_quiet_spawn_is_confirmed_before_it_returns(
    pipeline: _accepts.AcceptPipeline,
) -> None:
    client: Any = RecordingClient()
    assert pipeline.spawn(client, "a", "f", "fc-1", b"") is False
    assert client.requests == [["fc-1"]]


def test_a_burst_is_sent_in_batches_and_waited_for(
    pipeline: _accepts.AcceptPipeline,
) -> None:
    client: Any = RecordingClient()
    pipeline.spawn(client, "a", "f", "fc-0", b"")  # quiet: sent at once
    client.release.clear()  # hold the registry's answers
    queued = [pipeline.spawn(client, "a", "f", f"fc-{i}", b"") for i in range(1, 50)]
    assert all(queued)
    waiter = threading.Thread(target=pipeline.wait, args=(["fc-49"],))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive(), "wait must not return before the call is committed"
    client.release.set()
    waiter.join(10)
    assert not waiter.is_alive()
    assert pipeline.flush(timeout=10)
    sent = [c for request in client.requests for c in request]
    assert sorted(sent) == sorted(f"fc-{i}" for i in range(50))
    assert len(client.requests) < 50, "queued calls share requests"


def test_a_refused_batch_raises_where_its_calls_are_looked_at(
    pipeline: _accepts.AcceptPipeline,
) -> None:
    client: Any = RecordingClient()
    pipeline.spawn(client, "a", "f", "fc-0", b"")
    client.refuse = NotFoundError("app 'a' is not deployed")
    assert pipeline.spawn(client, "a", "f", "fc-1", b"") is True
    with pytest.raises(NotFoundError):
        pipeline.wait(["fc-1"])
    with pytest.raises(NotFoundError):  # and every time after
        pipeline.wait(["fc-1"])
    pipeline.wait(["fc-0"])  # committed before the refusal: fine
    # After a refusal the next spawn is confirmed before it returns, so it raises.
    with pytest.raises(NotFoundError):
        pipeline.spawn(client, "a", "f", "fc-2", b"")
    client.refuse = None
    assert pipeline.spawn(client, "a", "f", "fc-3", b"") is False


def test_a_queued_call_is_committed_before_its_id_is_read_or_pickled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline = _accepts.AcceptPipeline()
    monkeypatch.setattr(_accepts, "_pipeline", pipeline)
    client: Any = RecordingClient()
    pipeline.spawn(client, "a", "f", "fc-0", b"")
    client.release.clear()
    assert pipeline.spawn(client, "a", "f", "fc-1", b"")
    assert pipeline.spawn(client, "a", "f", "fc-2", b"")
    first = FunctionCall._of_new_id("fc-1", queued=True)
    second = FunctionCall._of_new_id("fc-2", queued=True)
    threading.Timer(0.3, client.release.set).start()
    assert first.object_id == "fc-1"
    assert "fc-1" in [c for request in client.requests for c in request]
    copy = pickle.loads(pickle.dumps(second))
    assert copy.object_id == "fc-2"
    assert "fc-2" in [c for request in client.requests for c in request]
