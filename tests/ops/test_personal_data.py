"""Data requests (PIPL): export and erasure of one student, and the audit log's retention; both backends."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from callback_service.admin.views import UPLOAD_PREFIX
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
from handlers.core.member import MemberSeen, MemberStatus
from handlers.core.phone import Phone
from handlers.core.sms_code import member_counters, phone_counters, phone_tag
from handlers.usecases.binding_flow import created_key, invite_key
from handlers.usecases.callbacks import welcome_key
from handlers.usecases.contracts import Store
from handlers.usecases.sms_proof import SmsProof
from tests.store.support import FakeClock
from tests.support.callbacks import event_xml
from tests.support.processes import run_command
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
    # The WeChat the student followed as is named masked in the records kept.
    assert all("openid-zhangsan" not in record.detail for record in kept)
    assert [r.detail for r in kept if r.action is AuditAction.FOLLOW] == ["openid open****"]
    assert erasure.openids == 1
    assert await store.integrity_problems() == []
    # The phone is free for another student.
    claim = await store.claim_phone("2021002", Phone("13800000001"), lease=60, actor=STUDENT)
    assert (await store.commit_claim(claim)).state is BindingState.BOUND

    again = await export_student(store, "2021001", now=clock(), actor=ADMIN)
    assert (again["directory"], again["binding"], again["sessions"], again["dead_letters"]) == (None, None, [], [])


async def test_the_erasure_masks_the_students_wechat_in_another_members_conflict_only(
    store: Store, clock: FakeClock
) -> None:
    await _student(store, clock)
    await store.commit_claim(await store.claim_phone("2021002", Phone("13800000002"), lease=60, actor=STUDENT))
    await store.follow("2021002", "openid-lisi-0002", actor=STUDENT)
    # 李四 was refused: 张三's WeChat held the place. And 李四's WeChat was refused as 张三 (in the
    # wording admission used before, without "openid" before the joining WeChat): not 张三's own.
    await store.audit_conflict(
        "2021002", None, "admission refused: openid openid-zhangsan follows as member 2021001", actor=STUDENT
    )
    await store.audit_conflict(
        "2021001", None, "admission refused: member followed as openid openid-zhangsan, joining as "
        "openid-lisi-0002", actor=STUDENT,
    )
    erasure = await erase_student(store, "2021001", now=clock(), retention_days=RETENTION, actor=ADMIN)
    assert erasure.openids == 2
    everything = await store.audit_list(limit=1000)
    assert all("openid-zhangsan" not in record.detail for record in everything)
    lisi = await store.audit_list(member_id="2021002")
    assert [r.detail for r in lisi if r.action is AuditAction.CONFLICT] == [
        "admission refused: openid open**** follows as member 2021001"
    ]
    # 李四's own WeChat stays named in 李四's records; only 张三's records mask it.
    assert [r.detail for r in lisi if r.action is AuditAction.FOLLOW] == ["openid openid-lisi-0002"]
    zhangsan = await store.audit_list(member_id="2021001")
    assert all("openid-lisi-0002" not in record.detail for record in zhangsan)
    assert await store.integrity_problems() == []


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


class _Provider:
    """The SMS provider's side: takes the code and keeps it (the emulator's tests are in tests/sms)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Phone, str]] = []

    async def send_code(self, phone: Phone, code: str) -> None:
        self.sent.append((phone, code))


class _Counters:
    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        pass


SMS_SECRET = b"c" * 40


@pytest.fixture(params=["sqlite", "redis", "memory"])
def any_store(request: pytest.FixtureRequest) -> Store:
    """Each backend, and the in-memory store."""
    backend: Store = request.getfixturevalue(f"{request.param}_store")
    return backend


async def _traces(store: Store, clock: FakeClock) -> list[str]:
    """What the rest of the service leaves of 2021001 beside the binding: WeCom's word (sync), the
    SMS proof's codes to two phones in two sessions, the flow's and the callbacks' memories, a page's
    result, the console's upload preview. Returns the kv keys written."""
    await store.record_members([MemberSeen("2021001", MemberStatus.ACTIVATED, clock(), "sync"),
                                MemberSeen("2021002", MemberStatus.ACTIVATED, clock(), "sync")])
    proof = SmsProof(store=store, sender=_Provider(), secret=SMS_SECRET, clock=clock, counters=_Counters())
    await proof.send(login="login-a", member_id="2021001", phone=Phone("13900000123"), address="10.0.0.1")
    clock.advance(61)
    await proof.send(login="login-b", member_id="2021001", phone=Phone("13900000124"), address="10.0.0.1")
    await proof.send(login="login-c", member_id="2021002", phone=Phone("13900000125"), address="10.0.0.1")
    memories = [created_key("2021001"), invite_key("2021001"), welcome_key("2021001"),
                "rate:bind:student:2021001", "bind-result:2021001:form-1", "bind-result:2021001:form-2"]
    for key in memories:
        await store.kv_set(key, "1", ttl=3600)
    await store.kv_set("bind-result:20210011:form-1", "another student's", ttl=3600)
    # A directory upload awaiting 确认导入 in the console: the whole file, this student's row too.
    upload = UPLOAD_PREFIX + "token-1"
    await store.kv_set(upload, "admin\nstudents.csv\nauto\n" + base64.b64encode(
        "学号,姓名,院系,手机\n2021001,张三,管理学院,13800000001\n".encode()).decode(), ttl=1800)
    tags = [phone_tag(SMS_SECRET, Phone(p)) for p in ("13900000123", "13900000124")]
    return [*memories, upload, *member_counters("2021001"), *(key for tag in tags for key in phone_counters(tag))]


