"""Fixtures of the cluster tests: Ray clusters of their own (see local.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .local import LocalCluster


@pytest.fixture
def local_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster()
    try:
        yield cluster
    finally:
        cluster.teardown()


@pytest.fixture(scope="module")
def three_nodes() -> Iterator[LocalCluster]:
    """A head without CPUs and two 1-CPU worker nodes, each with a resource of its own."""
    cluster = LocalCluster()
    try:
        cluster.start_head(num_cpus=0)
        cluster.add_worker(num_cpus=1, resources={"worker_a": 1})
        cluster.add_worker(num_cpus=1, resources={"worker_b": 1})
        yield cluster
    finally:
        cluster.teardown()
