"""The binding rules as pure decisions: records in, writes, audit and outcome (or a refusal) out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

import pytest

from handlers.core import rules
from handlers.core.binding import (
    AccountFollowed,
    Actor,
    AuditAction,
    Binding,
    BindingChanged,
    BindingState,
    Claim,
    ClaimInProgress,
    ClaimLost,
    OpenidConflict,
    PhoneTaken,
)
from handlers.core.phone import Phone
from handlers.core.reconcile import Fix
from handlers.core.rules import (
    Decision,
    Draft,
    Key,
    Row,
    Unread,
    Value,
    binding_key,
    decide,
    openid_key,
    phone_key,
)

T = TypeVar("T")
NOW = 1_000.0
ACTOR = Actor(who="s1", source="test")
P1, P2 = Phone("13800000001"), Phone("13800000002")


def bound(member: str, phone: str | None, *, openid: str | None = None) -> Row:
    """A binding record past its claim."""
    state = BindingState.FOLLOWED if openid else BindingState.BOUND
    return Row(member, Phone.parse_or_none(phone), state, openid, None, None, 1.0, token=None)


def pending(member: str, phone: str, *, lease: float, previous: str | None = None) -> Row:
    """A claim's record, its lease running out at lease."""
    return Row(member, Phone(phone), BindingState.PENDING, None, lease, Phone.parse_or_none(previous), 1.0, token="tok")


def run(records: Mapping[Key, Any], rule: Callable[[Draft], T]) -> Decision[T]:
    """Decide at NOW."""
    return decide(records, NOW, rule)


def actions(decision: Decision[Any]) -> list[tuple[AuditAction, str]]:
    """The audit entries' actions and members."""
    return [(entry.action, entry.member_id) for entry in decision.audits]


def claim_rule(member: str, phone: Phone) -> Callable[[Draft], Claim]:
    """A claim of phone by member for 60 s."""
    return lambda d: rules.claim(d, member, phone, lease=60, token="new", actor=ACTOR)


def test_a_row_is_its_binding_with_the_claim_token_which_callers_never_see() -> None:
    row = pending("m1", "13800000002", lease=NOW + 60, previous="13800000001")
    assert [f.name for f in fields(Row)] == [f.name for f in fields(Binding)] + ["token"]
    shown = row.binding()
    assert type(shown) is Binding
    assert shown == Binding(**{f.name: getattr(row, f.name) for f in fields(Binding)})
    assert row != shown  # a record and what callers see are never mistaken for each other


def test_a_free_phone_is_claimed_pending_and_indexed() -> None:
    decision = run({binding_key("m1"): None, phone_key(P1): None}, claim_rule("m1", P1))
    claim = decision.result()
    assert (claim.member_id, claim.phone, claim.token, claim.lease_expires_at) == ("m1", P1, "new", NOW + 60)
    assert decision.writes == {
        binding_key("m1"): Row("m1", P1, BindingState.PENDING, None, NOW + 60, None, NOW, token="new"),
        phone_key(P1): "m1",
    }
    assert actions(decision) == [(AuditAction.CLAIM, "m1")]
    assert decision.audits[0].phone_masked == "138****0001"


def test_i1_a_phone_held_by_another_is_refused_with_no_writes() -> None:
    records = {binding_key("m1"): None, phone_key(P1): "m2", binding_key("m2"): bound("m2", P1)}
    decision = run(records, claim_rule("m1", P1))
    assert isinstance(decision.refusal, PhoneTaken)
    assert (decision.writes, decision.audits) == ({}, ())
    with pytest.raises(PhoneTaken):
        decision.result()


def test_i1_a_live_claim_holds_its_phone_and_an_expired_one_does_not() -> None:
    records: dict[Key, Value] = {binding_key("m1"): None, phone_key(P1): "m2"}
    live = run({**records, binding_key("m2"): pending("m2", P1, lease=NOW + 1)}, claim_rule("m1", P1))
    assert isinstance(live.refusal, PhoneTaken)
    expired = run({**records, binding_key("m2"): pending("m2", P1, lease=NOW)}, claim_rule("m1", P1))
    assert expired.result().member_id == "m1"
    assert expired.writes[binding_key("m2")] is None
    assert expired.writes[phone_key(P1)] == "m1"
    assert actions(expired) == [(AuditAction.CLAIM_EXPIRED, "m2"), (AuditAction.CLAIM, "m1")]


def test_a_rule_asks_for_the_holders_binding_it_was_not_given() -> None:
    with pytest.raises(Unread) as unread:
        run({binding_key("m1"): None, phone_key(P1): "m2"}, claim_rule("m1", P1))
    assert unread.value.key == binding_key("m2")


def test_i3_a_followed_member_cannot_claim_another_phone() -> None:
    records = {binding_key("m1"): bound("m1", P1, openid="o1"), phone_key(P2): None}
    assert isinstance(run(records, claim_rule("m1", P2)).refusal, AccountFollowed)