async def test_the_erasure_takes_what_sync_the_sms_proof_and_the_pages_left(
    any_store: Store, clock: FakeClock
) -> None:
    store = any_store
    await _student(store, clock)
    keys = await _traces(store, clock)
    # All live but the first phone's minute counter (a minute went by; the student's counts the second).
    assert sum(value is None for value in await store.kv_get_many(keys)) == 1
    export = await export_student(store, "2021001", now=clock(), actor=ADMIN)
    assert export["wecom_status"]["status"] == "activated"
    assert export["sms"]["codes_today"] == 2
    assert export["sms"]["phones"] == [{"phone": "139****0123", "codes_today": 1},
                                       {"phone": "139****0124", "codes_today": 1}]
    assert [c["phone"] for c in export["sms"]["codes_pending"]] == ["139****0123", "139****0124"]
    assert set(export["remembered"]) == {"created_by_flow", "invited", "welcomed", "submits_counted"}
    assert "13900000123" not in json.dumps(export)

    erasure = await erase_student(store, "2021001", now=clock(), retention_days=RETENTION, actor=ADMIN)
    assert (erasure.member_seen, erasure.sms_phones, erasure.kv_entries) == (True, 2, 7)
    assert erasure.scrubbed
    assert await store.kv_get_many(keys) == [None] * len(keys)
    assert await store.member_seen("2021001") is None
    again = await export_student(store, "2021001", now=clock(), actor=ADMIN)
    assert (again["wecom_status"], again["sms"], again["remembered"]) == (None, None, {})
    # The other student's traces stay.
    assert await store.member_seen("2021002") is not None
    assert await store.kv_get("bind-result:20210011:form-1") is not None
    assert (await store.kv_get(member_counters("2021002")[1])) == "1"


async def test_a_student_known_only_to_sync_can_be_erased(any_store: Store, clock: FakeClock) -> None:
    await any_store.record_members([MemberSeen("2021007", None, clock(), "sync")])
    export = await export_student(any_store, "2021007", now=clock(), actor=ADMIN)
    assert export["wecom_status"] == {"status": None, "seen_at": export["wecom_status"]["seen_at"],
                                      "source": "sync"}
    assert (await erase_student(any_store, "2021007", now=clock(), retention_days=RETENTION,
                                actor=ADMIN)).member_seen
    assert await any_store.member_seen("2021007") is None


def _cli(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = service_env(9, store_url=store_url) | {"WECOM_BIND_AUDIT_RETENTION_DAYS": str(RETENTION)}
    return run_command(env, *args)


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
    assert "sqlite: WAL checkpointed and truncated" in erase.stdout
    listing = _cli(url, "audit", "--member", "2021001")
    assert listing.returncode == 0
    assert "erase" in listing.stdout
    assert "export" in listing.stdout
    assert "13800000001" not in listing.stdout


def _file_bytes(path: Path) -> bytes:
    """The database file and its WAL as they are (the erasure checkpoints the WAL itself)."""
    wal = Path(f"{path}-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def test_an_erased_phone_is_not_left_in_the_sqlite_file_or_its_wal(tmp_path: Path) -> None:
    # The store turns secure_delete on itself: Debian's SQLite is built with it on by default, many
    # other builds (and the one CPython's macOS and Windows installers carry) are not.
    path = tmp_path / "store.db"
    clock = FakeClock()
    store = await open_store(f"sqlite:///{path}", clock=clock)
    try:
        await _student(store, clock)
        await erase_student(store, "2021001", now=clock(), retention_days=RETENTION, actor=ADMIN)
        kept = _file_bytes(path)
    finally:
        await store.close()
    assert b"13800000001" not in kept
    assert b"openid-zhangsan" not in kept
    assert b"13800000002" in kept  # the other student's phone is still there: the scan can see phones
