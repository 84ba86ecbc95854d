"""Scenarios 3 and 5: a worker node lost mid-run, and every process of the service
SIGKILLed at once. Each runs a rayfn of its own, driven through its CLI and REST."""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from .harness import Service, Tally, kill_tree, read_runs, wait_until

# Drills run minutes on a busy machine; the default per-test limit is for ordinary tests.
pytestmark = [pytest.mark.fault, pytest.mark.timeout(900)]

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
    killed = svc.kill_everything()
    tally.faults_injected = 1
    tally.notes.append(f"{killed} processes SIGKILLed at once")
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
    for _ in range(2):
        svc.add_node(num_cpus=2)
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
    runs_before = _node_runs(log)
    assert len({node for _, node in runs_before}) == 2, "calls should spread over both nodes"
    victim = runs_before[-1][1]  # the node of the latest run: it has calls running now
    killed = kill_tree([svc.raylet_of(victim)])
    seen_at_kill = len(_node_runs(log))  # nothing on the victim can write after this
    tally.faults_injected = 1
    tally.notes.append(f"node {victim[:8]}: its raylet and {killed - 1} processes under it "
                       "SIGKILLed")
    svc.settle(tally, ids, [i * 2 for i in range(n)], timeout=600)
    tally.seconds = time.monotonic() - started
    runs = read_runs(log)
    tally.count_runs(runs, [str(i) for i in range(n)])
    after_kill = _node_runs(log)[seen_at_kill:]
    per_node = collections.Counter(node[:8] for _, node in _node_runs(log))
    tally.notes.append(f"runs per node: {dict(per_node)}; runs after the loss: "
                       f"{len(after_kill)}, all on the surviving node")
    tally.record()
    assert tally.lost == 0 and tally.failed == 0, tally.notes[:20]
    assert set(runs) == {str(i) for i in range(n)}
    assert after_kill and victim not in {node for _, node in after_kill}
    assert tally.ran_twice >= 1  # calls running on the lost node ran again elsewhere


def _node_runs(log: Path) -> list[tuple[str, str]]:
    """(call, node) for every run so far, in the order they started."""
    path = Path(str(log) + ".nodes")
    if not path.exists():
        return []
    return [(c, node) for c, node in (line.split() for line in path.read_text().splitlines()
                                       if line.strip())]


def test_registry_host_sigkilled_then_started_again(own_service: Service, tmp_path: Path) -> None:
    """The host only keeps the registry's Ray job alive: without it the registry still
    serves, and `rayfn start` brings a new host that takes the registry over."""
    svc = own_service
    log = tmp_path / "runs"
    svc.rayfn("start", "--num-cpus=2")
    svc.rayfn("deploy", str(APP_FILE))
    first = json.loads((svc.state_dir / "registry-host.json").read_text())
    tally = Tally(
        "8. the registry's host SIGKILLed, then `rayfn start` again",
        fault="the host process (the Ray driver whose job owns the registry) SIGKILLed with "
        "calls queued and running; more calls submitted without it, then `rayfn start`",
    )
    started = time.monotonic()
    ids = svc.submit("fault-drill", "work", [[i, str(log), 0.2] for i in range(20)])
    assert kill_tree([first["pid"]]) >= 1
    tally.faults_injected = 1
    ids += svc.submit("fault-drill", "work", [[i, str(log), 0.0] for i in range(20, 30)])

    svc.rayfn("start", "--num-cpus=2")
    second = json.loads((svc.state_dir / "registry-host.json").read_text())
    assert second["pid"] != first["pid"] and psutil.pid_exists(second["pid"])
    assert second["job_id"] != first["job_id"]
    assert "restarting the registry" in (svc.state_dir / "host.log").read_text()
    ids += svc.submit("fault-drill", "work", [[i, str(log), 0.0] for i in range(30, 40)])
    tally.accepted = len(ids)
    svc.settle(tally, ids, [i * 2 for i in range(40)], timeout=300)
    tally.seconds = time.monotonic() - started
    runs = read_runs(log)
    tally.count_runs(runs, [str(i) for i in range(40)])
    tally.notes.append(f"host {first['job_id']} replaced by {second['job_id']}")
    tally.record()
    assert tally.lost == 0 and tally.failed == 0, tally.notes[:20]
    assert set(runs) == {str(i) for i in range(40)}
