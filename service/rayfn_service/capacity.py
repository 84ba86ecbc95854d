"""Can any node ever run a function? The cluster's nodes, and the nodes an autoscaler may add.

A Ray task that asks for more than any node has (``gpu=1`` on a cluster without GPUs)
waits forever. The registry reads the cluster's shape every few seconds and fails such
calls with ``ResourcesUnavailableError`` instead. Nodes an autoscaler could still add
count as present: its node types come from the cluster config it publishes in the GCS
(autoscaler v2, KubeRay) or from the YAML the head's autoscaler monitor was started with
(the cluster launcher). A local ``ray start`` cluster runs the monitor without a config
(read-only): its current nodes are all there is. When an autoscaler runs but its node
types cannot be read, every shape counts as possible: better to wait than to refuse
wrongly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

Shape = Mapping[str, float]
_MONITOR_SCRIPTS = ("autoscaler/_private/monitor.py", "autoscaler/v2/monitor.py")
_CONFIG_FLAG = "--autoscaling-config"
# The monitor's command line does not change while the cluster runs: look it up (a scan of
# every process on the head) at most this often.
MONITOR_SCAN_SECONDS = 60.0
_monitor_scan: dict[str, tuple[float, str | None]] = {}


@dataclasses.dataclass(frozen=True)
class Capacity:
    """What the cluster has, and what its autoscaler could add."""

    nodes: tuple[dict[str, float], ...] = ()  # total resources of each alive node
    node_types: tuple[dict[str, float], ...] = ()  # shapes the autoscaler can add
    autoscaler_unknown: bool = False  # an autoscaler runs whose node types are unknown
    known: bool = False  # False until the cluster was read once: then nothing is refused

    @property
    def single_node(self) -> bool:
        """One node, and no autoscaler that could add another."""
        return (self.known and len(self.nodes) == 1 and not self.node_types
                and not self.autoscaler_unknown)

    def shortfall(self, shape: Shape) -> str | None:
        """None when a present or addable node fits ``shape``; else why none does."""
        if not self.known or self.autoscaler_unknown:
            return None
        wanted = {k: v for k, v in shape.items() if v > 0}
        if any(_fits(wanted, node) for node in (*self.nodes, *self.node_types)):
            return None
        largest = {k: max((n.get(k, 0.0) for n in self.nodes), default=0.0) for k in wanted}
        asked = ", ".join(f"{_label(k)}={_amount(k, v)}" for k, v in sorted(wanted.items()))
        has = ", ".join(f"{_label(k)}={_amount(k, v)}" for k, v in sorted(largest.items()))
        scaler = ("its autoscaler cannot add one" if self.node_types
                  else "no autoscaler can add one")
        return (f"it asks for {asked}; no node of the cluster has that "
                f"({len(self.nodes)} nodes, at most {has} each) and {scaler}")


def _fits(wanted: Mapping[str, float], node: Mapping[str, float]) -> bool:
    return all(node.get(k, 0.0) >= v for k, v in wanted.items())


def _label(key: str) -> str:
    return {"CPU": "cpu", "GPU": "gpu", "memory": "memory"}.get(key, key)


def _amount(key: str, value: float) -> str:
    return f"{value / 2**20:g} MiB" if key == "memory" else f"{value:g}"


def shape_of(ray_options: Mapping[str, Any]) -> dict[str, float]:
    """A function's Ray task options as the resources one attempt needs."""
    shape = {"CPU": float(ray_options.get("num_cpus", 1.0))}
    if ray_options.get("num_gpus"):
        shape["GPU"] = float(ray_options["num_gpus"])
    if ray_options.get("memory"):
        shape["memory"] = float(ray_options["memory"])
    return shape


def read_capacity() -> Capacity:
    """The cluster's shape now (blocking GCS calls: run it off the event loop)."""
    import ray

    nodes = tuple(
        {k: float(v) for k, v in node.get("Resources", {}).items()}
        for node in ray.nodes()  # type: ignore[no-untyped-call]
        if node.get("Alive")
    )
    types, unknown = _autoscaler_node_types()
    return Capacity(nodes=nodes, node_types=types, autoscaler_unknown=unknown, known=True)