def test_one_live_claim_per_member() -> None:
    records = {binding_key("m1"): pending("m1", P1, lease=NOW + 5), phone_key(P2): None}
    assert isinstance(run(records, claim_rule("m1", P2)).refusal, ClaimInProgress)


def test_claiming_ones_own_bound_phone_changes_nothing() -> None:
    records = {binding_key("m1"): bound("m1", P1), phone_key(P1): "m1"}
    decision = run(records, claim_rule("m1", P1))
    assert decision.result().already_bound
    assert (decision.writes, decision.audits) == ({}, ())


def test_commit_binds_the_claimed_phone_and_frees_the_previous_one_i2() -> None:
    held = Claim("m1", P2, "tok", NOW + 5, P1, ACTOR)
    records = {binding_key("m1"): pending("m1", P2, lease=NOW + 5, previous=P1), phone_key(P1): "m1"}
    decision = run(records, lambda d: rules.commit(d, held))
    binding = decision.result()
    assert (binding.state, binding.phone, binding.previous_phone) == (BindingState.BOUND, P2, None)
    assert decision.writes[phone_key(P1)] is None
    assert actions(decision) == [(AuditAction.BIND, "m1")]


def test_commit_of_a_replaced_claim_is_lost() -> None:
    held = Claim("m1", P2, "old", NOW + 5, None, ACTOR)
    decision = run({binding_key("m1"): pending("m1", P2, lease=NOW + 5)}, lambda d: rules.commit(d, held))
    assert isinstance(decision.refusal, ClaimLost)


def test_release_goes_back_to_the_previous_phone() -> None:
    held = Claim("m1", P2, "tok", NOW + 5, P1, ACTOR)
    records = {binding_key("m1"): pending("m1", P2, lease=NOW + 5, previous=P1), phone_key(P2): "m1"}
    decision = run(records, lambda d: rules.release(d, held))
    assert decision.result() is True
    assert decision.writes == {
        binding_key("m1"): Row("m1", P1, BindingState.BOUND, None, None, None, NOW, token=None),
        phone_key(P2): None,
    }
    assert actions(decision) == [(AuditAction.RELEASE, "m1")]


def test_i4_follow_records_the_openid_and_refuses_a_second_one() -> None:
    records = {binding_key("m1"): bound("m1", P1), openid_key("o1"): None}
    decision = run(records, lambda d: rules.follow(d, "m1", "o1"))
    assert decision.result().state is BindingState.FOLLOWED
    assert decision.writes[openid_key("o1")] == "m1"
    followed = {binding_key("m1"): bound("m1", P1, openid="o1")}
    assert isinstance(run(followed, lambda d: rules.follow(d, "m1", "o2")).refusal, OpenidConflict)
    assert run(followed, lambda d: rules.follow(d, "m1", "o1")).writes == {}


def test_i4_an_openid_following_as_another_member_is_a_conflict() -> None:
    records = {
        binding_key("m1"): bound("m1", P1),
        openid_key("o1"): "m2",
        binding_key("m2"): bound("m2", P2, openid="o1"),
    }
    assert isinstance(run(records, lambda d: rules.follow(d, "m1", "o1")).refusal, OpenidConflict)


def test_follow_drops_a_pending_claim() -> None:
    records = {
        binding_key("m1"): pending("m1", P2, lease=NOW + 5, previous=P1),
        openid_key("o1"): None,
        phone_key(P2): "m1",
    }
    decision = run(records, lambda d: rules.follow(d, "m1", "o1"))
    assert decision.result().phone == P1
    assert actions(decision) == [(AuditAction.CLAIM_DROPPED, "m1"), (AuditAction.FOLLOW, "m1")]


def test_unfollow_frees_the_member_to_bind_again() -> None:
    records = {binding_key("m1"): bound("m1", P1, openid="o1"), openid_key("o1"): "m1"}
    decision = run(records, lambda d: rules.unfollow(d, "m1"))
    binding = decision.result()
    assert binding is not None
    assert (binding.state, binding.openid) == (BindingState.BOUND, None)
    assert decision.writes[openid_key("o1")] is None


def test_setting_a_phone_someone_holds_refuses_unless_taken() -> None:
    records = {
        phone_key(P1): "m2",
        binding_key("m2"): bound("m2", P1),
        binding_key("m1"): None,
    }
    assert isinstance(run(records, lambda d: rules.set_phone(d, "m1", P1, take=False)).refusal, PhoneTaken)
    taken = run(records, lambda d: rules.set_phone(d, "m1", P1, take=True))
    assert taken.writes[binding_key("m2")] is None
    assert taken.writes[phone_key(P1)] == "m1"
    assert actions(taken) == [(AuditAction.PHONE_LOST, "m2"), (AuditAction.SET_PHONE, "m1")]


