"""`wecom-bind binding release` and `wecom-bind invite`: the administrator's commands that reach WeCom.

A release frees the binding in the store and the phone in WeCom where WeCom allows it
(handlers.usecases.release); an invitation is sent again on purpose, though the flow sends one per
member ("同一用户只须邀请一次", document/path/90975).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp

from callback_service.clients.wecom import WeComClient, WeComError
from callback_service.ops.admin import admin_actor
from config import Settings
from handlers.core.binding import AuditAction
from handlers.usecases.binding_flow import INVITE_MEMORY, invite_key
from handlers.usecases.contracts import Store
from handlers.usecases.release import InWeCom, Released, release

Print = Callable[[str], None]

EXIT_WECOM = 4
"""The exit status when WeCom cannot be reached or refuses (the store's is 3, in the CLI)."""

_IN_WECOM: dict[InWeCom, str] = {
    InWeCom.CLEARED: (
        "its mobile {phone} was cleared in WeCom too: the phone is free for another student"
    ),
    InWeCom.KEPT_ACTIVATED: (
        "WeCom keeps the mobile {phone}: the member has activated (已激活), and WeCom lets only the member "
        "change it (企业微信 → 我 → 个人信息 → 手机; user/update ignores it, document/path/90197). "
        "Until then WeCom refuses {phone} to any other member (60104, 2.1)"
    ),
    InWeCom.KEPT_NO_EMAIL: (
        "WeCom keeps the mobile {phone}: it refuses a member with neither mobile nor email (60129). In the "
        "admin console, 通讯录 → the member → 编辑: give an email and clear the mobile, or delete the member "
        "(this service created it and it never activated)"
    ),
    InWeCom.KEPT_NOT_CREATED: (
        "WeCom keeps the mobile {phone}: the member existed before this service wrote it, so the service "
        "leaves it; clear it in the admin console (通讯录 → the member → 编辑) if another student needs it"
    ),
    InWeCom.NO_MEMBER: "WeCom has no such member: nothing holds {phone} there",
    InWeCom.NOTHING: "",
}


@asynccontextmanager
async def _clients(settings: Settings, store: Store) -> AsyncIterator[tuple[WeComClient, WeComClient]]:
    """(the contacts-sync client, the app's client), on one HTTP session."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, connect=5)) as session:
        def client(secret: str, *, is_contacts: bool) -> WeComClient:
            return WeComClient(
                session=session, api_base=settings.wecom_api_base, corp_id=settings.corp_id,
                secret=secret, store=store, contacts=is_contacts,
            )

        yield (
            client(settings.contacts_secret.get_secret_value(), is_contacts=True),
            client(settings.app_secret.get_secret_value(), is_contacts=False),
        )


def describe_release(done: Released) -> str:
    """What a release did, in one or two lines; the phone masked."""
    if not done.released:
        return f"member {done.member_id}: no binding to release"
    line = f"member {done.member_id}: binding released"
    wecom = _IN_WECOM[done.in_wecom].format(phone=done.phone_masked or "-")
    return line if not wecom else f"{line}\n  {wecom}"


async def release_command(store: Store, settings: Settings, member_id: str, reason: str, out: Print) -> int:
    """`wecom-bind binding release ID --reason TEXT`: the store, then WeCom where it allows."""
    if not reason.strip():
        out("a reason is required (--reason TEXT)")
        return 2
    async with _clients(settings, store) as (contacts, app):
        try:
            done = await release(store, contacts, app, member_id, actor=admin_actor(reason.strip()))
        except WeComError as exc:
            out(f"member {member_id}: binding released in the store; WeCom could not be asked or refused"
                f" (errcode {exc.errcode}): clear the mobile in the admin console if another student"
                " needs it")
            return EXIT_WECOM
    out(describe_release(done))
    return 0 if done.released else 1


async def invite_command(
    store: Store, settings: Settings, member_ids: list[str], reason: str, out: Print
) -> int:
    """`wecom-bind invite ID... --reason TEXT`: invite members again on purpose (batch/invite), audited."""
    if not reason.strip():
        out("a reason is required (--reason TEXT)")
        return 2
    actor = admin_actor(reason.strip())
    async with _clients(settings, store) as (contacts, _):
        try:
            outcome = await contacts.batch_invite(users=member_ids)
        except WeComError as exc:
            out(f"WeCom refused batch/invite (errcode {exc.errcode}): nobody was invited")
            return EXIT_WECOM
    invalid = set(outcome.invalid_users)
    for member_id in member_ids:
        if member_id in invalid:
            out(f"member {member_id}: WeCom could not invite it"
                " (no such member, or outside the visible range)")
            continue
        await store.kv_set(invite_key(member_id), "1", ttl=INVITE_MEMORY)
        await store.audit_note(member_id, AuditAction.INVITE, "invited again (batch/invite)", actor=actor)
        out(f"member {member_id}: invited")
    return 0 if not invalid else 1
