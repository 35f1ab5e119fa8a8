"""Test helpers for the store: a fake clock and a real redis-server process on a loopback port
(both shared with the benchmarks, in testkit), and the tests' demand for redis-server."""

from __future__ import annotations

import os

import pytest

from testkit.clock import START, FakeClock
from testkit.redis import RedisServer, redis_server_binary

__all__ = ["START", "FakeClock", "RedisServer", "redis_server_binary", "require_redis_server"]


def require_redis_server() -> str:
    """Return redis-server's path; fail under CI=true, skip elsewhere, when it is missing."""
    binary = redis_server_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (CI=true: scripts/system-deps.sh installs it)")
        pytest.skip("redis-server is not installed")
    return binary
