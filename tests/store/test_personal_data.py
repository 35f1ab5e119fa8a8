"""The store's part of data requests (PIPL): directory removal, audit notes, audit pruning; both backends."""

from __future__ import annotations

from handlers.core.binding import Actor, AuditAction, DirectoryEntry
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from tests.store.support import FakeClock

ADMIN = Actor(who="admin:ops", source="cli: data request")
STUDENT = Actor(who="2021001", source="127.0.0.1")


async def test_a_directory_entry_is_removed_once(store: Store) -> None:
    await store.directory_upsert([DirectoryEntry("2021001", "张三", "管理学院", Phone("13800000001")),
                                  DirectoryEntry("2021002", "李四", "管理学院", None)])
    assert await store.directory_delete("2021001") is True
    assert await store.directory_get("2021001") is None
    assert await store.directory_delete("2021001") is False
    assert await store.directory_get("2021002") is not None
    assert await store.directory_count() == 1


async def test_an_audit_note_is_recorded_without_a_phone(store: Store) -> None:
    await store.audit_note("2021001", AuditAction.EXPORT, "data request: export", actor=ADMIN)
    [record] = await store.audit_list(member_id="2021001")
    assert (record.action, record.who, record.source) == (AuditAction.EXPORT, ADMIN.who, ADMIN.source)
    assert record.phone_masked is None
    assert record.detail == "data request: export"
    assert await store.get_binding("2021001") is None


async def _history(store: Store, clock: FakeClock) -> float:
    """Old records of two members, then a newer one of each; returns the time between them."""
    await store.commit_claim(await store.claim_phone("2021001", Phone("13800000001"), lease=60, actor=STUDENT))
    await store.audit_conflict("2021002", Phone("13800000001"), "I1: taken", actor=STUDENT)
    clock.advance(100)
    between = clock()
    clock.advance(100)
    await store.unfollow("2021001", actor=STUDENT)  # a no-op for a bound member: no record
    await store.audit_note("2021001", AuditAction.EXPORT, "newer", actor=ADMIN)
    await store.audit_note("2021002", AuditAction.EXPORT, "newer", actor=ADMIN)
    return between


async def test_prune_deletes_only_what_is_older_than_the_time_given(store: Store, clock: FakeClock) -> None:
    between = await _history(store, clock)
    before = await store.audit_list(limit=1000)
    old = [record for record in before if record.at < between]
    assert len(old) == 3  # claim, bind, conflict
    assert await store.audit_prune(between) == 3
    after = await store.audit_list(limit=1000)
    assert [record.id for record in after] == [record.id for record in before if record.at >= between]
    for member in ("2021001", "2021002"):
        assert [r.detail for r in await store.audit_list(member_id=member)] == ["newer"]
    assert await store.audit_prune(between) == 0


async def test_prune_of_one_member_leaves_the_others(store: Store, clock: FakeClock) -> None:
    between = await _history(store, clock)
    assert await store.audit_prune(between, member_id="2021001") == 2
    assert [r.detail for r in await store.audit_list(member_id="2021001")] == ["newer"]
    assert len(await store.audit_list(member_id="2021002")) == 2
    everything = await store.audit_list(limit=1000)
    assert sorted(r.member_id for r in everything) == ["2021001", "2021002", "2021002"]


async def test_a_large_prune_takes_every_old_record(store: Store, clock: FakeClock) -> None:
    for number in range(1203):
        await store.audit_note(f"m{number % 7}", AuditAction.EXPORT, str(number), actor=ADMIN)
    clock.advance(10)
    await store.audit_note("m0", AuditAction.EXPORT, "kept", actor=ADMIN)
    assert await store.audit_prune(clock() - 5) == 1203
    assert [r.detail for r in await store.audit_list(limit=5000)] == ["kept"]
    assert [r.detail for r in await store.audit_list(member_id="m0")] == ["kept"]
    assert await store.audit_list(member_id="m1") == []
