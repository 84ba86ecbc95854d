"""Whether a recorded Ray address and the one Ray reports name the same cluster."""

from __future__ import annotations

import ray

from rayfn_service.launch import _same_address


def test_loopback_and_this_machines_address_are_one_head() -> None:
    here = ray.util.get_node_ip_address()
    assert _same_address("127.0.0.1:6379", f"{here}:6379")
    assert _same_address("10.1.2.3:6379", "10.1.2.3:6379")


def test_another_port_or_host_is_another_cluster() -> None:
    assert not _same_address("127.0.0.1:6379", "127.0.0.1:6380")
    assert not _same_address("10.1.2.3:6379", "10.1.2.4:6379")
