"""Scenarios 3 and 5: a worker node lost mid-run, and every process of the service
SIGKILLed at once. Each runs a rayfn of its own, driven through its CLI and REST."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from .harness import Service, Tally, kill_tree, read_runs, wait_until

pytestmark = pytest.mark.fault

APP_FILE = Path(__file__).parent / "apps" / "fault_app.py"


@pytest.fixture
def own_service(tmp_path: Path) -> Iterator[Service]:
    service = Service(tmp_path)
    try:
        yield service
    finally:
        service.close()


def test_whole_service_sigkilled_then_started_again(own_service: Service, tmp_path: Path) -> None:
    svc = own_service
    log = tmp_path / "runs"
    n = 60
    svc.rayfn("start", "--num-cpus=2")
    svc.rayfn("deploy", str(APP_FILE))
    tally = Tally(
        "5. the whole service SIGKILLed, then `rayfn start` again",
        fault="every Ray process of the cluster (GCS, raylet, agents, workers, the registry) "
        "and the REST server SIGKILLed at once, with calls finished, running and queued",
    )
    started = time.monotonic()
    ids = svc.submit("fault-drill", "work", [[i, str(log), 0.5] for i in range(n)])
    tally.accepted = len(ids)
    wait_until(lambda: len(read_runs(log)) >= 12, timeout=300, what="12 calls to start")
    finished = [i for i in ids if svc.http.get(f"/v1/calls/{i}/result").status_code == 200]
    victims = svc.all_pids()
    tally.faults_injected = svc.kill_everything()
    assert not [p for p in victims if psutil.pid_exists(p)]

    svc.rayfn("start", "--num-cpus=2")
    for call_id in finished:  # results from before the crash are still there
        r = svc.http.get(f"/v1/calls/{call_id}/result")
        assert r.status_code == 200, r.text
    svc.settle(tally, ids, [i * 2 for i in range(n)], timeout=600)
    tally.seconds = time.monotonic() - started
    runs = read_runs(log)
    tally.count_runs(runs, [str(i) for i in range(n)])
    tally.notes.append(f"{len(finished)} calls had finished before the crash; their results "
                       "read back unchanged after the restart")
    tally.record()
    assert tally.lost == 0 and tally.failed == 0, tally.notes[:20]
    assert set(runs) == {str(i) for i in range(n)}
    assert finished, "the crash came before any call finished; the drill proved less"


def test_worker_node_lost_mid_run(own_service: Service, tmp_path: Path) -> None:
    svc = own_service
    log = tmp_path / "runs"
    n = 120
    # The head runs rayfn but no calls; two worker nodes do the work. A dead node is noticed
    # after about a second of failed health checks instead of Ray's default 15 s or so.
    address = svc.start_head(num_cpus=0, env={"RAY_health_check_period_ms": "500",
                                              "RAY_health_check_failure_threshold": "3"})
    nodes = [svc.add_node(num_cpus=2), svc.add_node(num_cpus=2)]
    svc.rayfn("start", f"--address={address}")
    svc.rayfn("deploy", str(APP_FILE))
    tally = Tally(
        "3. a worker node lost mid-run",
        fault="a head (no CPUs) and two 2-CPU worker nodes started with `ray start`; one worker "
        "node's raylet and every process under it SIGKILLed once a quarter of the calls ran",
    )
    started = time.monotonic()
    ids = svc.submit("fault-drill", "work", [[i, str(log), 0.5] for i in range(n)])
    tally.accepted = len(ids)
    wait_until(lambda: len(read_runs(log)) >= n // 4, timeout=300, what="a quarter of the calls")
    ran_on = _nodes_of(log)
    assert len(set(ran_on.values())) == 2, "calls should have spread over both worker nodes"
    kill_tree([nodes[0]])
    tally.faults_injected = 1
    svc.settle(tally, ids, [i * 2 for i in range(n)], timeout=600)
    tally.seconds = time.monotonic() - started
    runs = read_runs(log)
    tally.count_runs(runs, [str(i) for i in range(n)])
    late = _nodes_of(log)
    survivors = set(late.values())
    tally.notes.append(f"calls per node: {dict(collections.Counter(late.values()))}")
    tally.record()
    assert tally.lost == 0 and tally.failed == 0, tally.notes[:20]
    assert set(runs) == {str(i) for i in range(n)}
    assert len(survivors) == 2  # the last run of every call: some on each, before and after


def _nodes_of(log: Path) -> dict[str, str]:
    """The node of each call's latest run."""
    path = Path(str(log) + ".nodes")
    if not path.exists():
        return {}
    return dict(line.split() for line in path.read_text().splitlines() if line.strip())
