"""The store contract's reads for the admin console, on both backends and the in-memory store: the
whole directory, and the audit records of some actions since a time."""

from __future__ import annotations

import pytest

from handlers.core.binding import Actor, AuditAction, DirectoryEntry
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from tests.store.support import FakeClock

STUDENT = Actor(who="student", source="web 127.0.0.1")
WECOM = Actor(who="wecom", source="callback")
LEASE = 60.0


@pytest.fixture(params=["sqlite", "redis", "memory"])
def store(request: pytest.FixtureRequest) -> Store:
    """The store under test: each backend, and the in-memory store that the use cases' tests run on."""
    backend: Store = request.getfixturevalue(f"{request.param}_store")
    return backend


async def test_directory_list_is_every_entry_by_student_id(store: Store) -> None:
    assert await store.directory_list() == []
    entries = [
        DirectoryEntry("2019003", "王五", "管理学院", None),
        DirectoryEntry("2019001", "张三", "机械学院", Phone("13800138001")),
        DirectoryEntry("2019002", "李四", "电子学院", None),
    ]
    await store.directory_upsert(entries)
    await store.directory_upsert([DirectoryEntry("2019002", "李四", "化学学院", Phone("13800138002"))])
    assert await store.directory_list() == [
        entries[1],
        DirectoryEntry("2019002", "李四", "化学学院", Phone("13800138002")),
        entries[0],
    ]
    await store.directory_delete("2019001")
    assert [entry.member_id for entry in await store.directory_list()] == ["2019002", "2019003"]


async def test_audit_since_reads_the_actions_asked_for_from_a_time_on(store: Store, clock: FakeClock) -> None:
    claim = await store.claim_phone("m1", Phone("13800138001"), lease=LEASE, actor=STUDENT)
    await store.commit_claim(claim)
    clock.advance(100)
    start = clock()
    await store.follow("m1", "openid-1", actor=WECOM)
    await store.audit_conflict("m2", Phone("13800138001"), "phone_taken: store", actor=STUDENT)
    clock.advance(10)
    claim = await store.claim_phone("m3", Phone("13800138003"), lease=LEASE, actor=STUDENT)
    await store.commit_claim(claim)

    found = await store.audit_since(start, actions=[AuditAction.BIND, AuditAction.FOLLOW])
    assert [(r.action, r.member_id) for r in found] == [(AuditAction.FOLLOW, "m1"), (AuditAction.BIND, "m3")]
    assert found[0].at == start
    assert found[1].phone_masked == "138****8003"
    conflicts = await store.audit_since(start, actions=[AuditAction.CONFLICT])
    assert [(r.member_id, r.detail, r.who) for r in conflicts] == [("m2", "phone_taken: store", "student")]
    assert await store.audit_since(clock() + 1, actions=[AuditAction.BIND]) == []
    assert await store.audit_since(0, actions=[]) == []
    everything = await store.audit_since(0, actions=list(AuditAction))
    assert [r.id for r in everything] == sorted(r.id for r in everything)
    assert len(everything) == len(await store.audit_list(limit=1000))
