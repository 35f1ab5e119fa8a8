"""The rules of the binding page's submit (the guide's step 3), over the store and the WeCom contacts.

The order is what keeps the store and WeCom from half states: claim the phone (a Phone, parsed
where it entered) in the store under a lease (I1, I2, I3 checked atomically), write it to WeCom,
then commit the claim; when WeCom says no, release the claim and nothing has changed. WeCom's
60104 is the truth about I1: it becomes guide 2.1, the claim is released and the conflict goes to
the audit log.

WeCom's truth about I3 is the member's status: user/update silently ignores the mobile of an
activated member (developer.work.weixin.qq.com/document/path/90197), so the flow reads the member
first (right after the login, `standing`, and again at the submit) and writes nothing for a member
who has joined, is disabled or has quit. Where the answer shows the mobile, the write is read back
before it is committed: no 绑定成功 that WeCom did not apply.

The store's word that another member holds a phone can be stale (an administrator changed a mobile
in the console, and since 2022-08-15 no event says so): before it alone refuses 2.1, WeCom is asked
who holds the phone (user/getuserid), within a daily budget of misses.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from handlers.core.binding import (
    AccountFollowed,
    Actor,
    AuditAction,
    BindingState,
    Claim,
    ClaimInProgress,
    ClaimLost,
    PhoneTaken,
)
from handlers.core.guide import ErrorCode
from handlers.core.member import MemberSeen, MemberStatus
from handlers.core.phone import Phone, mask_phone
from handlers.core.wecom_errors import (
    ContactsUntrustedIp,
    MobileExists,
    MobileInvalid,
    MobileNotFound,
    OutsideVisibleRange,
    UserIdExists,
    UserNotFound,
    WeComError,
    WeComUnanswered,
    WeComUnavailable,
)
from handlers.usecases.contacts import (
    ContactMember,
    ContactsThenApp,
    MemberReader,
    PhoneHolders,
    WeComContacts,
)
from handlers.usecases.contracts import BindingFlowStore, StoreUnavailable

log: Final = logging.getLogger(__name__)

DEFAULT_LEASE: Final = 60.0
"""Seconds a claim holds its phone: longer than the WeCom client's whole retry budget."""
ROOT_DEPARTMENT: Final = 1
"""WeCom's root department: where a member is created when its 院系 has no known department id."""
REPLAY_DELAYS: Final = (1.0, 2.0, 4.0, 8.0, 16.0)
"""Pauses before each replay of a write whose answer was lost: 31 s in all, within the lease."""
INVITE_MEMORY: Final = 365 * 24 * 3600.0
"""How long a member's invitation is remembered: "同一用户只须邀请一次" (document/path/90975)."""
MIN_DAILY_MISSES: Final = 10
"""user/getuserid misses allowed a day however small the directory (see daily_miss_budget)."""
_DAY_OFFSET: Final = 8 * 3600.0
"""WeCom's day is China's (UTC+8): its per-day limits start at Beijing midnight."""


CREATED_MEMORY: Final = 10 * 365 * 24 * 3600.0
"""How long the store remembers that the flow created a member (release and reconcile ask)."""


def created_key(member_id: str) -> str:
    """The store's kv key that says the flow created this member in WeCom (user/create)."""
    return f"created-by-flow:{member_id}"


def invite_key(member_id: str) -> str:
    """The store's kv key that remembers the member's invitation."""
    return f"invited:{member_id}"


def results_prefix(member_id: str) -> str:
    """The start of the kv keys of the student's binding forms' outcomes (what erase removes)."""
    return f"bind-result:{member_id}:"


def result_key(member_id: str, form_id: str) -> str:
    """The kv key of the outcome of one binding form, which the result page and a resend read."""
    return results_prefix(member_id) + form_id


def submits_key(member_id: str) -> str:
    """The kv key that counts the student's submits that reached the rules (the pages' limit)."""
    return f"rate:bind:student:{member_id}"


