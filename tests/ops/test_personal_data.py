"""Data requests (PIPL): export and erasure of one student, and the audit log's retention; both backends."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from callback_service.ops.personal_data import (
    DAY,
    RetentionError,
    erase_student,
    export_student,
    prune_audit,
)
from callback_service.store import open_store
from callback_service.store.sessions import sessions_of
from callback_service.web.pages.session import SessionStore
from handlers.core.binding import Actor, AuditAction, BindingState, DirectoryEntry
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from tests.store.support import FakeClock
from tests.support.callbacks import event_xml
from tests.support.world import service_env

ADMIN = Actor(who="admin:ops", source="cli: ticket 42")
STUDENT = Actor(who="2021001", source="127.0.0.1")
RETENTION = 30


async def _student(store: Store, clock: FakeClock) -> SessionStore:
    """2021001: in the directory, bound and followed, logged in twice; history 40 days long."""
    await store.directory_upsert([DirectoryEntry("2021001", "张三", "管理学院", Phone("13800000001")),
                                  DirectoryEntry("2021002", "李四", "管理学院", Phone("13800000002"))])
    await store.commit_claim(await store.claim_phone("2021001", Phone("13800000001"), lease=60, actor=STUDENT))
    clock.advance(40 * DAY)
    await store.follow("2021001", "openid-zhangsan", actor=STUDENT)
    sessions = SessionStore(kv=store, secret="s" * 40, secure=False, ttl=1800)
    for _ in range(2):
        await sessions.start(web.Response(), previous=None, member_id="2021001", name="张三",
                             cas_mobile=Phone("13800000001"))
    await sessions.start(web.Response(), previous=None, member_id="2021002", name="李四", cas_mobile=None)
    # An event about each student that kept failing: dead letters.
    for member in ("2021001", "2021002"):
        assert await store.inbox_append(f"dedup-{member}", "subscribe", event_xml("subscribe", member, create_time=1))
    for item in await store.inbox_take(10, lease=30):
        await store.inbox_dead(item.id, "gave up")
    return sessions


async def test_the_export_holds_everything_about_the_student_and_is_audited(
    store: Store, clock: FakeClock
) -> None:
    await _student(store, clock)
    data = await export_student(store, "2021001", now=clock(), actor=ADMIN)
    json.dumps(data, ensure_ascii=False)  # it prints as JSON
    assert data["directory"] == {"member_id": "2021001", "name": "张三", "department": "管理学院",
                                 "phone": "13800000001"}
    assert data["binding"]["phone"] == "13800000001"
    assert data["binding"]["state"] == "followed"
    assert data["binding"]["openid"] == "openid-zhangsan"
    assert data["sessions"] == [{"name": "张三", "cas_mobile": "13800000001"}] * 2
    assert [(d["event"], d["error"]) for d in data["dead_letters"]] == [("subscribe", "gave up")]
    assert [record["action"] for record in data["audit"]] == ["follow", "bind", "claim"]
    [latest, *_] = await store.audit_list(member_id="2021001")
    assert (latest.action, latest.who) == (AuditAction.EXPORT, ADMIN.who)


async def test_the_erasure_leaves_only_masked_audit_records_within_retention(
    store: Store, clock: FakeClock
) -> None:
    await _student(store, clock)
    erasure = await erase_student(store, "2021001", now=clock(), retention_days=RETENTION, actor=ADMIN)
    assert (erasure.binding, erasure.directory, erasure.sessions, erasure.dead_letters, erasure.audit_records) == (
        True, True, 2, 1, 2
    )

    assert await store.get_binding("2021001") is None
    assert await store.get_binding_by_phone(Phone("13800000001")) is None
    assert await store.get_binding_by_openid("openid-zhangsan") is None
    assert await store.directory_get("2021001") is None
    assert await sessions_of(store, "2021001") == []
    # The other student's data is untouched.
    assert await store.directory_get("2021002") is not None
    assert len(await sessions_of(store, "2021002")) == 1
    assert [item.dedup_key for item in await store.inbox_list_dead()] == ["dedup-2021002"]
    # Kept: the follow (within the 30 days), the removal and the erasure; the claim and bind are gone.
    kept = await store.audit_list(member_id="2021001")
    assert [record.action for record in kept] == [AuditAction.ERASE, AuditAction.DELETE, AuditAction.FOLLOW]
    assert all(record.phone_masked in (None, "138****0001") for record in kept)
    assert all("13800000001" not in record.detail for record in kept)
    assert await store.integrity_problems() == []
    # The phone is free for another student.
    claim = await store.claim_phone("2021002", Phone("13800000001"), lease=60, actor=STUDENT)
    assert (await store.commit_claim(claim)).state is BindingState.BOUND

    again = await export_student(store, "2021001", now=clock(), actor=ADMIN)
    assert (again["directory"], again["binding"], again["sessions"], again["dead_letters"]) == (None, None, [], [])


async def test_prune_refuses_a_date_inside_the_retention_and_deletes_before_one_outside(
    store: Store, clock: FakeClock
) -> None:
    await _student(store, clock)
    today = dt.datetime.fromtimestamp(clock(), tz=dt.UTC).date()
    with pytest.raises(RetentionError, match="retention period of 30 days"):
        await prune_audit(store, today - dt.timedelta(days=29), now=clock(), retention_days=RETENTION)
    assert len(await store.audit_list(member_id="2021001")) == 3
    assert await prune_audit(store, today - dt.timedelta(days=31), now=clock(), retention_days=RETENTION) == 2
    assert [r.action for r in await store.audit_list(member_id="2021001")] == [AuditAction.FOLLOW]


def _cli(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WECOM_BIND_")}
    env |= service_env(9, store_url=store_url)
    env["WECOM_BIND_AUDIT_RETENTION_DAYS"] = str(RETENTION)
    return subprocess.run([sys.executable, "-m", "callback_service", *args],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_the_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = await open_store(url)
    try:
        await store.directory_upsert([DirectoryEntry("2021001", "张三", "管理学院", Phone("13800000001"))])
        await store.commit_claim(await store.claim_phone("2021001", Phone("13800000001"), lease=60, actor=STUDENT))
    finally:
        await store.close()

    export = _cli(url, "student", "export", "2021001", "--reason", "工单 7")
    assert export.returncode == 0, export.stderr
    assert json.loads(export.stdout)["binding"]["phone"] == "13800000001"
    inside = _cli(url, "audit", "prune", "--before", dt.date.today().isoformat())
    assert inside.returncode == 2
    assert "retention" in inside.stderr
    bad = _cli(url, "audit", "prune", "--before", "yesterday")
    assert bad.returncode == 2
    assert "YYYY-MM-DD" in bad.stderr
    outside = _cli(url, "audit", "prune", "--before", "2000-01-01")
    assert outside.returncode == 0
    assert "0 audit record(s)" in outside.stdout
    erase = _cli(url, "student", "erase", "2021001")
    assert erase.returncode == 0, erase.stderr
    assert "binding removed" in erase.stdout
    listing = _cli(url, "audit", "--member", "2021001")
    assert listing.returncode == 0
    assert "erase" in listing.stdout
    assert "export" in listing.stdout
    assert "13800000001" not in listing.stdout


def _checkpointed_bytes(path: Path) -> bytes:
    """The database file and its WAL, after a checkpoint."""
    with sqlite3.connect(path) as checkpoint:
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpoint.close()
    return path.read_bytes() + Path(f"{path}-wal").read_bytes()


async def test_an_erased_phone_is_not_left_in_the_sqlite_file_or_its_wal(tmp_path: Path) -> None:
    # The store turns secure_delete on itself: Debian's SQLite is built with it on by default, many
    # other builds (and the one CPython's macOS and Windows installers carry) are not.
    path = tmp_path / "store.db"
    clock = FakeClock()
    store = await open_store(f"sqlite:///{path}", clock=clock)
    try:
        await _student(store, clock)
        await erase_student(store, "2021001", now=clock(), retention_days=RETENTION, actor=ADMIN)
        kept = _checkpointed_bytes(path)
    finally:
        await store.close()
    assert b"13800000001" not in kept
    assert b"13800000002" in kept  # the other student's phone is still there: the scan can see phones
