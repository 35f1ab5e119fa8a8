"""The Store's rule-keeping methods, for both backends: read, decide (handlers.core.rules), apply.

A backend provides `_decide(first, rule, actor)`: read the keys in `first` (and any the rule asks
for through Unread), run the rule with handlers.core.rules.decide, and apply the decision atomically
provided that nothing it read has changed, else read and decide again. The rules themselves live
only in handlers.core.rules.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

from callback_service.store.common import new_token, positive
from handlers.core import rules
from handlers.core.binding import Actor, AuditAction, Binding, Claim
from handlers.core.phone import Phone
from handlers.core.reconcile import Fix
from handlers.core.rules import Draft, Key, binding_key, openid_key, phone_key

T = TypeVar("T")

MAX_READS = 16
"""Records one decision may ask for, at most (the rules read five at most): a bound on the loop."""


class RulesRunner(abc.ABC):
    """The binding rules of the Store protocol as read → decide → apply over `_decide`."""

    @abc.abstractmethod
    async def _decide(
        self, first: Sequence[Key], rule: Callable[[Draft], T], actor: Actor | None, *, guess: bool = False
    ) -> T:
        """Read, decide and apply atomically; return the outcome or raise the refusal.

        guess: a backend whose reads cost a round trip may first decide as if every key of first
        were absent (the usual case), and read only when its compare-and-apply finds otherwise.
        """

    @abc.abstractmethod
    async def _look(self, first: Sequence[Key], rule: Callable[[Draft], T]) -> T:
        """Read and decide a rule that writes nothing (a lookup), from one consistent view."""

    async def get_binding_by_phone(self, phone: Phone) -> Binding | None:
        """Return the binding that holds the phone, or None when the phone is free."""
        return await self._look([phone_key(phone)], partial(rules.phone_holder, phone=phone))

    async def get_binding_by_openid(self, openid: str) -> Binding | None:
        """Return the binding of the member that this openid follows as, or None."""
        return await self._look([openid_key(openid)], partial(rules.openid_member, openid=openid))

    async def claim_phone(self, member_id: str, phone: Phone, *, lease: float, actor: Actor) -> Claim:
        """Hold the phone for the member under a lease (handlers.core.rules.claim)."""
        rule = partial(
            rules.claim,
            member_id=member_id,
            phone=phone,
            lease=positive("lease", lease),
            token=new_token(),
            actor=actor,
        )
        # Most claims are a member's first, of a free phone: guess so, the apply checks it.
        return await self._decide([binding_key(member_id), phone_key(phone)], rule, actor, guess=True)

    async def commit_claim(self, claim: Claim) -> Binding:
        """Make the claimed phone the bound one (handlers.core.rules.commit)."""
        first = [binding_key(claim.member_id)]
        if claim.previous_phone is not None:
            first.append(phone_key(claim.previous_phone))
        return await self._decide(first, partial(rules.commit, held=claim), claim.actor)

    async def release_claim(self, claim: Claim) -> bool:
        """Give the claim up (handlers.core.rules.release)."""
        if claim.already_bound:
            return True
        first = [binding_key(claim.member_id), phone_key(claim.phone)]
        return await self._decide(first, partial(rules.release, held=claim), claim.actor)

    async def follow(self, member_id: str, openid: str, *, actor: Actor) -> Binding:
        """Record the follow (handlers.core.rules.follow, I4)."""
        first = [binding_key(member_id), openid_key(openid)]
        return await self._decide(first, partial(rules.follow, member_id=member_id, openid=openid), actor)

    async def unfollow(self, member_id: str, *, actor: Actor) -> Binding | None:
        """Record the unfollow (handlers.core.rules.unfollow)."""
        return await self._decide(
            [binding_key(member_id)], partial(rules.unfollow, member_id=member_id), actor
        )

    async def set_member_phone(
        self, member_id: str, phone: Phone | None, *, take: bool, actor: Actor, spare_live_claim: bool = False
    ) -> Binding | None:
        """Set the member's phone to WeCom's truth (handlers.core.rules.set_phone)."""
        first = [binding_key(member_id)] + ([] if phone is None else [phone_key(phone)])
        rule = partial(
            rules.set_phone, member_id=member_id, wanted=phone, take=take, spare_live_claim=spare_live_claim
        )
        return await self._decide(first, rule, actor)

    async def fix_drift(
        self, member_id: str, fix: Fix, phone: Phone | None, *, seen: Binding | None, actor: Actor
    ) -> Binding | None:
        """Reconcile's fix, applied only while the binding is still `seen` (handlers.core.rules.fix_drift)."""
        wanted = None if fix is not Fix.SET_PHONE else phone
        first = [binding_key(member_id)] + ([] if wanted is None else [phone_key(wanted)])
        rule = partial(rules.fix_drift, member_id=member_id, fix=fix, wanted=wanted, seen=seen)
        return await self._decide(first, rule, actor)

    async def release_stale_phone(
        self, phone: Phone, *, claimant: str, wecom_holder: str | None, actor: Actor
    ) -> bool:
        """Free a phone the store gives to a member WeCom does not (handlers.core.rules.stale_phone)."""
        rule = partial(rules.stale_phone, phone=phone, claimant=claimant, wecom_holder=wecom_holder)
        return await self._decide([phone_key(phone)], rule, actor)

    async def delete_member(self, member_id: str, *, actor: Actor) -> bool:
        """Remove the member's binding (handlers.core.rules.delete)."""
        return await self._decide([binding_key(member_id)], partial(rules.delete, member_id=member_id), actor)

    async def rename_member(self, old_id: str, new_id: str, *, actor: Actor) -> Binding | None:
        """Move a binding to a new member id (handlers.core.rules.rename)."""
        first = [binding_key(old_id), binding_key(new_id)]
        return await self._decide(first, partial(rules.rename, old_id=old_id, new_id=new_id), actor)

    async def audit_note(self, member_id: str, action: AuditAction, detail: str, *, actor: Actor) -> None:
        """Append an audit record that changes nothing else (handlers.core.rules.note)."""
        rule = partial(rules.note, member_id=member_id, action=action, detail=detail)
        await self._decide([], rule, actor)

    async def audit_conflict(self, member_id: str, phone: Phone | None, detail: str, *, actor: Actor) -> None:
        """Record a refused change (handlers.core.rules.conflict)."""
        rule = partial(rules.conflict, member_id=member_id, phone=phone, detail=detail)
        await self._decide([], rule, actor)
