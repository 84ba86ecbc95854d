"""The cluster's nodes for ``rayfn status``: their resources and the calls each runs."""

from __future__ import annotations

import dataclasses

from rich.table import Table

from rayfn.cli.output import table
from rayfn.schemas import FunctionStats

# Node IDs are 56 hex digits; tables show the shortest prefix that tells them apart.
MIN_ID_WIDTH = 8


@dataclasses.dataclass(frozen=True)
class NodeView:
    node_id: str
    address: str
    alive: bool
    head: bool
    total: dict[str, float]
    available: dict[str, float]
    running: dict[str, int]  # "app.function" -> attempts running on this node


def cluster_nodes(stats: list[FunctionStats]) -> list[NodeView]:
    """Every node Ray knows, with what rayfn's functions hold on it (needs a Ray driver)."""
    import ray
    from ray._private.state import available_resources_per_node

    available = available_resources_per_node()  # type: ignore[no-untyped-call]
    running: dict[str, dict[str, int]] = {}
    for s in stats:
        for node_id, count in s.nodes.items():
            running.setdefault(node_id, {})[f"{s.app}.{s.function}"] = count
    views = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        resources = {k: float(v) for k, v in node.get("Resources", {}).items()}
        views.append(NodeView(
            node_id=node["NodeID"],
            address=node["NodeManagerAddress"],
            alive=bool(node["Alive"]),
            head="node:__internal_head__" in resources,
            total=_plain(resources),
            available=_plain(available.get(node["NodeID"], {})) if node["Alive"] else {},
            running=running.get(node["NodeID"], {}),
        ))
    # The head first, then live nodes, then the dead ones Ray still remembers.
    return sorted(views, key=lambda v: (not v.head, not v.alive, v.node_id))


def _plain(resources: dict[str, float]) -> dict[str, float]:
    """CPU, GPU, memory and custom resources; not Ray's per-node and placement markers."""
    return {k: float(v) for k, v in resources.items()
            if not k.startswith("node:") and "_group_" not in k}


def _used(view: NodeView, resource: str, scale: float = 1.0) -> str:
    total = view.total.get(resource, 0.0) / scale
    if not total:
        return "-"
    if not view.alive:
        return f"{total:g}"
    used = total - view.available.get(resource, 0.0) / scale
    return f"{used:.3g}/{total:.3g}"


def id_width(node_ids: list[str]) -> int:
    """The shortest prefix length (at least MIN_ID_WIDTH) that keeps ``node_ids`` distinct."""
    width = MIN_ID_WIDTH
    unique = set(node_ids)
    while width < max((len(n) for n in unique), default=0):
        if len({n[:width] for n in unique}) == len(unique):
            break
        width += 1
    return width


def nodes_table(nodes: list[NodeView], width: int) -> Table:
    rows = []
    for n in nodes:
        state = ("head" if n.head else "worker") + ("" if n.alive else " (dead)")
        running = ", ".join(f"{name} x{count}" for name, count in sorted(n.running.items()))
        rows.append((n.node_id[:width], n.address, state, _used(n, "CPU"), _used(n, "GPU"),
                     _used(n, "memory", 2**30), running))
    return table(("node", "address", "state", "CPU used", "GPU used", "memory GiB used",
                  "running"), rows, title="nodes")


def holdings(nodes: dict[str, int], width: int) -> str:
    """``{node_id: count}`` as ``1f2e3d4c: 2, 5a6b7c8d: 1``."""
    return ", ".join(f"{node_id[:width]}: {count}" for node_id, count in sorted(nodes.items()))
