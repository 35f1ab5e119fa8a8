"""Rule conflicts: a change that a rule refused is counted, audited with the phone masked, and logged."""

from __future__ import annotations

import logging
from typing import Final, Protocol

from handlers.core.binding import Actor
from handlers.core.phone import Phone, mask_phone
from handlers.usecases.contracts import Store

log: Final = logging.getLogger(__name__)

CONFLICTS: Final = "wecom_bind_rule_conflicts_total"


class Counters(Protocol):
    """Where the rules count what operations should see."""

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        ...


async def record_conflict(
    store: Store,
    counters: Counters | None,
    *,
    rule: str,
    member_id: str,
    phone: Phone | None,
    detail: str,
    actor: Actor,
) -> None:
    """Count the refusal, write it to the audit log, and log it; nothing else changes."""
    if counters is not None:
        counters.inc(CONFLICTS, rule=rule)
    await store.audit_conflict(member_id, phone, f"{rule}: {detail}", actor=actor)
    masked = mask_phone(phone) if phone else "-"
    log.warning("rule %s refused a change for member %s (phone %s): %s", rule, member_id, masked, detail)
