"""The test harness itself: a missing redis-server fails the run under CI=true and skips elsewhere."""

from __future__ import annotations

import pytest

from tests.store import support


def test_missing_redis_server_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(support, "redis_server_binary", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="redis-server"):
        support.require_redis_server()


def test_missing_redis_server_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(support, "redis_server_binary", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        support.require_redis_server()
