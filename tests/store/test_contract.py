"""The store contract, run on both backends and on the tests' in-memory store: every operation, its
errors, and expiry by the clock."""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict

import pytest

from handlers.core.binding import (
    AccountFollowed,
    Actor,
    AuditAction,
    Binding,
    BindingState,
    ClaimInProgress,
    ClaimLost,
    DirectoryEntry,
    InboxStats,
    OpenidConflict,
    PhoneTaken,
)
from handlers.core.guide import ErrorCode
from handlers.core.member import MemberSeen, MemberStatus
from handlers.core.phone import InvalidPhone, Phone
from handlers.usecases.contracts import Store, StoreUnavailable
from tests.store.support import FakeClock

STUDENT = Actor(who="student", source="web 127.0.0.1")
WECOM = Actor(who="wecom", source="callback")
P1, P2, P3 = Phone("13800138001"), Phone("13800138002"), Phone("13800138003")
LEASE = 60.0


@pytest.fixture(params=["sqlite", "redis", "memory"])
def store(request: pytest.FixtureRequest) -> Store:
    """The store under test: each backend, and the in-memory store that the use cases' tests run on."""
    backend: Store = request.getfixturevalue(f"{request.param}_store")
    return backend


async def consistent(store: Store) -> None:
    """No broken invariant, and no full phone anywhere in the audit log."""
    assert await store.integrity_problems() == []
    for record in await store.audit_list(limit=10_000):
        assert not re.search(r"\d{11}", repr(asdict(record))), record


async def bind(store: Store, member: str, phone: str) -> None:
    """Claim and commit, the normal way to bind."""
    await store.commit_claim(await store.claim_phone(member, Phone(phone), lease=LEASE, actor=STUDENT))


# lifecycle


async def test_ping_answers_while_open_and_not_once_closed(store: Store) -> None:
    await store.ping()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()


# school directory


async def test_directory_upsert_get_count(store: Store) -> None:
    entries = [
        DirectoryEntry("2019001", "张三", "机械学院", P1),
        DirectoryEntry("2019002", "李四", "电子学院", None),
    ]
    assert await store.directory_upsert(entries) == 2
    assert await store.directory_get("2019001") == entries[0]
    assert await store.directory_get("2019002") == entries[1]
    assert await store.directory_get("nobody") is None
    assert await store.directory_count() == 2
    await store.directory_upsert([DirectoryEntry("2019002", "李四", "管理学院", P2)])
    assert await store.directory_get("2019002") == DirectoryEntry("2019002", "李四", "管理学院", P2)
    assert await store.directory_count() == 2
    assert await store.directory_upsert([]) == 0
    assert await store.directory_list() == [entries[0], DirectoryEntry("2019002", "李四", "管理学院", P2)]


# WeCom's word on each member


async def test_record_members_upserts_and_counts_status_changes(store: Store, clock: FakeClock) -> None:
    t = clock()
    joined = MemberSeen("m1", MemberStatus.ACTIVATED, t, "sync")
    gone = MemberSeen("m2", None, t, "sync")
    assert await store.member_seen("m1") is None
    assert await store.record_members([joined, gone]) == 2
    assert await store.member_seen("m1") == joined
    assert await store.member_seen("m2") == gone
    # Idempotent: the same word again, or a newer one with the same status, changes no status.
    assert await store.record_members([joined, gone]) == 0
    later = MemberSeen("m1", MemberStatus.ACTIVATED, t + 5, "login")
    assert await store.record_members([later]) == 0
    assert await store.member_seen("m1") == later
    disabled = MemberSeen("m1", MemberStatus.DISABLED, t + 10.125, "unsubscribe")
    assert await store.record_members([disabled]) == 1
    assert await store.member_seen("m1") == disabled
    assert await store.list_members_seen() == [disabled, gone]
    assert await store.record_members([]) == 0


async def test_an_older_word_never_undoes_a_newer_one(store: Store, clock: FakeClock) -> None:
    t = clock()
    newer = MemberSeen("m1", MemberStatus.QUIT, t, "sync")
    await store.record_members([newer])
    assert await store.record_members([MemberSeen("m1", MemberStatus.ACTIVATED, t - 1, "subscribe")]) == 0
    assert await store.member_seen("m1") == newer


async def test_within_one_call_a_members_newest_record_counts(store: Store, clock: FakeClock) -> None:
    t = clock()
    first = MemberSeen("m1", MemberStatus.NOT_ACTIVATED, t, "sync")
    newest = MemberSeen("m1", MemberStatus.ACTIVATED, t + 1, "subscribe")
    tie = MemberSeen("m1", MemberStatus.DISABLED, t + 1, "admin")
    assert await store.record_members([newest, first]) == 1
    assert await store.member_seen("m1") == newest
    assert await store.record_members([newest, tie]) == 1
    assert await store.member_seen("m1") == tie


