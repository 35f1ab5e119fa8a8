"""The admin commands, run as a real `wecom-bind` process against a real SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from callback_service.store import open_store
from handlers.core.binding import Actor
from handlers.core.phone import Phone
from tests.support.processes import run_command
from tests.support.world import service_env

STUDENT = Actor(who="2021001", source="127.0.0.1")


def _run(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_command(service_env(9) | {"WECOM_BIND_STORE_URL": store_url}, *args)


@pytest.fixture
async def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = await open_store(url)
    try:
        claim = await store.claim_phone("2021001", Phone("13800000001"), lease=60, actor=STUDENT)
        await store.commit_claim(claim)
        await store.inbox_append("k", "subscribe", "<xml/>")
        [item] = await store.inbox_take(1, lease=60)
        await store.inbox_dead(item.id, "boom")
    finally:
        await store.close()
    return url


async def test_binding_show_masks_the_phone(store_url: str) -> None:
    result = _run(store_url, "binding", "show", "2021001")
    assert result.returncode == 0, result.stderr
    assert "member 2021001" in result.stdout
    assert "138****0001" in result.stdout
    assert "13800000001" not in result.stdout
    assert _run(store_url, "binding", "show", "nobody").returncode == 1


@pytest.mark.parametrize("typed", ["13800000001", "+86 138-0000-0001", "１３８０００００００１", "13８00000001"])
async def test_binding_phone_finds_the_holder_of_a_phone_as_typed(store_url: str, typed: str) -> None:
    result = _run(store_url, "binding", "phone", typed)
    assert result.returncode == 0, result.stderr
    assert "member 2021001" in result.stdout
    assert "13800000001" not in result.stdout


def test_binding_phone_reads_the_phone_from_stdin(store_url: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WECOM_BIND_")}
    env.update(service_env(9))
    env["WECOM_BIND_STORE_URL"] = store_url
    result = subprocess.run(
        [sys.executable, "-m", "callback_service", "binding", "phone", "-"],
        env=env, input="138 0000 0001\n", capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "member 2021001" in result.stdout


@pytest.mark.parametrize(("typed", "code"), [("13800000٠٠1", 2), ("12345", 2), ("13800000009", 1)])
async def test_binding_phone_refuses_other_scripts_and_says_when_free(store_url: str, typed: str, code: int) -> None:
    result = _run(store_url, "binding", "phone", typed)
    assert result.returncode == code
    assert "member 2021001" not in result.stdout
    assert typed not in result.stdout


async def test_binding_release_is_audited_and_frees_the_phone(store_url: str) -> None:
    result = _run(store_url, "binding", "release", "2021001", "--reason", "student asked by email")
    # WeCom is unreachable here: the store's release stands, and the command says what is left.
    assert result.returncode == 4, result.stderr
    assert "binding released in the store" in result.stdout
    store = await open_store(store_url)
    try:
        assert await store.get_binding("2021001") is None
        assert await store.get_binding_by_phone(Phone("13800000001")) is None
    finally:
        await store.close()
    audit = _run(store_url, "audit", "--member", "2021001")
    assert "student asked by email" in audit.stdout
    assert "13800000001" not in audit.stdout


async def test_inbox_status_and_retry_dead(store_url: str) -> None:
    status = _run(store_url, "inbox", "status")
    assert "dead 1" in status.stdout
    assert "boom" in status.stdout
    assert "1 dead letter(s) requeued" in _run(store_url, "inbox", "retry-dead").stdout
    assert "pending 1  leased 0  dead 0" in _run(store_url, "inbox", "status").stdout
