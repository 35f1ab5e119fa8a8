"""Reconciliation's rules, pure: how the store and WeCom's members disagree, and the order to fix them.

WeCom enforces mobile uniqueness (I1, errcode 60104), so its members are a consistent truth: the
store is corrected towards it, never the other way. What WeCom did not show is unknown, not empty:
a mobile that user/get hides (an app since 2022-06-20, developer.work.weixin.qq.com/document/path/90196)
is never drift and never a fix. handlers.usecases.reconcile reads the records and applies the fixes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from handlers.core.binding import Binding, BindingState
from handlers.core.member import MemberStatus
from handlers.core.phone import InvalidPhone, Phone, mask_phone


class DriftKind(enum.StrEnum):
    """How the store and WeCom disagree about a member."""

    PHONE_DIFFERS = "PHONE_DIFFERS"
    MISSING_IN_STORE = "MISSING_IN_STORE"
    MISSING_IN_WECOM = "MISSING_IN_WECOM"
    EXPIRED_CLAIM = "EXPIRED_CLAIM"
    STATUS_DIFFERS = "STATUS_DIFFERS"
    DEPARTMENT_DIFFERS = "DEPARTMENT_DIFFERS"


class Fix(enum.StrEnum):
    """What fixing a drift does to the store."""

    SET_PHONE = "set_phone"
    DELETE = "delete"
    UNFOLLOW = "unfollow"
    NONE = "none"
    """Nothing the store can take from WeCom: reported only (an activation without a follow's openid)."""


@dataclass(frozen=True, slots=True)
class WeComView:
    """A member as WeCom showed it: mobile is its raw text ("" none), or None when WeCom hid it."""

    member_id: str
    mobile: str | None
    status: int
    department: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Drift:
    """One member on which the store and WeCom disagree, with phones masked for printing.

    wecom_phone is WeCom's mobile (the truth to fix to) and seen the binding as it was read;
    neither shows in a repr.
    """

    kind: DriftKind
    member_id: str
    store_phone_masked: str
    wecom_phone_masked: str
    detail: str
    in_wecom: bool
    wecom_phone: Phone | None = field(repr=False)
    seen: Binding | None = field(repr=False)
    fix: Fix = Fix.SET_PHONE

    def describe(self) -> str:
        """One printable line; phones masked."""
        return (
            f"{self.kind:<16} member {self.member_id}  store {self.store_phone_masked}"
            f"  wecom {self.wecom_phone_masked}  {self.detail}"
        )

    @property
    def deletes(self) -> bool:
        """Whether fixing removes the binding (WeCom has no such member)."""
        return self.fix is Fix.DELETE

    @property
    def takes_phone(self) -> bool:
        """Whether fixing gives the member WeCom's phone (which another binding may hold)."""
        return self.fix is Fix.SET_PHONE and self.wecom_phone is not None


def compare(
    bindings: Mapping[str, Binding],
    wecom: Mapping[str, WeComView],
    *,
    now: float,
    departments: Mapping[str, int] | None = None,
) -> list[Drift]:
    """Every member on which the bindings and WeCom's members disagree, one drift each, by member id.

    departments maps a bound member to the WeCom department its 院系 in the school directory names
    (WECOM_BIND_DEPARTMENTS); a member in WeCom outside it is reported, never moved.
    """
    drifts = []
    expected = departments or {}
    for member_id in sorted(bindings.keys() | wecom.keys()):
        drift = _compare(member_id, bindings.get(member_id), wecom.get(member_id), now)
        if drift is None:
            drift = _department_drift(member_id, bindings.get(member_id), wecom.get(member_id),
                                      expected.get(member_id))
        if drift is not None:
            drifts.append(drift)
    return drifts


def _compare(member_id: str, binding: Binding | None, seen: WeComView | None, now: float) -> Drift | None:
    in_wecom = seen is not None
    hidden = seen is not None and seen.mobile is None
    mobile, foreign = _mainland(seen.mobile if seen is not None else None)
    if binding is not None and binding.state is BindingState.PENDING:
        if not binding.lease_expired(now):
            return None  # a write to WeCom is in flight; its own commit or release ends it
        previous = f"previous {mask_phone(binding.previous_phone)}; " if binding.previous_phone else ""
        if not in_wecom:
            detail = "not a WeCom member: the claim is dropped"
            return _drift(DriftKind.EXPIRED_CLAIM, member_id, binding, False, None, previous + detail,
                          Fix.DELETE)
        if hidden:
            detail = "WeCom hides the mobile: whether the write reached it is unknown; left as it is"
            return _drift(
                DriftKind.EXPIRED_CLAIM, member_id, binding, True, None, previous + detail, Fix.NONE
            )
        if mobile == binding.phone:
            detail = "the write reached WeCom: goes to the claimed phone"
        else:
            detail = "the write did not reach WeCom: goes to WeCom's mobile"
        return _drift(DriftKind.EXPIRED_CLAIM, member_id, binding, True, mobile, previous + detail)
    if binding is None:
        if mobile is None:
            return None  # no mobile, or one WeCom hid: nothing the store can bind
        detail = "no binding: binds WeCom's mobile"
        return _drift(DriftKind.MISSING_IN_STORE, member_id, None, True, mobile, detail)
    if seen is None:
        detail = "not a WeCom member: the binding is removed"
        return _drift(DriftKind.MISSING_IN_WECOM, member_id, binding, False, None, detail, Fix.DELETE)
    if not hidden and mobile != binding.phone:
        if foreign:
            detail = "WeCom's mobile is not a mainland mobile: the phone is removed"
        elif mobile is None:
            detail = "WeCom holds no mobile: the phone is removed"
        else:
            detail = f"{binding.state}: goes to WeCom's mobile"
        return _drift(DriftKind.PHONE_DIFFERS, member_id, binding, True, mobile, detail)
    return _status_drift(member_id, binding, seen)


def _status_drift(member_id: str, binding: Binding, seen: WeComView) -> Drift | None:
    activated = seen.status == MemberStatus.ACTIVATED
    followed = binding.state is BindingState.FOLLOWED
    if activated == followed:
        return None
    phone = binding.phone  # WeCom agrees with it, or hides its own
    if followed:
        detail = f"followed here, WeCom status {seen.status} (not activated): the follow is ended"
        return _drift(DriftKind.STATUS_DIFFERS, member_id, binding, True, phone, detail, Fix.UNFOLLOW)
    # Activated through the WeCom app, or a subscribe that never arrived: the store records a follow
    # only with its WeChat's openid, which the subscribe brings. The binding flow asks WeCom's
    # status before every write, so this member is refused a new phone (2.2) meanwhile.
    detail = "activated in WeCom, not followed here: reported only (a follow is recorded with its openid)"
    return _drift(DriftKind.STATUS_DIFFERS, member_id, binding, True, phone, detail, Fix.NONE)


def _department_drift(
    member_id: str, binding: Binding | None, seen: WeComView | None, expected: int | None
) -> Drift | None:
    if binding is None or seen is None or expected is None or expected in seen.department:
        return None
    shown = ",".join(str(d) for d in seen.department) or "none"
    detail = (f"the directory's 院系 is WeCom department {expected}, WeCom has {shown}: reported only"
              " (move the member in WeCom's admin console, or correct the directory)")
    return _drift(DriftKind.DEPARTMENT_DIFFERS, member_id, binding, True, binding.phone,
                  detail, Fix.NONE)


def _mainland(raw: str | None) -> tuple[Phone | None, bool]:
    """WeCom's mobile as the store's 11 digits, and whether it was a number the store cannot hold."""
    if not raw:
        return None, False
    try:
        return Phone.parse(raw), False
    except InvalidPhone:
        return None, True


def _drift(
    kind: DriftKind,
    member_id: str,
    seen: Binding | None,
    in_wecom: bool,
    wecom_phone: Phone | None,
    detail: str,
    fix: Fix = Fix.SET_PHONE,
) -> Drift:
    store_phone = seen.phone if seen is not None else None
    return Drift(
        kind=kind,
        member_id=member_id,
        store_phone_masked=mask_phone(store_phone) if store_phone else "-",
        wecom_phone_masked=mask_phone(wecom_phone) if wecom_phone else "-",
        detail=detail,
        in_wecom=in_wecom,
        wecom_phone=wecom_phone,
        seen=seen,
        fix=fix,
    )


def order_fixes(drifts: Sequence[Drift]) -> list[str]:
    """The member ids in the order to fix them: removals first, then each phone after its
    current holder (among the drifting members) has let go of it; a cycle is broken by a take."""
    holders: dict[str, str] = {}
    for drift in drifts:
        if drift.seen is not None and drift.fix in (Fix.SET_PHONE, Fix.DELETE):
            for phone in (drift.seen.phone, drift.seen.previous_phone):
                if phone is not None:
                    holders[phone] = drift.member_id
    by_member = {drift.member_id: drift for drift in drifts}
    waiting: dict[str, list[str]] = {}  # holder -> members waiting for its phone
    ready: list[str] = []
    for drift in sorted(drifts, key=lambda d: (d.takes_phone, d.member_id)):
        holder = holders.get(drift.wecom_phone) if drift.takes_phone and drift.wecom_phone else None
        if holder is None or holder == drift.member_id:
            ready.append(drift.member_id)
        else:
            waiting.setdefault(holder, []).append(drift.member_id)
    order: list[str] = []
    queued = set(ready)
    cursor = 0
    while len(order) < len(by_member):
        if cursor == len(ready):
            # Everything left waits in a cycle: start it anywhere, the take strips the phone.
            start = min(m for m in by_member if m not in queued)
            ready.append(start)
            queued.add(start)
        member_id = ready[cursor]
        cursor += 1
        order.append(member_id)
        for waiter in waiting.pop(member_id, []):
            if waiter not in queued:
                ready.append(waiter)
                queued.add(waiter)
    return order