def _autoscaler_node_types() -> tuple[tuple[dict[str, float], ...], bool]:
    """Shapes an autoscaler could add, and whether one runs whose shapes are unknown."""
    published = _published_node_types()
    if published is not None:
        return published
    import ray

    gcs_address = ray.get_runtime_context().gcs_address
    scanned_at, path = _monitor_scan.get(gcs_address, (-MONITOR_SCAN_SECONDS, None))
    if time.monotonic() - scanned_at >= MONITOR_SCAN_SECONDS:
        path = monitor_config_path(gcs_address)
        _monitor_scan[gcs_address] = (time.monotonic(), path)
    if path is None:
        return (), False  # no autoscaler config: the nodes there are are all there will be
    return node_types_of_yaml(path)


def _published_node_types() -> tuple[tuple[dict[str, float], ...], bool] | None:
    """The node groups autoscaler v2 (KubeRay) publishes in the GCS; None when it does not."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:
        logger.debug("cannot read the cluster config", exc_info=True)
        return None
    if config is None or not config.node_group_configs:
        return None
    shapes, unknown = [], False
    for group in config.node_group_configs:
        if group.max_count == 0:
            continue
        resources = {k: float(v) for k, v in group.resources.items()}
        unknown = unknown or not resources
        shapes.append(resources)
    return tuple(shapes), unknown


def monitor_config_path(gcs_address: str) -> str | None:
    """The ``--autoscaling-config`` of the autoscaler monitor of the cluster at
    ``gcs_address``. It runs on the head node, as the registry does; other clusters on
    the machine have monitors of their own."""
    import psutil

    port = gcs_address.rpartition(":")[2]
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if not any(script in part for part in cmdline for script in _MONITOR_SCRIPTS):
            continue
        if not any(part.startswith("--gcs-address") and part.endswith(f":{port}")
                   for part in cmdline):
            continue
        for i, part in enumerate(cmdline):
            if part.startswith(_CONFIG_FLAG + "="):
                return str(part.split("=", 1)[1])
            if part == _CONFIG_FLAG and i + 1 < len(cmdline):
                return str(cmdline[i + 1])
    return None


def node_types_of_yaml(path: str) -> tuple[tuple[dict[str, float], ...], bool]:
    """The worker node types of a cluster launcher YAML that can still be added."""
    try:
        import yaml

        with open(path) as f:
            config = yaml.safe_load(f) or {}
        types = config.get("available_node_types") or {}
        head = config.get("head_node_type")
        shapes, unknown = [], not types
        for name, spec in types.items():
            if name == head and not spec.get("max_workers"):
                continue
            if spec.get("max_workers", config.get("max_workers", 1)) == 0:
                continue
            resources = {k: float(v) for k, v in (spec.get("resources") or {}).items()}
            unknown = unknown or not resources  # filled in from the instance type later
            shapes.append(resources)
        return tuple(shapes), unknown
    except Exception:
        logger.warning("cannot read the autoscaling config %s; assuming it can add any node",
                       path, exc_info=True)
        return (), True


class CapacityMonitor:
    """The registry's latest reading of the cluster's capacity, refreshed on demand."""

    def __init__(self) -> None:
        self.current = Capacity()
        self._read_started = -float("inf")  # when the latest reading began (monotonic)
        self._lock = asyncio.Lock()

    async def refresh(self, since: float | None = None) -> Capacity:
        """Read the cluster again, unless a reading that began after ``since`` (monotonic)
        is at hand: requests that wait together share one reading."""
        asked = time.monotonic() if since is None else since
        async with self._lock:
            if self._read_started >= asked:
                return self.current
            self._read_started = time.monotonic()
            try:
                self.current = await asyncio.to_thread(read_capacity)
            except Exception:  # the GCS may be restarting: keep the last reading
                logger.warning("cannot read the cluster's nodes", exc_info=True)
        return self.current

    async def shortfall(self, shape: Shape) -> str | None:
        """Why no node can run ``shape``, confirmed by a reading that began after the
        question (a node may have joined since the last one); None if one can run it."""
        asked = time.monotonic()
        if self.current.shortfall(shape) is None:
            return None
        return (await self.refresh(since=asked)).shortfall(shape)