def test_delete_frees_phone_and_openid() -> None:
    records = {binding_key("m1"): bound("m1", P1, openid="o1"), phone_key(P1): "m1", openid_key("o1"): "m1"}
    decision = run(records, lambda d: rules.delete(d, "m1"))
    assert decision.result() is True
    assert decision.writes == {phone_key(P1): None, openid_key("o1"): None, binding_key("m1"): None}


def test_rename_moves_the_binding_and_its_indexes() -> None:
    records = {
        binding_key("old"): bound("old", P1, openid="o1"),
        binding_key("new"): None,
        phone_key(P1): "old",
        openid_key("o1"): "old",
    }
    decision = run(records, lambda d: rules.rename(d, "old", "new"))
    moved = decision.result()
    assert moved is not None
    assert moved.member_id == "new"
    assert decision.writes[binding_key("old")] is None
    assert (decision.writes[phone_key(P1)], decision.writes[openid_key("o1")]) == ("new", "new")


def test_fix_drift_applies_only_to_the_binding_that_was_read() -> None:
    seen = bound("m1", P1).binding()
    now_pending = pending("m1", P2, lease=NOW + 5, previous=P1)
    records = {binding_key("m1"): now_pending, phone_key(P1): "m1"}
    changed = run(records, lambda d: rules.fix_drift(d, "m1", Fix.SET_PHONE, P1, seen=seen))
    assert isinstance(changed.refusal, BindingChanged)
    assert changed.writes == {}
    unchanged = {binding_key("m1"): bound("m1", P1), phone_key(P1): "m1"}
    same = run(unchanged, lambda d: rules.fix_drift(d, "m1", Fix.DELETE, None, seen=seen))
    assert same.result() is None
    assert actions(same) == [(AuditAction.DELETE, "m1")]


def test_a_conflict_only_writes_its_audit_record() -> None:
    decision = run({}, lambda d: rules.conflict(d, "m1", P1, "I1: taken"))
    assert decision.writes == {}
    assert [(e.action, e.phone_masked, e.detail) for e in decision.audits] == [
        (AuditAction.CONFLICT, "138****0001", "I1: taken")
    ]


def test_fix_drift_ends_a_follow_that_wecom_no_longer_shows() -> None:
    followed = bound("m1", P1, openid="o1")
    records = {binding_key("m1"): followed, openid_key("o1"): "m1"}
    decision = run(records, lambda d: rules.fix_drift(d, "m1", Fix.UNFOLLOW, None, seen=followed.binding()))
    binding = decision.result()
    assert binding is not None
    assert (binding.state, binding.openid) == (BindingState.BOUND, None)
    assert actions(decision) == [(AuditAction.UNFOLLOW, "m1")]
    nothing = run(records, lambda d: rules.fix_drift(d, "m1", Fix.NONE, None, seen=followed.binding()))
    assert (nothing.writes, nothing.result()) == ({}, followed.binding())


def stale_rule(claimant: str, wecom_holder: str | None) -> Callable[[Draft], bool]:
    """WeCom's answer (user/getuserid) on who holds P1, as the claimant meets the store's 2.1."""
    return lambda d: rules.stale_phone(d, P1, claimant, wecom_holder)


@pytest.mark.parametrize("wecom_holder", [None, "m1"], ids=["nobody", "the-claimant"])
def test_a_stale_holder_loses_the_phone_wecom_gives_to_nobody_or_the_claimant(wecom_holder: str | None) -> None:
    records = {phone_key(P1): "m2", binding_key("m2"): bound("m2", P1)}
    decision = run(records, stale_rule("m1", wecom_holder))
    assert decision.result() is True
    assert decision.writes == {phone_key(P1): None, binding_key("m2"): None}
    assert actions(decision) == [(AuditAction.PHONE_LOST, "m2")]
    assert "stale" in decision.audits[0].detail


def test_the_store_right_about_the_holder_changes_nothing() -> None:
    records = {phone_key(P1): "m2", binding_key("m2"): bound("m2", P1)}
    decision = run(records, stale_rule("m1", "m2"))
    assert decision.result() is False
    assert (decision.writes, decision.audits) == ({}, ())


def test_another_holder_in_wecom_keeps_2_1_and_corrects_the_index() -> None:
    records = {phone_key(P1): "m2", binding_key("m2"): bound("m2", P1, openid="o2")}
    decision = run(records, stale_rule("m1", "m3"))
    assert decision.result() is False
    assert decision.writes[phone_key(P1)] is None
    assert decision.writes[binding_key("m2")] == Row("m2", None, BindingState.FOLLOWED, "o2", None, None, NOW, token=None)


def test_a_live_claim_of_another_student_is_not_stale() -> None:
    records = {phone_key(P1): "m2", binding_key("m2"): pending("m2", P1, lease=NOW + 30)}
    decision = run(records, stale_rule("m1", None))
    assert decision.result() is False
    assert decision.writes == {}
