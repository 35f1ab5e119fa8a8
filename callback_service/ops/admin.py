"""Admin commands on the store: bindings, the audit log and the inbox. Phones are always masked."""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Callable

from handlers.core.binding import Actor, AuditRecord, Binding
from handlers.core.phone import InvalidPhone, Phone, mask_phone
from handlers.usecases.contracts import Store

Print = Callable[[str], None]


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def describe_binding(binding: Binding) -> str:
    """One line on a binding, phone masked."""
    phone = mask_phone(binding.phone) if binding.phone else "-"
    parts = [f"member {binding.member_id}", f"state {binding.state}", f"phone {phone}"]
    if binding.openid:
        parts.append(f"openid {binding.openid}")
    if binding.previous_phone:
        parts.append(f"previous {mask_phone(binding.previous_phone)}")
    if binding.lease_expires_at is not None:
        parts.append(f"lease until {_when(binding.lease_expires_at)}")
    parts.append(f"updated {_when(binding.updated_at)}")
    return "  ".join(parts)


def describe_audit(record: AuditRecord) -> str:
    """One line on an audit record."""
    phone = record.phone_masked or "-"
    detail = f"  {record.detail}" if record.detail else ""
    return (
        f"{_when(record.at)}  {record.action:<14} member {record.member_id}  phone {phone}"
        f"  by {record.who} ({record.source}){detail}"
    )


def admin_actor(reason: str) -> Actor:
    """The actor of an admin command: the operating-system user, and the reason given."""
    return Actor(who=f"admin:{getpass.getuser()}", source=f"cli: {reason}")


async def binding_show(store: Store, member_id: str, out: Print) -> int:
    """Print a member's binding and its recent audit records."""
    binding = await store.get_binding(member_id)
    if binding is None:
        out(f"member {member_id}: no binding")
        return 1
    out(describe_binding(binding))
    for record in await store.audit_list(member_id=member_id, limit=20):
        out("  " + describe_audit(record))
    return 0


async def binding_by_phone(store: Store, phone_text: str, out: Print) -> int:
    """Print the binding that holds a phone, typed as a student would type it; the phone masked."""
    try:
        phone = Phone.parse(phone_text)
    except InvalidPhone as exc:
        out(f"not a mainland mobile number ({exc})")
        return 2
    binding = await store.get_binding_by_phone(phone)
    if binding is None:
        out(f"phone {phone.masked}: held by no member")
        return 1
    out(describe_binding(binding))
    return 0


async def binding_release(store: Store, member_id: str, reason: str, out: Print) -> int:
    """Free a member's phone and binding, with the reason in the audit log."""
    if not reason.strip():
        out("a reason is required (--reason TEXT)")
        return 2
    released = await store.delete_member(member_id, actor=admin_actor(reason.strip()))
    out(f"member {member_id}: " + ("binding released" if released else "no binding to release"))
    return 0 if released else 1


async def audit(store: Store, member_id: str | None, limit: int, out: Print) -> int:
    """Print the audit log, newest first."""
    for record in await store.audit_list(member_id=member_id, limit=limit):
        out(describe_audit(record))
    return 0


async def inbox_status(store: Store, out: Print) -> int:
    """Print the inbox counts and the dead letters."""
    stats = await store.inbox_stats()
    out(f"pending {stats.pending}  leased {stats.leased}  dead {stats.dead}")
    for item in await store.inbox_list_dead():
        out(f"  dead #{item.id} {item.event_type} attempts {item.attempts}: {item.last_error or ''}")
    return 0


async def inbox_retry_dead(store: Store, out: Print) -> int:
    """Put every dead letter back in the inbox."""
    count = await store.inbox_requeue_dead()
    out(f"{count} dead letter(s) requeued")
    return 0
