"""`wecom-bind backup PATH`: SQLite's online backup, taken while the store is being written."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from callback_service.ops.backup import backup_sqlite
from callback_service.store import open_store
from handlers.core.binding import Actor, BindingState
from handlers.core.phone import Phone
from tests.support.processes import run_command
from tests.support.world import service_env

STUDENT = Actor(who="student", source="127.0.0.1")


def _cli(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_command(service_env(9, store_url=store_url), *args)


async def _bind(url: str, member: str, phone: str) -> None:
    store = await open_store(url)
    try:
        await store.commit_claim(await store.claim_phone(member, Phone(phone), lease=60, actor=STUDENT))
    finally:
        await store.close()


async def test_a_backup_taken_under_writes_is_one_consistent_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = await open_store(url)
    try:
        stop, underway = asyncio.Event(), asyncio.Event()

        async def writer() -> int:
            count = 0
            while not stop.is_set() and count < 2000:  # bounded
                member = f"20{count:05d}"
                await store.commit_claim(
                    await store.claim_phone(member, Phone(f"1380{count:07d}"), lease=60, actor=STUDENT)
                )
                count += 1
                if count == 50:
                    underway.set()
            return count

        task = asyncio.create_task(writer())
        await asyncio.wait_for(underway.wait(), 30)  # the writer is under way
        size = await asyncio.to_thread(backup_sqlite, tmp_path / "live.db", tmp_path / "copy.db",
                                       pages_per_step=1)
        stop.set()
        written = await task
    finally:
        await store.close()
    assert size > 0
    copy = await open_store(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        bindings = await copy.list_bindings()
        assert await copy.integrity_problems() == []
        assert 0 < len(bindings) <= written
        # A snapshot may fall between a claim and its commit: pending then, never half written.
        assert {binding.state for binding in bindings} <= {BindingState.BOUND, BindingState.PENDING}
    finally:
        await copy.close()


async def test_the_command_copies_the_store_and_refuses_to_overwrite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    await _bind(url, "2021001", "13800000001")
    target = tmp_path / "backup.db"
    done = await asyncio.to_thread(_cli, url, "backup", str(target))
    assert done.returncode == 0, done.stderr
    assert str(target) in done.stdout
    copy = await open_store(f"sqlite:///{target}")
    try:
        binding = await copy.get_binding("2021001")
        assert binding is not None
        assert binding.phone == "13800000001"
    finally:
        await copy.close()

    before = target.read_bytes()
    again = await asyncio.to_thread(_cli, url, "backup", str(target))
    assert again.returncode == 2
    assert "exists" in again.stderr
    assert target.read_bytes() == before


async def test_the_command_sends_redis_to_its_own_files(tmp_path: Path) -> None:
    done = await asyncio.to_thread(_cli, "redis://127.0.0.1:9/0", "backup", str(tmp_path / "b.db"))
    assert done.returncode == 2
    assert "AOF" in done.stderr
    assert not (tmp_path / "b.db").exists()


async def test_a_store_whose_path_holds_uri_characters_is_copied_whole(tmp_path: Path) -> None:
    # '#' and '?' would end the path of an unquoted file: URI, '%' would start an escape.
    folder = tmp_path / "a#b?c%41 d"
    folder.mkdir()
    url = f"sqlite:///{folder / 'live#1.db'}"
    await _bind(url, "2021001", "13800000001")
    target = tmp_path / "backup.db"
    done = await asyncio.to_thread(_cli, url, "backup", str(target))
    assert done.returncode == 0, done.stderr
    copy = await open_store(f"sqlite:///{target}")
    try:
        binding = await copy.get_binding("2021001")
        assert binding is not None
        assert binding.phone == "13800000001"
        assert await copy.integrity_problems() == []
    finally:
        await copy.close()
    # Nothing was created at a path cut short at the '#' or the '?'.
    assert sorted(os.listdir(tmp_path)) == ["a#b?c%41 d", "backup.db"]
