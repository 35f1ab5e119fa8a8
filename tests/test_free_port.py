"""free_port under pytest-xdist: ports nobody else hands out, a block of its own for each worker."""

from __future__ import annotations

import socket

import pytest

from testkit import processes
from testkit.processes import free_port


def _ephemeral_low() -> int:
    with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ranges:
        return int(ranges.read().split()[0])


def test_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20  # never the same one twice in a row, though each was free
    assert all(port < _ephemeral_low() for port in ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_each_worker_has_a_block_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    blocks = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        blocks.append(set(processes._port_pool()))
    assert all(len(block) > 1000 for block in blocks)
    assert len(blocks[0] | blocks[1] | blocks[2]) == sum(len(block) for block in blocks)  # disjoint
    assert max(max(block) for block in blocks) < _ephemeral_low()