async def test_record_members_takes_member_seen_records_only(store: Store, clock: FakeClock) -> None:
    with pytest.raises(TypeError):
        await store.record_members([("m1", 1, clock(), "sync")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="source"):
        MemberSeen("m1", MemberStatus.ACTIVATED, clock(), "rumour")
    assert await store.list_members_seen() == []


async def test_a_members_record_is_forgotten_alone(store: Store, clock: FakeClock) -> None:
    kept = MemberSeen("m10", MemberStatus.ACTIVATED, clock(), "sync")
    await store.record_members([MemberSeen("m1", MemberStatus.ACTIVATED, clock(), "sync"), kept])
    assert await store.forget_member_seen("m1") is True
    assert await store.member_seen("m1") is None
    assert await store.list_members_seen() == [kept]
    assert await store.forget_member_seen("m1") is False
    # Forgotten, not shadowed: an older word is taken again, as for a member never heard of.
    assert await store.record_members([MemberSeen("m1", MemberStatus.DISABLED, clock() - 60, "sync")]) == 1


# claims


async def test_claim_then_commit_binds(store: Store) -> None:
    claim = await store.claim_phone("m1", Phone.parse("+86 138-0013-8001"), lease=LEASE, actor=STUDENT)
    assert claim.phone == P1
    assert not claim.already_bound
    pending = await store.get_binding("m1")
    assert pending is not None
    assert pending.state is BindingState.PENDING
    assert pending.lease_expires_at == claim.lease_expires_at
    assert await store.get_binding_by_phone(P1) == pending
    bound = await store.commit_claim(claim)
    assert bound.state is BindingState.BOUND
    assert bound.phone == P1
    assert bound.lease_expires_at is None
    assert await store.get_binding("m1") == bound
    assert await store.get_binding_by_phone(P1) == bound
    actions = [r.action for r in await store.audit_list(member_id="m1")]
    assert actions == [AuditAction.BIND, AuditAction.CLAIM]
    await consistent(store)


async def test_claim_refuses_bad_phone_and_lease(store: Store) -> None:
    with pytest.raises(InvalidPhone):
        await store.claim_phone("m1", Phone("12345"), lease=LEASE, actor=STUDENT)
    with pytest.raises(ValueError, match="lease"):
        await store.claim_phone("m1", P1, lease=0, actor=STUDENT)
    assert await store.get_binding("m1") is None


async def test_phone_bound_by_another_is_taken(store: Store) -> None:
    await bind(store, "m1", P1)
    with pytest.raises(PhoneTaken) as caught:
        await store.claim_phone("m2", P1, lease=LEASE, actor=STUDENT)
    assert caught.value.code is ErrorCode.PHONE_TAKEN
    assert P1 not in str(caught.value)
    assert await store.get_binding("m2") is None
    await consistent(store)


async def test_a_stale_holder_loses_the_phone_wecom_gives_to_nobody(store: Store) -> None:
    await bind(store, "m1", P1)
    assert await store.release_stale_phone(P1, claimant="m2", wecom_holder=None, actor=STUDENT)
    assert await store.get_binding("m1") is None
    assert await store.get_binding_by_phone(P1) is None
    [lost, *_] = await store.audit_list(member_id="m1")
    assert lost.action is AuditAction.PHONE_LOST
    assert "user/getuserid" in lost.detail
    await bind(store, "m2", P1)
    await consistent(store)


async def test_the_store_right_about_a_phones_holder_keeps_it(store: Store) -> None:
    await bind(store, "m1", P1)
    assert not await store.release_stale_phone(P1, claimant="m2", wecom_holder="m1", actor=STUDENT)
    holder = await store.get_binding_by_phone(P1)
    assert holder is not None
    assert holder.member_id == "m1"
    await consistent(store)


async def test_phone_claimed_by_another_is_taken_until_the_lease_runs_out(
    store: Store, clock: FakeClock
) -> None:
    first = await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    with pytest.raises(PhoneTaken):
        await store.claim_phone("m2", P1, lease=LEASE, actor=STUDENT)
    clock.advance(LEASE)
    stale = await store.get_binding("m1")
    assert stale is not None
    assert stale.lease_expired(clock())
    assert await store.get_binding_by_phone(P1) is None
    second = await store.claim_phone("m2", P1, lease=LEASE, actor=STUDENT)
    assert await store.get_binding("m1") is None
    with pytest.raises(ClaimLost):
        await store.commit_claim(first)
    assert not await store.release_claim(first)
    await store.commit_claim(second)
    holder = await store.get_binding_by_phone(P1)
    assert holder is not None
    assert holder.member_id == "m2"
    actions = [r.action for r in await store.audit_list(member_id="m1")]
    assert actions == [AuditAction.CLAIM_EXPIRED, AuditAction.CLAIM]
    await consistent(store)


async def test_commit_after_the_lease_ran_out_when_nobody_took_the_phone(
    store: Store, clock: FakeClock
) -> None:
    claim = await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    clock.advance(LEASE * 2)
    bound = await store.commit_claim(claim)
    assert bound.state is BindingState.BOUND
    await consistent(store)


async def test_release_goes_back_to_nothing(store: Store) -> None:
    claim = await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    assert await store.release_claim(claim)
    assert await store.get_binding("m1") is None
    assert await store.get_binding_by_phone(P1) is None
    assert not await store.release_claim(claim)
    with pytest.raises(ClaimLost):
        await store.commit_claim(claim)
    await store.claim_phone("m2", P1, lease=LEASE, actor=STUDENT)
    await consistent(store)


async def test_rebind_holds_the_old_phone_until_commit(store: Store) -> None:
    await bind(store, "m1", P1)
    claim = await store.claim_phone("m1", P2, lease=LEASE, actor=STUDENT)
    assert claim.previous_phone == P1
    pending = await store.get_binding("m1")
    assert pending is not None
    assert (pending.state, pending.phone, pending.previous_phone) == (BindingState.PENDING, P2, P1)
    assert await store.get_binding_by_phone(P1) == pending
    with pytest.raises(PhoneTaken):
        await store.claim_phone("m2", P1, lease=LEASE, actor=STUDENT)
    bound = await store.commit_claim(claim)
    assert (bound.phone, bound.previous_phone) == (P2, None)
    assert await store.get_binding_by_phone(P1) is None
    await bind(store, "m2", P1)
    await consistent(store)


async def test_release_of_a_rebind_goes_back_to_the_old_phone(store: Store) -> None:
    await bind(store, "m1", P1)
    claim = await store.claim_phone("m1", P2, lease=LEASE, actor=STUDENT)
    assert await store.release_claim(claim)
    back = await store.get_binding("m1")
    assert back is not None
    assert (back.state, back.phone, back.previous_phone) == (BindingState.BOUND, P1, None)
    assert await store.get_binding_by_phone(P2) is None
    await consistent(store)


async def test_claiming_the_own_bound_phone_is_already_bound(store: Store) -> None:
    await bind(store, "m1", P1)
    before = await store.audit_list()
    claim = await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    assert claim.already_bound
    assert (await store.commit_claim(claim)).phone == P1
    assert await store.release_claim(claim)
    assert await store.audit_list() == before
    await consistent(store)


async def test_a_followed_member_cannot_claim_another_phone(store: Store) -> None:
    await bind(store, "m1", P1)
    await store.follow("m1", "openid-1", actor=WECOM)
    with pytest.raises(AccountFollowed) as caught:
        await store.claim_phone("m1", P2, lease=LEASE, actor=STUDENT)
    assert caught.value.code is ErrorCode.ACCOUNT_FOLLOWED
    again = await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    assert again.already_bound
    followed = await store.commit_claim(again)
    assert followed.state is BindingState.FOLLOWED
    assert await store.get_binding_by_phone(P2) is None
    await consistent(store)


async def test_one_live_claim_per_member(store: Store, clock: FakeClock) -> None:
    await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    with pytest.raises(ClaimInProgress):
        await store.claim_phone("m1", P2, lease=LEASE, actor=STUDENT)
    with pytest.raises(ClaimInProgress):
        await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    assert await store.get_binding_by_phone(P2) is None
    clock.advance(LEASE)
    claim = await store.claim_phone("m1", P2, lease=LEASE, actor=STUDENT)
    assert claim.previous_phone is None
    assert await store.get_binding_by_phone(P1) is None
    await store.commit_claim(claim)
    await consistent(store)


async def test_an_expired_rebind_falls_back_to_the_old_phone(store: Store, clock: FakeClock) -> None:
    await bind(store, "m1", P1)
    stale = await store.claim_phone("m1", P2, lease=LEASE, actor=STUDENT)
    clock.advance(LEASE + 1)
    again = await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    assert again.already_bound
    back = await store.get_binding("m1")
    assert back is not None
    assert (back.state, back.phone) == (BindingState.BOUND, P1)
    with pytest.raises(ClaimLost):
        await store.commit_claim(stale)
    await consistent(store)


async def test_another_member_takes_a_phone_whose_claim_ran_out_during_a_rebind(
    store: Store, clock: FakeClock
) -> None:
    await bind(store, "m1", P1)
    await store.claim_phone("m1", P2, lease=LEASE, actor=STUDENT)
    clock.advance(LEASE)
    with pytest.raises(PhoneTaken):  # the old phone is still m1's
        await store.claim_phone("m2", P1, lease=LEASE, actor=STUDENT)
    await bind(store, "m2", P2)
    back = await store.get_binding("m1")
    assert back is not None
    assert (back.state, back.phone) == (BindingState.BOUND, P1)
    await consistent(store)


# follow and unfollow


async def test_follow_and_its_idempotence(store: Store) -> None:
    await bind(store, "m1", P1)
    followed = await store.follow("m1", "openid-1", actor=WECOM)
    assert (followed.state, followed.phone, followed.openid) == (BindingState.FOLLOWED, P1, "openid-1")
    assert await store.get_binding_by_openid("openid-1") == followed
    count = len(await store.audit_list())
    assert (await store.follow("m1", "openid-1", actor=WECOM)).openid == "openid-1"
    assert len(await store.audit_list()) == count
    await consistent(store)


async def test_one_member_one_wechat(store: Store) -> None:
    await bind(store, "m1", P1)
    await bind(store, "m2", P2)
    await store.follow("m1", "openid-1", actor=WECOM)
    with pytest.raises(OpenidConflict):
        await store.follow("m1", "openid-2", actor=WECOM)
    with pytest.raises(OpenidConflict):
        await store.follow("m2", "openid-1", actor=WECOM)
    m2 = await store.get_binding("m2")
    assert m2 is not None
    assert m2.state is BindingState.BOUND
    await consistent(store)


async def test_unfollow_frees_the_member_and_the_openid(store: Store) -> None:
    await bind(store, "m1", P1)
    await bind(store, "m2", P2)
    await store.follow("m1", "openid-1", actor=WECOM)
    bound = await store.unfollow("m1", actor=WECOM)
    assert bound is not None
    assert (bound.state, bound.phone, bound.openid) == (BindingState.BOUND, P1, None)
    assert await store.get_binding_by_openid("openid-1") is None
    assert await store.unfollow("m1", actor=WECOM) == bound
    assert await store.unfollow("nobody", actor=WECOM) is None
    await store.follow("m2", "openid-1", actor=WECOM)
    # Guide 2.2's remedy: after unfollowing, the member may bind another phone.
    await bind(store, "m1", P3)
    assert await store.get_binding_by_phone(P1) is None
    await consistent(store)


async def test_follow_without_a_binding_and_unfollow(store: Store) -> None:
    followed = await store.follow("m1", "openid-1", actor=WECOM)
    assert (followed.state, followed.phone) == (BindingState.FOLLOWED, None)
    with pytest.raises(AccountFollowed):
        await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    assert await store.unfollow("m1", actor=WECOM) is None
    assert await store.get_binding("m1") is None
    await consistent(store)


async def test_follow_drops_a_pending_claim(store: Store) -> None:
    await bind(store, "m1", P1)
    claim = await store.claim_phone("m1", P2, lease=LEASE, actor=STUDENT)
    followed = await store.follow("m1", "openid-1", actor=WECOM)
    assert (followed.state, followed.phone) == (BindingState.FOLLOWED, P1)
    with pytest.raises(ClaimLost):
        await store.commit_claim(claim)
    assert await store.get_binding_by_phone(P2) is None
    await consistent(store)


# phones set to WeCom's truth


async def test_set_member_phone(store: Store) -> None:
    created = await store.set_member_phone("m1", P1, take=False, actor=WECOM)
    assert created is not None
    assert (created.state, created.phone) == (BindingState.BOUND, P1)
    moved = await store.set_member_phone("m1", P2, take=False, actor=WECOM)
    assert moved is not None
    assert moved.phone == P2
    assert await store.get_binding_by_phone(P1) is None
    assert await store.set_member_phone("m1", P2, take=False, actor=WECOM) == moved
    assert await store.set_member_phone("m1", None, take=False, actor=WECOM) is None
    assert await store.get_binding("m1") is None
    assert await store.set_member_phone("m1", None, take=False, actor=WECOM) is None
    await consistent(store)


async def test_set_member_phone_clash(store: Store) -> None:
    await bind(store, "m1", P1)
    await bind(store, "m2", P2)
    await store.follow("m2", "openid-2", actor=WECOM)
    with pytest.raises(PhoneTaken):
        await store.set_member_phone("m3", P1, take=False, actor=WECOM)
    taken = await store.set_member_phone("m3", P1, take=True, actor=WECOM)
    assert taken is not None
    assert taken.phone == P1
    assert await store.get_binding("m1") is None
    await store.set_member_phone("m3", P2, take=True, actor=WECOM)
    m2 = await store.get_binding("m2")
    assert m2 is not None
    assert (m2.state, m2.phone, m2.openid) == (BindingState.FOLLOWED, None, "openid-2")
    assert [r.action for r in await store.audit_list(member_id="m1", limit=1)] == [AuditAction.PHONE_LOST]
    await consistent(store)


async def test_set_member_phone_takes_the_old_phone_of_a_pending_member(store: Store) -> None:
    await bind(store, "m1", P1)
    claim = await store.claim_phone("m1", P2, lease=LEASE, actor=STUDENT)
    await store.set_member_phone("m2", P1, take=True, actor=WECOM)
    pending = await store.get_binding("m1")
    assert pending is not None
    assert (pending.state, pending.phone, pending.previous_phone) == (BindingState.PENDING, P2, None)
    await store.commit_claim(claim)
    await consistent(store)


async def test_set_member_phone_drops_a_pending_claim(store: Store) -> None:
    claim = await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    updated = await store.set_member_phone("m1", P2, take=False, actor=WECOM)
    assert updated is not None
    assert (updated.state, updated.phone) == (BindingState.BOUND, P2)
    with pytest.raises(ClaimLost):
        await store.commit_claim(claim)
    assert await store.get_binding_by_phone(P1) is None
    other = await store.claim_phone("m2", P3, lease=LEASE, actor=STUDENT)
    taken = await store.set_member_phone("m3", P3, take=True, actor=WECOM)
    assert taken is not None
    assert await store.get_binding("m2") is None
    with pytest.raises(ClaimLost):
        await store.commit_claim(other)
    await consistent(store)


async def test_a_binding_read_back_holds_phones_not_text(store: Store) -> None:
    await bind(store, "m1", P1)
    await store.claim_phone("m1", P2, lease=LEASE, actor=STUDENT)
    for binding in (await store.get_binding("m1"), await store.get_binding_by_phone(P1), *await store.list_bindings()):
        assert binding is not None
        assert type(binding.phone) is Phone
        assert type(binding.previous_phone) is Phone


async def test_set_member_phone_may_spare_a_live_claim_but_not_an_expired_one(
    store: Store, clock: FakeClock
) -> None:
    await bind(store, "m1", P1)
    claim = await store.claim_phone("m1", P2, lease=LEASE, actor=STUDENT)
    spared = await store.set_member_phone("m1", P3, take=False, actor=WECOM, spare_live_claim=True)
    assert spared is not None
    assert (spared.state, spared.phone, spared.previous_phone) == (BindingState.PENDING, P2, P1)
    assert (await store.commit_claim(claim)).phone == P2
    await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    clock.advance(LEASE + 1)
    updated = await store.set_member_phone("m1", P3, take=False, actor=WECOM, spare_live_claim=True)
    assert updated is not None
    assert (updated.state, updated.phone) == (BindingState.BOUND, P3)
    await consistent(store)


async def test_set_member_phone_of_a_followed_member(store: Store) -> None:
    await bind(store, "m1", P1)
    await store.follow("m1", "openid-1", actor=WECOM)
    moved = await store.set_member_phone("m1", P2, take=False, actor=WECOM)
    assert moved is not None
    assert (moved.state, moved.phone, moved.openid) == (BindingState.FOLLOWED, P2, "openid-1")
    cleared = await store.set_member_phone("m1", None, take=False, actor=WECOM)
    assert cleared is not None
    assert (cleared.state, cleared.phone) == (BindingState.FOLLOWED, None)
    await consistent(store)


async def test_delete_member(store: Store) -> None:
    await bind(store, "m1", P1)
    await store.follow("m1", "openid-1", actor=WECOM)
    assert await store.delete_member("m1", actor=WECOM)
    assert await store.get_binding("m1") is None
    assert await store.get_binding_by_phone(P1) is None
    assert await store.get_binding_by_openid("openid-1") is None
    assert not await store.delete_member("m1", actor=WECOM)
    await bind(store, "m2", P1)
    await store.follow("m2", "openid-1", actor=WECOM)
    await consistent(store)


async def test_rename_member(store: Store) -> None:
    await bind(store, "old", P1)
    await store.follow("old", "openid-1", actor=WECOM)
    await bind(store, "new", P2)
    moved = await store.rename_member("old", "new", actor=WECOM)
    assert moved is not None
    assert (moved.member_id, moved.phone, moved.openid) == ("new", P1, "openid-1")
    assert await store.get_binding("old") is None
    assert await store.get_binding_by_phone(P1) == moved
    assert await store.get_binding_by_openid("openid-1") == moved
    assert await store.get_binding_by_phone(P2) is None
    assert await store.rename_member("nobody", "other", actor=WECOM) is None
    assert await store.rename_member("new", "new", actor=WECOM) == moved
    await consistent(store)


async def test_list_bindings(store: Store) -> None:
    await bind(store, "m2", P2)
    await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    await store.follow("m3", "openid-3", actor=WECOM)
    listed = await store.list_bindings()
    assert [(b.member_id, b.state) for b in listed] == [
        ("m1", BindingState.PENDING),
        ("m2", BindingState.BOUND),
        ("m3", BindingState.FOLLOWED),
    ]


# audit log


async def test_audit_log(store: Store, clock: FakeClock) -> None:
    await bind(store, "m1", P1)
    clock.advance(1)
    await store.follow("m1", "openid-1", actor=WECOM)
    await bind(store, "m2", P2)
    records = await store.audit_list()
    assert [r.action for r in records] == [
        AuditAction.BIND,
        AuditAction.CLAIM,
        AuditAction.FOLLOW,
        AuditAction.BIND,
        AuditAction.CLAIM,
    ]
    assert [r.id for r in records] == sorted((r.id for r in records), reverse=True)
    follow = records[2]
    assert (follow.who, follow.source, follow.member_id) == ("wecom", "callback", "m1")
    assert follow.phone_masked == "138****8001"
    assert follow.at == clock()
    assert records[3].who == "student"
    assert len(await store.audit_list(limit=2)) == 2
    assert [r.action for r in await store.audit_list(member_id="m1", limit=1)] == [AuditAction.FOLLOW]
    assert await store.audit_list(member_id="nobody") == []
    await consistent(store)


async def test_audit_redact_rewrites_the_members_details_in_place(store: Store, clock: FakeClock) -> None:
    await bind(store, "m1", P1)
    await store.follow("m1", "openid-secret-1", actor=WECOM)
    await store.unfollow("m1", actor=WECOM)
    await store.audit_conflict("m2", None, "openid openid-secret-1 follows as member m1", actor=WECOM)
    before = await store.audit_list(limit=100)
    assert await store.audit_redact("m1", "openid-secret-1", "open****") == 2
    after = await store.audit_list(limit=100)
    # Same records, same order, same ids: only the member's details changed.
    assert [(r.id, r.action, r.member_id) for r in after] == [(r.id, r.action, r.member_id) for r in before]
    first, second, *rest = [r.detail for r in before if r.member_id == "m1"]
    assert (first, second) == ("openid openid-secret-1", "openid openid-secret-1")
    assert [r.detail for r in await store.audit_list(member_id="m1")] == ["openid open****"] * 2 + rest
    assert all("openid-secret-1" not in r.detail for r in after if r.member_id == "m1")
    assert [r.detail for r in after if r.member_id == "m2"] == ["openid openid-secret-1 follows as member m1"]
    assert await store.audit_redact("m1", "openid-secret-1", "open****") == 0
    with pytest.raises(ValueError, match="nothing to replace"):
        await store.audit_redact("m1", "", "x")
    await consistent(store)


async def test_audit_redact_of_every_member_reaches_another_members_conflict(
    store: Store, clock: FakeClock
) -> None:
    await bind(store, "m1", P1)
    await store.follow("m1", "openid-secret-1", actor=WECOM)
    await store.audit_conflict("m2", None, "openid openid-secret-1 follows as member m1", actor=WECOM)
    await store.audit_conflict("m3", None, "openid openid-other-3 follows as member m9", actor=WECOM)
    before = await store.audit_list(limit=100)
    assert await store.audit_redact(None, "openid-secret-1", "open****") == 2
    after = await store.audit_list(limit=100)
    assert [(r.id, r.action, r.member_id) for r in after] == [(r.id, r.action, r.member_id) for r in before]
    assert all("openid-secret-1" not in r.detail for r in after)
    assert [r.detail for r in await store.audit_list(member_id="m2")] == ["openid open**** follows as member m1"]
    assert [r.detail for r in await store.audit_list(member_id="m1", limit=1)] == ["openid open****"]
    # Another member's record that does not name it is left as it was, in both of its lists.
    assert [r.detail for r in await store.audit_list(member_id="m3")] == ["openid openid-other-3 follows as member m9"]
    assert await store.audit_redact(None, "openid-secret-1", "open****") == 0
    await consistent(store)


# key-value entries and locks


async def test_kv_entries_expire(store: Store, clock: FakeClock) -> None:
    assert await store.kv_get("token") is None
    await store.kv_set("token", "abc", ttl=7200)
    assert await store.kv_get("token") == "abc"
    clock.advance(7199)
    assert await store.kv_get("token") == "abc"
    clock.advance(1)
    assert await store.kv_get("token") is None
    await store.kv_set("token", "def", ttl=10)
    await store.kv_delete("token")
    assert await store.kv_get("token") is None
    await store.kv_delete("token")


async def test_kv_set_if_absent(store: Store, clock: FakeClock) -> None:
    assert await store.kv_set_if_absent("state", "a", ttl=10)
    assert not await store.kv_set_if_absent("state", "b", ttl=10)
    assert await store.kv_get("state") == "a"
    clock.advance(10)
    assert await store.kv_set_if_absent("state", "c", ttl=10)
    assert await store.kv_get("state") == "c"


async def test_kv_pop_is_single_use(store: Store, clock: FakeClock) -> None:
    await store.kv_set("ticket", "ST-1", ttl=10)
    assert await store.kv_pop("ticket") == "ST-1"
    assert await store.kv_pop("ticket") is None
    await store.kv_set("ticket", "ST-2", ttl=10)
    clock.advance(11)
    assert await store.kv_pop("ticket") is None


async def test_kv_incr_counts_in_a_window(store: Store, clock: FakeClock) -> None:
    assert await store.kv_incr("rate", ttl=60) == 1
    assert await store.kv_incr("rate", ttl=60) == 2
    clock.advance(30)
    assert await store.kv_incr("rate", ttl=60) == 3
    clock.advance(30)
    assert await store.kv_incr("rate", ttl=60) == 1
    with pytest.raises(ValueError, match="ttl"):
        await store.kv_incr("rate", ttl=-1)


async def test_kv_get_many_reads_each_key_in_order(store: Store, clock: FakeClock) -> None:
    await store.kv_set("a", "1", ttl=10)
    await store.kv_set("b", "2", ttl=30)
    assert await store.kv_get_many(["b", "missing", "a", "b"]) == ["2", None, "1", "2"]
    assert await store.kv_get_many([]) == []
    clock.advance(10)
    assert await store.kv_get_many(["a", "b"]) == [None, "2"]


async def test_kv_apply_sets_and_deletes_at_once(store: Store, clock: FakeClock) -> None:
    await store.kv_set("old", "x", ttl=60)
    assert await store.kv_apply({"a": ("1", 10), "b": ("2", 30)}, deletes=["old", "never"])
    assert await store.kv_get_many(["a", "b", "old"]) == ["1", "2", None]
    clock.advance(10)
    assert await store.kv_get_many(["a", "b"]) == [None, "2"]
    assert await store.kv_apply({}, deletes=["b"])
    assert await store.kv_get("b") is None


async def test_kv_apply_if_absent_changes_nothing_when_one_is_live(store: Store, clock: FakeClock) -> None:
    assert await store.kv_apply({"ticket": ("1", 10), "session": ("s1", 60)}, if_absent=["ticket"])
    await store.kv_set("login", "n", ttl=60)
    applied = await store.kv_apply(
        {"ticket": ("2", 10), "session": ("s2", 60)}, deletes=["login"], if_absent=["other", "ticket"]
    )
    assert not applied
    assert await store.kv_get_many(["ticket", "session", "login"]) == ["1", "s1", "n"]
    clock.advance(10)  # the ticket's entry expired: it counts as absent
    assert await store.kv_apply({"ticket": ("3", 10)}, deletes=["login"], if_absent=["ticket"])
    assert await store.kv_get_many(["ticket", "login"]) == ["3", None]


async def test_kv_apply_refuses_bad_arguments_and_writes_nothing(store: Store) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await store.kv_apply({"a": ("1", 10), "b": ("2", 0)})
    with pytest.raises(ValueError, match="both set and deleted"):
        await store.kv_apply({"a": ("1", 10)}, deletes=["a"])
    assert await store.kv_get_many(["a", "b"]) == [None, None]


async def test_kv_incr_under_counts_all_or_none(store: Store, clock: FakeClock) -> None:
    limits = {"student": 2, "address": 3}
    assert await store.kv_incr_under(limits, ttl=60) is None
    assert await store.kv_incr_under(limits, ttl=60) is None
    # The student's counter is full: nothing counts, not even the address's.
    assert await store.kv_incr_under(limits, ttl=60) == "student"
    assert await store.kv_get_many(["student", "address"]) == ["2", "2"]
    assert await store.kv_incr_under({"other": 5, "address": 3}, ttl=60) is None
    assert await store.kv_incr_under({"other": 5, "address": 3}, ttl=60) == "address"
    assert await store.kv_get_many(["other", "address"]) == ["1", "3"]
    # The window is the first count's: once it has passed, each counter starts again at 1.
    clock.advance(60)
    assert await store.kv_incr_under(limits, ttl=60) is None
    assert await store.kv_get_many(["student", "address"]) == ["1", "1"]
    assert await store.kv_incr("student", ttl=60) == 2
    assert await store.kv_incr_under({}, ttl=60) is None
    with pytest.raises(ValueError, match="ttl"):
        await store.kv_incr_under(limits, ttl=0)


async def test_kv_incr_under_never_counts_past_a_limit_at_once(store: Store) -> None:
    refused = await asyncio.gather(*(store.kv_incr_under({"ip": 5}, ttl=60) for _ in range(12)))
    assert refused.count(None) == 5
    assert await store.kv_get("ip") == "5"


async def test_lock(store: Store, clock: FakeClock) -> None:
    token = await store.lock_acquire("refresh", lease=5)
    assert token is not None
    assert await store.lock_acquire("refresh", lease=5) is None
    assert not await store.lock_release("refresh", "not-mine")
    assert await store.lock_release("refresh", token)
    assert not await store.lock_release("refresh", token)
    second = await store.lock_acquire("refresh", lease=5)
    assert second is not None
    clock.advance(5)
    third = await store.lock_acquire("refresh", lease=5)
    assert third is not None
    assert not await store.lock_release("refresh", second)
    assert await store.lock_release("refresh", third)


async def test_kv_delete_prefix_deletes_the_keys_under_it_only(store: Store) -> None:
    for key in ("bind-result:m1:a", "bind-result:m1:b", "bind-result:m1:", "bind-result:m10:a",
                "bind-result:m1", "bind-result;m1:a", "bind-result:m1\uffff", "other"):
        await store.kv_set(key, "v", ttl=60)
    assert await store.kv_delete_prefix("bind-result:m1:") == 3
    kept = ["bind-result:m10:a", "bind-result:m1", "bind-result;m1:a", "bind-result:m1\uffff", "other"]
    assert await store.kv_get_many(kept) == ["v"] * len(kept)
    assert await store.kv_get_many(["bind-result:m1:a", "bind-result:m1:b"]) == [None, None]
    assert await store.kv_delete_prefix("bind-result:m1:") == 0
    await store.kv_set("a*[b]?:1", "v", ttl=60)  # a pattern's characters are literal
    assert await store.kv_delete_prefix("a*[b]?:") == 1
    assert await store.kv_get("other") == "v"
    with pytest.raises(ValueError, match="empty prefix"):
        await store.kv_delete_prefix("")


async def test_scrub_answers_what_it_did_and_keeps_the_data(store: Store) -> None:
    await store.kv_set("k", "v", ttl=60)
    await bind(store, "m1", "13800138001")
    await store.kv_delete("k")
    said = await store.scrub()
    assert said
    assert "\n" not in said
    assert (await store.get_binding("m1")) is not None
    assert await store.kv_get("k") is None


# durable event inbox


async def test_inbox_append_take_done(store: Store) -> None:
    assert await store.inbox_append("k1", "subscribe", "<xml>一</xml>")
    assert not await store.inbox_append("k1", "subscribe", "<xml>一</xml>")
    assert await store.inbox_append("k2", "unsubscribe", "<xml>二</xml>")
    assert await store.inbox_stats() == InboxStats(pending=2, leased=0, dead=0)
    items = await store.inbox_take(10, lease=30)
    assert [(i.dedup_key, i.event_type, i.payload, i.attempts) for i in items] == [
        ("k1", "subscribe", "<xml>一</xml>", 0),
        ("k2", "unsubscribe", "<xml>二</xml>", 0),
    ]
    assert await store.inbox_take(10, lease=30) == []
    stats = await store.inbox_stats()
    assert (stats.pending, stats.leased, stats.dead) == (0, 2, 0)
    await store.inbox_done(items[0].id)
    await store.inbox_done(items[1].id)
    stats = await store.inbox_stats()
    assert (stats.pending, stats.leased, stats.dead) == (0, 0, 0)
    assert not await store.inbox_append("k1", "subscribe", "<xml>一</xml>")


async def test_inbox_take_respects_limit_and_order(store: Store, clock: FakeClock) -> None:
    for n in range(12):
        assert await store.inbox_append(f"k{n}", "event", str(n))
    first = await store.inbox_take(5, lease=30)
    assert [i.payload for i in first] == [str(n) for n in range(5)]
    rest = await store.inbox_take(100, lease=30)
    assert [i.payload for i in rest] == [str(n) for n in range(5, 12)]


async def test_inbox_lease_expiry_returns_the_event(store: Store, clock: FakeClock) -> None:
    await store.inbox_append("k1", "event", "x")
    (taken,) = await store.inbox_take(10, lease=30)
    clock.advance(29)
    assert await store.inbox_take(10, lease=30) == []
    clock.advance(1)
    stats = await store.inbox_stats()
    assert (stats.pending, stats.leased) == (1, 0)
    (again,) = await store.inbox_take(10, lease=30)
    assert again.id == taken.id


async def test_inbox_retry_and_dead_letters(store: Store, clock: FakeClock) -> None:
    await store.inbox_append("k1", "event", "x")
    await store.inbox_append("k2", "event", "y")
    first, second = await store.inbox_take(10, lease=30)
    assert await store.inbox_retry(first.id, "boom", delay=5) == 1
    assert await store.inbox_take(10, lease=30) == []
    stats = await store.inbox_stats()
    assert (stats.pending, stats.leased) == (1, 1)
    clock.advance(5)
    (retried,) = await store.inbox_take(10, lease=30)
    assert (retried.id, retried.attempts, retried.last_error) == (first.id, 1, "boom")
    assert await store.inbox_retry(retried.id, "boom again", delay=0) == 2
    (retried,) = await store.inbox_take(10, lease=30)
    await store.inbox_dead(retried.id, "gave up")
    await store.inbox_dead(second.id, "bad payload")
    stats = await store.inbox_stats()
    assert (stats.pending, stats.leased, stats.dead) == (0, 0, 2)
    assert await store.inbox_retry(second.id, "late", delay=0) == 0
    dead = await store.inbox_list_dead()
    assert {(d.id, d.last_error) for d in dead} == {(first.id, "gave up"), (second.id, "bad payload")}
    assert next(d for d in dead if d.id == first.id).attempts == 3
    assert len(await store.inbox_list_dead(limit=1)) == 1
    assert await store.inbox_requeue_dead([first.id]) == 1
    assert await store.inbox_requeue_dead([first.id]) == 0
    (requeued,) = await store.inbox_take(10, lease=30)
    assert (requeued.id, requeued.attempts) == (first.id, 0)
    assert await store.inbox_requeue_dead() == 1
    assert await store.inbox_requeue_dead([]) == 0
    stats = await store.inbox_stats()
    assert (stats.pending, stats.leased, stats.dead) == (1, 1, 0)
    await store.inbox_done(requeued.id)
    assert await store.inbox_retry(requeued.id, "gone", delay=0) == 0


async def test_inbox_dedup_key_is_forgotten_after_its_ttl(store: Store, clock: FakeClock) -> None:
    assert await store.inbox_append("k1", "event", "x")
    clock.advance(6 * 24 * 3600)
    assert not await store.inbox_append("k1", "event", "x")
    clock.advance(24 * 3600)
    assert await store.inbox_append("k1", "event", "x")


async def test_audit_conflict_records_a_refusal_and_changes_nothing(store: Store) -> None:
    await bind(store, "m1", P1)
    before = await store.get_binding("m1")
    await store.audit_conflict("m2", P1, "I1: the phone is m1's", actor=WECOM)
    assert await store.get_binding("m1") == before
    assert await store.get_binding("m2") is None
    [record] = await store.audit_list(member_id="m2")
    assert record.action is AuditAction.CONFLICT
    assert record.phone_masked == P1[:3] + "****" + P1[-4:]
    assert record.detail == "I1: the phone is m1's"
    assert (record.who, record.source) == (WECOM.who, WECOM.source)
    await store.audit_conflict("m3", None, "I4", actor=WECOM)
    [record] = await store.audit_list(member_id="m3")
    assert record.phone_masked is None


async def test_concurrent_appends_keep_each_event_once(store: Store) -> None:
    keys = [f"k{n % 40}" for n in range(100)]  # 40 distinct events, most sent more than once
    results = await asyncio.gather(*(store.inbox_append(key, "subscribe", f"<xml>{key}</xml>") for key in keys))
    assert sum(results) == 40
    taken = await store.inbox_take(100, lease=LEASE)
    assert sorted(item.dedup_key for item in taken) == sorted(set(keys))
    assert all(item.payload == f"<xml>{item.dedup_key}</xml>" for item in taken)


async def test_inbox_drops_only_dead_letters_for_good(store: Store) -> None:
    assert await store.inbox_append("k1", "subscribe", "<xml>1</xml>")
    assert await store.inbox_append("k2", "subscribe", "<xml>2</xml>")
    first, second = await store.inbox_take(10, lease=30)
    await store.inbox_dead(first.id, "gave up")
    assert await store.inbox_drop_dead([first.id, second.id]) == 1  # the leased one stays
    assert await store.inbox_drop_dead([first.id]) == 0
    assert await store.inbox_drop_dead([]) == 0
    assert await store.inbox_list_dead() == []
    assert await store.inbox_requeue_dead([first.id]) == 0
    stats = await store.inbox_stats()
    assert (stats.pending, stats.leased, stats.dead) == (0, 1, 0)
    # Its dedup key is still remembered: a late retry of the dropped message is not taken again.
    assert not await store.inbox_append("k1", "subscribe", "<xml>1</xml>")


# one member's events: one at a time, in create time order, then in arrival order


async def _append(store: Store, key: str, member: str | None, create_time: int) -> None:
    assert await store.inbox_append(key, "event", key, member_id=member, create_time=create_time)


async def _taken(store: Store) -> list[str]:
    return [item.payload for item in await store.inbox_take(100, lease=30)]


async def test_inbox_takes_a_members_events_one_at_a_time_in_create_time_order(store: Store) -> None:
    await _append(store, "m1-late", "m1", 2)
    await _append(store, "m1-early", "m1", 1)
    await _append(store, "m2", "m2", 5)
    await _append(store, "m1-early-again", "m1", 1)  # the same second: after m1-early, which came first
    await _append(store, "nobody", None, 0)
    first = await store.inbox_take(100, lease=30)
    assert [item.payload for item in first] == ["m1-early", "m2", "nobody"]  # other members at once
    assert await store.inbox_take(100, lease=30) == []  # m1's next waits for the one leased
    stats = await store.inbox_stats()
    assert (stats.pending, stats.leased) == (2, 3)
    assert await store.inbox_oldest_pending() is not None
    ids = {item.payload: item.id for item in first}
    await store.inbox_done(ids["m1-early"])
    [again] = await store.inbox_take(100, lease=30)
    assert again.payload == "m1-early-again"
    await store.inbox_done(again.id)
    [late] = await store.inbox_take(100, lease=30)
    assert late.payload == "m1-late"
    await store.inbox_done(late.id)
    await store.inbox_done(ids["m2"])
    await store.inbox_done(ids["nobody"])
    assert await store.inbox_stats() == InboxStats(pending=0, leased=0, dead=0)
    assert await store.inbox_oldest_pending() is None


async def test_inbox_an_earlier_event_that_comes_later_waits_for_the_leased_one(
    store: Store, clock: FakeClock
) -> None:
    await _append(store, "unsubscribe", "m1", 5)
    [leased] = await store.inbox_take(10, lease=30)
    await _append(store, "subscribe", "m1", 3)  # older, but m1 has an event in hand
    assert await store.inbox_take(10, lease=30) == []
    clock.advance(30)  # the lease ran out: the earlier event goes first now, and alone
    assert await _taken(store) == ["subscribe"]
    assert await store.inbox_take(10, lease=30) == []
    stats = await store.inbox_stats()
    assert (stats.pending, stats.leased) == (1, 1)
    await store.inbox_done(leased.id)  # the first worker finishes late: m1's other one is still in hand
    assert await store.inbox_take(10, lease=30) == []


async def test_inbox_a_retried_event_holds_back_its_members_later_ones(store: Store, clock: FakeClock) -> None:
    await _append(store, "first", "m1", 1)
    await _append(store, "second", "m1", 2)
    await _append(store, "other", "m2", 1)
    taken = await store.inbox_take(10, lease=30)
    assert [item.payload for item in taken] == ["first", "other"]
    assert await store.inbox_retry(taken[0].id, "boom", delay=5) == 1
    assert await store.inbox_take(10, lease=30) == []  # "second" waits for "first" to succeed
    clock.advance(5)
    [retried] = await store.inbox_take(10, lease=30)
    assert (retried.payload, retried.attempts) == ("first", 1)
    await store.inbox_done(retried.id)
    assert await _taken(store) == ["second"]


async def test_inbox_a_dead_letter_does_not_hold_back_its_member(store: Store, clock: FakeClock) -> None:
    await _append(store, "first", "m1", 1)
    await _append(store, "second", "m1", 2)
    [first] = await store.inbox_take(10, lease=30)
    await store.inbox_dead(first.id, "gave up")
    [second] = await store.inbox_take(10, lease=30)
    assert second.payload == "second"
    assert await store.inbox_requeue_dead([first.id]) == 1  # back, and first again, but second is in hand
    assert await store.inbox_take(10, lease=30) == []
    stats = await store.inbox_stats()
    assert (stats.pending, stats.leased, stats.dead) == (1, 1, 0)
    await store.inbox_done(second.id)
    [requeued] = await store.inbox_take(10, lease=30)
    assert (requeued.payload, requeued.attempts) == ("first", 0)


async def test_inbox_concurrent_takes_never_hand_out_two_events_of_a_member(store: Store) -> None:
    for n in range(60):
        await _append(store, f"e{n}", f"m{n % 6}", n // 6)
    handled: list[str] = []
    in_hand: set[str] = set()

    async def worker() -> None:
        for _ in range(200):  # bounded
            items = await store.inbox_take(1, lease=30)
            if not items:
                if len(handled) == 60:
                    return
                await asyncio.sleep(0)
                continue
            [item] = items
            member = f"m{int(item.payload[1:]) % 6}"
            assert member not in in_hand
            in_hand.add(member)
            await asyncio.sleep(0)
            handled.append(item.payload)
            in_hand.discard(member)
            await store.inbox_done(item.id)

    await asyncio.gather(*(worker() for _ in range(8)))
    assert sorted(handled) == sorted(f"e{n}" for n in range(60))
    for member in range(6):
        order = [int(p[1:]) for p in handled if int(p[1:]) % 6 == member]
        assert order == sorted(order)


async def test_bindings_are_read_as_bindings_never_as_records_with_their_claim_token(store: Store) -> None:
    claim = await store.claim_phone("m1", P1, lease=LEASE, actor=STUDENT)
    await store.commit_claim(await store.claim_phone("m2", P2, lease=LEASE, actor=STUDENT))
    await store.follow("m3", "o3", actor=STUDENT)
    read = [
        await store.get_binding("m1"),
        await store.get_binding_by_phone(P2),
        await store.get_binding_by_openid("o3"),
        await store.commit_claim(claim),
        *await store.list_bindings(),
    ]
    assert [type(binding) for binding in read] == [Binding] * 7