def daily_miss_budget(directory_count: int) -> int:
    """user/getuserid's misses the flow allows itself a day: 5% of the directory's students, at least
    MIN_DAILY_MISSES. WeCom bars the API for a day past 20% of the member cap ("若出错的次数超出企业
    人数上限的20%，会导致1天不可调用", document/path/95402); the directory stands in for the cap,
    which is no smaller, so the flow stops at a quarter of WeCom's line and falls back to the store."""
    return max(MIN_DAILY_MISSES, directory_count // 20)


class Standing(enum.StrEnum):
    """Where a student stands by WeCom's word on the member, read right after the login."""

    MAY_BIND = "may_bind"
    """未激活, or no member yet but in the directory (created on binding): the phone page."""
    JOINED = "joined"
    """已激活: following the WeChat plugin or using the WeCom app; nothing to bind."""
    DISABLED = "disabled"
    """已禁用: an administrator disabled the member; nothing may be written."""
    QUIT = "quit"
    """退出企业: the member left the organisation; nothing may be written."""
    UNKNOWN = "unknown"
    """In neither the directory nor WeCom: nobody to bind."""


def standing_of(status: int) -> Standing:
    """The standing of a member whose user/get status is this (an unknown status may bind)."""
    try:
        known = MemberStatus(status)
    except ValueError:
        return Standing.MAY_BIND
    return _STANDINGS[known]


_STANDINGS: Final = {
    MemberStatus.ACTIVATED: Standing.JOINED,
    MemberStatus.DISABLED: Standing.DISABLED,
    MemberStatus.NOT_ACTIVATED: Standing.MAY_BIND,
    MemberStatus.QUIT: Standing.QUIT,
}


class Refusal(enum.StrEnum):
    """Why a submit bound nothing; the first two are the guide's 2.1 and 2.2."""

    PHONE_TAKEN = "phone_taken"
    ACCOUNT_FOLLOWED = "account_followed"
    MOBILE_REFUSED = "mobile_refused"
    NOT_IN_DIRECTORY = "not_in_directory"
    IN_PROGRESS = "in_progress"
    MEMBER_JOINED = "member_joined"
    MEMBER_DISABLED = "member_disabled"
    MEMBER_QUIT = "member_quit"

    @property
    def standing(self) -> Standing | None:
        """The standing this refusal found at the submit, when it is one (the status pages show it)."""
        return _REFUSED_STANDINGS.get(self)

    @property
    def code(self) -> ErrorCode | None:
        """The guide's error code of this refusal, when the guide has one."""
        return _GUIDE_CODES.get(self)


_GUIDE_CODES: Final = {
    Refusal.PHONE_TAKEN: ErrorCode.PHONE_TAKEN,
    Refusal.ACCOUNT_FOLLOWED: ErrorCode.ACCOUNT_FOLLOWED,
}
_REFUSED_STANDINGS: Final = {
    Refusal.MEMBER_JOINED: Standing.JOINED,
    Refusal.MEMBER_DISABLED: Standing.DISABLED,
    Refusal.MEMBER_QUIT: Standing.QUIT,
    Refusal.NOT_IN_DIRECTORY: Standing.UNKNOWN,
}
_STANDING_REFUSALS: Final = {standing: refusal for refusal, standing in _REFUSED_STANDINGS.items()}


@dataclass(frozen=True, slots=True)
class Bound:
    """The phone is the member's, in the store and in WeCom.

    already_bound: it was already (nothing was written); created: the member was new to WeCom
    (user/create); invited: WeCom invited the member (user/create's to_invite, or batch/invite);
    followed: the member already follows.
    """

    member_id: str
    phone: Phone
    already_bound: bool
    created: bool
    invited: bool
    followed: bool

    @property
    def phone_masked(self) -> str:
        """The bound phone as pages and logs show it."""
        return mask_phone(self.phone)


@dataclass(frozen=True, slots=True)
class Refused:
    """Nothing was bound; corrected: WeCom's 60104 overruled the store, whose claim was released."""

    member_id: str
    reason: Refusal
    corrected: bool = False


@dataclass(frozen=True, slots=True)
class Confirming:
    """WeCom's answer to the write was lost (or the store failed after it): the claim is kept and the
    same write replayed in the background until WeCom answers, then committed or released."""

    member_id: str
    phone: Phone

    @property
    def phone_masked(self) -> str:
        """The claimed phone as pages and logs show it."""
        return mask_phone(self.phone)


BindResult = Bound | Refused | Confirming
ConfirmingEnded = Callable[[Bound | Refused | None], Awaitable[None]]
"""Told how a Confirming binding ended: bound, refused, or None when it is left to the lease."""


class BindingFlow:
    """Binds a student's phone: the store's claim, WeCom's contacts, then commit or release."""

    def __init__(
        self,
        *,
        store: BindingFlowStore,
        contacts: WeComContacts,
        departments: Mapping[str, int] | None = None,
        default_department: int = ROOT_DEPARTMENT,
        lease: float = DEFAULT_LEASE,
        replay_delays: Sequence[float] = REPLAY_DELAYS,
        reader: MemberReader | None = None,
        holders: PhoneHolders | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._contacts = contacts
        # Who reads a member's status: the app's secret where given. A contacts-sync assistant whose
        # trusted address was added after 2022-08-15 may write members but not read them (48009,
        # developer.work.weixin.qq.com/document/path/90196), while status is never hidden from an app.
        self._reader = reader if reader is not None else contacts
        # Who reads the write back: the contacts-sync assistant sees the mobile, where it may read.
        self._details = ContactsThenApp(contacts, self._reader)
        self._departments = dict(departments or {})
        self._default_department = default_department
        self._lease = lease
        self._replay_delays = tuple(replay_delays)
        self._replays: set[asyncio.Task[None]] = set()
        # Who WeCom gives a phone to, asked before the store's word alone refuses 2.1 (the app's secret).
        self._holders = holders
        self._clock = clock

    async def close(self) -> None:
        """Stop replaying: a claim still unconfirmed stays until its lease runs out (then reconcile)."""
        for task in list(self._replays):
            task.cancel()
        await asyncio.gather(*self._replays, return_exceptions=True)

    async def replays_ended(self) -> None:
        """Wait until every replay under way has ended, bound, refused or left to its lease."""
        while self._replays:
            await asyncio.gather(*self._replays, return_exceptions=True)

    async def standing(self, member_id: str, *, actor: Actor) -> Standing:
        """Where the student stands by WeCom's status of the member (read with the app's secret, from
        which status is never hidden), recorded in the store as WeCom's word (source "login");
        WeCom's failures propagate."""
        try:
            member = await self._read(member_id)
        except UserNotFound:
            entry = await self._store.directory_get(member_id)
            return Standing.MAY_BIND if entry is not None else Standing.UNKNOWN
        await self._seen(member_id, member.status, actor)
        return standing_of(member.status)

    async def _seen(self, member_id: str, status: int, actor: Actor) -> None:
        """Record WeCom's word on the member; a member newly seen as joined is audited."""
        try:
            known = MemberStatus(status)
        except ValueError:
            return
        try:
            changed = await self._store.record_members([MemberSeen(member_id, known, self._clock(), "login")])
            if changed and known is MemberStatus.ACTIVATED:
                await self._store.audit_note(
                    member_id, AuditAction.JOINED, "WeCom: activated (status 1), seen at login", actor=actor
                )
        except StoreUnavailable:
            log.warning("binding: could not record WeCom's status of %s", member_id)

    async def bind(
        self, member_id: str, phone: Phone, *, actor: Actor, on_ended: ConfirmingEnded | None = None
    ) -> BindResult:
        """Bind the phone to the member, or say which rule refused it; WeCom outages before the
        write propagate. A write whose outcome is unknown is Confirming: on_ended hears how it ended."""
        try:
            claim = await self._claim(member_id, phone, actor)
        except PhoneTaken:
            holder = await self._store.get_binding_by_phone(phone)
            held_by = f", held by {holder.member_id}" if holder is not None else ""
            await self._record_refusal(member_id, phone, Refusal.PHONE_TAKEN, f"store I1{held_by}", actor)
            return Refused(member_id, Refusal.PHONE_TAKEN)
        except AccountFollowed:
            await self._record_refusal(member_id, phone, Refusal.ACCOUNT_FOLLOWED, "store I3", actor)
            return Refused(member_id, Refusal.ACCOUNT_FOLLOWED)
        except ClaimInProgress:
            return Refused(member_id, Refusal.IN_PROGRESS)
        if claim.already_bound:
            binding = await self._store.get_binding(member_id)
            followed = binding is not None and binding.state is BindingState.FOLLOWED
            invited = False if followed else await self._invite(member_id)
            return Bound(
                member_id, phone, already_bound=True, created=False, invited=invited, followed=followed
            )
        try:
            created = await self._write(member_id, phone)
        except _Stop as stop:
            return await self._refuse(claim, stop)
        except _OutcomeUnknown as unknown:
            log.warning("binding: member %s: %s; confirming in the background", member_id, unknown)
            return self._confirm_later(claim, on_ended)
        except asyncio.CancelledError:
            # Stopped with the write perhaps at WeCom: the claim stays, its lease runs out and
            # reconcile fixes the member from WeCom's truth (never a phone there without its record).
            raise
        except BaseException:
            # WeCom was down or refused before the write: nothing may stay claimed.
            await self._release(claim)
            raise
        try:
            await self._commit(claim)
        except StoreUnavailable:
            # WeCom holds the phone now: the claim is kept until the store takes the commit.
            log.warning("binding: member %s: the store failed after WeCom's write; confirming", member_id)
            return self._confirm_later(claim, on_ended)
        log.info("binding: member %s bound %s (created: %s)", member_id, mask_phone(phone), created)
        # user/create invited the new member already; an existing member is invited here.
        invited = True if created else await self._invite(member_id)
        return Bound(member_id, phone, already_bound=False, created=created, invited=invited, followed=False)

    async def _claim(self, member_id: str, phone: Phone, actor: Actor) -> Claim:
        """The store's claim; when the store gives the phone to another member, WeCom is asked first."""
        try:
            return await self._store.claim_phone(member_id, phone, lease=self._lease, actor=actor)
        except PhoneTaken:
            if not await self._stale_released(member_id, phone, actor):
                raise
        return await self._store.claim_phone(member_id, phone, lease=self._lease, actor=actor)

    async def _stale_released(self, member_id: str, phone: Phone, actor: Actor) -> bool:
        """Ask WeCom who holds the phone; True when the store's holder was stale and lost it."""
        if self._holders is None:
            return False
        misses_key = f"wecom:getuserid-misses:{int((self._clock() + _DAY_OFFSET) // 86400)}"
        misses = await self._store.kv_get(misses_key)
        budget = daily_miss_budget(await self._store.directory_count())
        if misses is not None and misses.isdigit() and int(misses) >= budget:
            log.warning("binding: user/getuserid's %d misses today reached; the store's word stands", budget)
            return False
        try:
            holder: str | None = await self._holders.user_getuserid(phone)
        except MobileNotFound:
            holder = None
            await self._store.kv_incr(misses_key, ttl=2 * 86400.0)
        except WeComError as exc:
            log.warning("binding: user/getuserid failed (errcode %s); the store's word stands", exc.errcode)
            return False
        released = await self._store.release_stale_phone(
            phone, claimant=member_id, wecom_holder=holder, actor=actor
        )
        if released:
            log.info("binding: WeCom gives %s to %s: the store's stale holder lost it",
                     mask_phone(phone), holder or "nobody")
        return released

    async def _refuse(self, claim: Claim, stop: _Stop) -> Refused:
        await self._release(claim)
        if stop.status is not None:
            await self._seen(claim.member_id, stop.status, claim.actor)
        # WeCom overruling the store on I1 (60104) is a conflict like the others: the audit log
        # says so beside the released claim.
        await self._record_refusal(claim.member_id, claim.phone, stop.reason, stop.why, claim.actor)
        corrected = stop.reason is Refusal.PHONE_TAKEN
        return Refused(claim.member_id, stop.reason, corrected=corrected)

    async def _commit(self, claim: Claim) -> None:
        try:
            await self._store.commit_claim(claim)
        except ClaimLost:
            # WeCom's change_contact for this very write may be handled first, setting the member's
            # phone before we commit: that is the same outcome, not a failure.
            binding = await self._store.get_binding(claim.member_id)
            held = BindingState.BOUND, BindingState.FOLLOWED
            if binding is None or binding.phone != claim.phone or binding.state not in held:
                raise

    def _confirm_later(self, claim: Claim, on_ended: ConfirmingEnded | None) -> Confirming:
        task = asyncio.create_task(self._replay(claim, on_ended))
        self._replays.add(task)
        task.add_done_callback(self._replays.discard)
        return Confirming(claim.member_id, claim.phone)

    async def _replay(self, claim: Claim, on_ended: ConfirmingEnded | None) -> None:
        """Replay the same idempotent write until WeCom answers, then commit or release."""
        outcome: Bound | Refused | None = None
        for delay in self._replay_delays:
            await asyncio.sleep(delay)
            try:
                await self._write(claim.member_id, claim.phone)
                await self._commit(claim)
            except _Stop as stop:
                outcome = await self._refuse(claim, stop)
                break
            except (_OutcomeUnknown, WeComUnavailable, StoreUnavailable) as exc:
                log.info("binding: member %s still unconfirmed (%s)", claim.member_id, exc)
                continue
            except (WeComError, ClaimLost) as exc:
                # Nothing a replay can resolve: the lease runs out and reconcile fixes it from WeCom.
                log.warning("binding: member %s left to its lease (%s)", claim.member_id, type(exc).__name__)
                break
            log.info("binding: member %s bound %s (confirmed)", claim.member_id, mask_phone(claim.phone))
            outcome = Bound(claim.member_id, claim.phone, already_bound=False, created=False, invited=False,
                            followed=False)
            break
        else:
            log.warning("binding: member %s unconfirmed; left to its lease, then reconcile", claim.member_id)
        if on_ended is not None:
            try:
                await on_ended(outcome)
            except StoreUnavailable:
                log.warning("binding: could not record how member %s's binding ended", claim.member_id)

    async def _read(self, member_id: str) -> ContactMember:
        """The member as WeCom shows it for its status; UserNotFound when WeCom has none."""
        try:
            return await self._reader.user_get(member_id)
        except (OutsideVisibleRange, UserNotFound) as outside:
            # 60111 is also WeCom's answer for a member outside the app's visible range (90313 60111:
            # "d) 成员不在应用可见范围内"): handled as 60011.
            if self._reader is self._contacts or self._details.app_reads:
                raise
            # Outside the app's visible range: the contacts-sync assistant sees every member, where it
            # may read. Today's may not (48009, developer.work.weixin.qq.com/document/path/90196): the
            # remedy is then the app's visible range, not the assistant's trusted IPs. Once it has
            # answered 48009 it is not asked again: every student not yet a member answers 60111, and
            # each user/get counts against WeCom's per-API minute limit.
            try:
                return await self._contacts.user_get(member_id)
            except ContactsUntrustedIp:
                self._details.contacts_may_not_read()
                raise outside from None

    async def _write(self, member_id: str, phone: Phone) -> bool:
        """Write the phone to WeCom; True when the member had to be created."""
        try:
            member: ContactMember | None = await self._read(member_id)
        except UserNotFound:
            member = None
        if member is None:
            created = await self._create(member_id, phone)
            if created:
                return True
            try:
                member = await self._read(member_id)
            except UserNotFound as exc:
                # user/create says the member exists, user/get says none: one the app may not see.
                raise OutsideVisibleRange(
                    60011, "user/get answered 60111 for a member that exists: outside the visible range"
                ) from exc
        standing = standing_of(member.status)
        if standing in (Standing.DISABLED, Standing.QUIT):
            raise _Stop(_STANDING_REFUSALS[standing], f"wecom: the member's status is {member.status}",
                           status=member.status)
        if member.mobile_shown and member.mobile == phone:
            return False  # WeCom holds it already: writing it again would change nothing
        if standing is Standing.JOINED:
            raise _Stop(Refusal.MEMBER_JOINED, "wecom: the member is activated (status 1)",
                           status=member.status)
        with _writing_mobile("user/update"):
            await self._contacts.user_update(member_id, mobile=phone)
        if not member.mobile_shown and self._details.app_reads:
            # The read-back would be the app's view that has just hidden the mobile, so it could tell
            # nothing; and every user/get counts against WeCom's 10,000 a minute for that API
            # (developer.work.weixin.qq.com/document/path/90312).
            return False
        try:
            await self._confirm(member_id, phone)
        except WeComUnavailable as exc:
            raise _OutcomeUnknown(f"user/update unconfirmed ({exc.errmsg})") from exc
        return False

    async def _create(self, member_id: str, phone: Phone) -> bool:
        """user/create from the directory; False when someone created the member meanwhile."""
        entry = await self._store.directory_get(member_id)
        if entry is None:
            raise _Stop(Refusal.NOT_IN_DIRECTORY, "member in neither WeCom nor the directory")
        department = self._departments.get(entry.department, self._default_department)
        try:
            with _writing_mobile("user/create"):
                # user/create invites the new member by default (to_invite,
                # developer.work.weixin.qq.com/document/path/90195): no batch/invite follows it.
                await self._contacts.user_create(
                    userid=member_id, name=entry.name, department=[department], mobile=phone
                )
        except UserIdExists:
            return False
        try:
            await self._store.kv_set(created_key(member_id), "1", ttl=CREATED_MEMORY)
        except StoreUnavailable:
            log.warning("binding: could not remember that member %s was created here", member_id)
        await self._remember_invite(member_id)
        return True

    async def _confirm(self, member_id: str, phone: Phone) -> None:
        """Read the write back where WeCom shows the mobile; a hidden one is unknown, not a failure."""
        member = await self._details.user_get(member_id)
        if not member.mobile_shown or member.mobile == phone:
            return
        if member.status == MemberStatus.ACTIVATED:
            # Activated between our read and our write: WeCom ignored the mobile.
            raise _Stop(Refusal.MEMBER_JOINED, "wecom: the member activated; the mobile was ignored",
                           status=member.status)
        raise WeComUnavailable(-1, "user/update answered 0 but WeCom does not hold the mobile")

    async def _invite(self, member_id: str) -> bool:
        # "同一用户只须邀请一次" (document/path/90975): a member invited before is not invited again
        # by a resubmission; an administrator invites again on purpose (`wecom-bind invite`).
        if await self._store.kv_get(invite_key(member_id)) is not None:
            return True
        # The binding stands without the invite: the student can still scan the follow QR.
        try:
            outcome = await self._contacts.batch_invite(users=[member_id])
        except WeComError as exc:
            log.warning("binding: batch/invite of %s failed (errcode %s)", member_id, exc.errcode)
            return False
        if member_id in outcome.invalid_users:
            return False
        await self._remember_invite(member_id)
        return True

    async def _remember_invite(self, member_id: str) -> None:
        try:
            await self._store.kv_set(invite_key(member_id), "1", ttl=INVITE_MEMORY)
        except StoreUnavailable:
            log.warning("binding: could not remember the invitation of %s", member_id)

    async def _record_refusal(
        self, member_id: str, phone: Phone, reason: Refusal, why: str, actor: Actor
    ) -> None:
        # One conflict record per refusal, "<refusal>: <why>", so that the admin console can say
        # who is stuck on which error, since when and how often.
        try:
            await self._store.audit_conflict(member_id, phone, f"{reason.value}: {why}", actor=actor)
        except StoreUnavailable:
            log.exception("binding: recording the refusal of member %s failed", member_id)

    async def _release(self, claim: Claim) -> None:
        try:
            await self._store.release_claim(claim)
        except StoreUnavailable:
            # Its lease runs out, and reconciliation fixes the member from WeCom's truth.
            log.exception("binding: releasing the claim of member %s failed", claim.member_id)


class _OutcomeUnknown(Exception):
    """A write was sent and WeCom's answer never came: it may or may not have been applied."""


@contextlib.contextmanager
def _writing_mobile(api: str) -> Iterator[None]:
    """WeCom's refusals of a mobile written by `api` as the flow's refusals; no answer as unknown."""
    try:
        yield
    except MobileExists as exc:
        raise _Stop(Refusal.PHONE_TAKEN, "wecom 60104: mobile belongs to another member") from exc
    except MobileInvalid as exc:
        raise _Stop(Refusal.MOBILE_REFUSED, "wecom 60103: mobile refused") from exc
    except WeComUnanswered as exc:
        raise _OutcomeUnknown(f"{api} unanswered ({exc.errmsg})") from exc


class _Stop(Exception):
    """The submit stops here, refused for a reason the student can act on (a Refusal)."""

    def __init__(self, reason: Refusal, why: str, *, status: int | None = None) -> None:
        super().__init__(why)
        self.reason = reason
        self.why = why
        self.status = status
        """WeCom's status of the member, when it is what stopped the submit (recorded as WeCom's word)."""

