"""The console's pages: the campaign at a glance, who is stuck, one student, the lists to chase and
the directory upload. Views are thin: they read the store through ConsoleStore, compute with
campaign.py, and audit every action under the administrator's id."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Final, get_args
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from callback_service.admin import campaign
from callback_service.admin.auth import Admin, console, console_upload, message, refused_form, render, url
from callback_service.admin.chart import NARROW, lay_out
from callback_service.admin.keys import ADMIN_CAS, ADMIN_SESSIONS
from callback_service.clients.wecom import WECOM_APP, WECOM_CONTACTS
from callback_service.compose import CLOCK, SETTINGS
from callback_service.directory import FileEncoding, import_directory, parse_directory
from callback_service.store import CONSOLE_STORE
from callback_service.web.pages.session import SESSIONS
from handlers.core.binding import AuditAction, AuditRecord, Binding, BindingState, DirectoryEntry
from handlers.core.events import EventKind
from handlers.core.member import USERID, MemberSeen, MemberStatus
from handlers.core.phone import mask_phone
from handlers.core.wecom_errors import MobileNotFound, UserNotFound, WeComError
from handlers.usecases.binding_flow import INVITE_MEMORY, invite_key
from handlers.usecases.contacts import ContactsThenApp
from handlers.usecases.contracts import ConsoleStore
from handlers.usecases.release import InWeCom, describe_release, release

log: Final = logging.getLogger(__name__)

DAY: Final = 24 * 3600.0
NOT_A_STUDENT: Final = "*"
"""The audit record's member of an action about no one student (an import, an export, the inbox)."""
_SEARCH_LIMIT: Final = 50
_MAX_QUERY: Final = 64
MAX_UPLOAD: Final = 8 * 1024 * 1024
"""The largest directory CSV the console takes (30,000 students are about 1.5 MB)."""
_UPLOAD_TTL: Final = 30 * 60.0
_ERROR_TEXT: Final = 300


def _store(request: web.Request) -> ConsoleStore:
    return request.app[CONSOLE_STORE]


def when(at: float | None) -> str:
    """A time as the console shows it: campus time, to the minute."""
    if at is None:
        return "-"
    return dt.datetime.fromtimestamp(at, campaign.CAMPUS_TZ).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True, slots=True)
class Campaign:
    """Everything the overview, the stuck list and the export read, at one moment."""

    read_at: float
    rows: list[campaign.StudentRow]
    overview: campaign.Overview
    stuck: list[campaign.StuckStudent]
    directory: dict[str, DirectoryEntry]
    bindings: dict[str, Binding]
    seen: dict[str, MemberSeen]
    activity: list[AuditRecord]


CAMPAIGN_TTL: Final = 30.0
"""How long one reading of the campaign serves every console page: it reads the whole directory and
every binding on the SQLite store's one thread, which the students' writes share."""


@dataclass(slots=True)
class CampaignCache:
    """The last reading of the campaign in this process; an action that changes it forgets it."""

    last: Campaign | None = None

    def forget(self) -> None:
        """The next page reads the store again."""
        self.last = None


CAMPAIGN_CACHE: Final = web.AppKey("admin_campaign", CampaignCache)


async def _campaign(request: web.Request) -> Campaign:
    """The campaign as last read, if younger than CAMPAIGN_TTL and not refused (?fresh=1)."""
    cache = request.app[CAMPAIGN_CACHE]
    now = request.app[CLOCK]()
    last = cache.last
    if last is not None and 0 <= now - last.read_at < CAMPAIGN_TTL and "fresh" not in request.query:
        return last
    store = _store(request)
    directory = await store.directory_list()
    bindings = {binding.member_id: binding for binding in await store.list_bindings()}
    seen = {member.member_id: member for member in await store.list_members_seen()}
    refusals = await store.audit_since(now - campaign.REFUSAL_DAYS * DAY, actions=[AuditAction.CONFLICT])
    activity = await store.audit_since(
        now - (campaign.CHART_DAYS + 1) * DAY, actions=[AuditAction.BIND, AuditAction.FOLLOW]
    )
    stuck = campaign.stuck_students(refusals, bindings)
    rows = campaign.student_rows(directory, bindings, seen, stuck, now)
    cache.last = Campaign(
        read_at=now,
        rows=rows,
        overview=campaign.overview(rows, bindings, seen),
        stuck=stuck,
        directory={entry.member_id: entry for entry in directory},
        bindings=bindings,
        seen=seen,
        activity=activity,
    )
    return cache.last


def _changed(request: web.Request) -> None:
    """An action changed what the campaign counts: the next page reads it afresh."""
    request.app[CAMPAIGN_CACHE].forget()


# the campaign at a glance


@console
async def dashboard(request: web.Request, admin: Admin) -> web.StreamResponse:
    """/admin: the counts overall and by 院系, and bindings and follows per day and per hour."""
    state = await _campaign(request)
    now = state.read_at
    daily = campaign.activity(state.activity, now, hourly=False)
    hourly = campaign.activity(state.activity, now, hourly=True)
    inbox = await _store(request).inbox_stats()
    context = {
        "overview": state.overview,
        "charts": [
            ("近 14 天每日绑定与关注", lay_out(daily), lay_out(daily, width=NARROW)),
            ("近 48 小时每小时绑定与关注", lay_out(hourly), lay_out(hourly, width=NARROW)),
        ],
        "stuck_count": len({student.member_id for student in state.stuck}),
        "inbox": inbox,
        "now": when(now),
        "fresh_url": url(request, "admin") + "?fresh=1",
        "seen_count": len(state.seen),
    }
    return render(request, admin, "dashboard.html", context)


# who is stuck


_EVENT_NAMES: Final[dict[str, str]] = {
    EventKind.SUBSCRIBE: "关注",
    EventKind.UNSUBSCRIBE: "取消关注",
    EventKind.ENTER_AGENT: "进入应用",
    EventKind.CREATE_USER: "通讯录：新增成员",
    EventKind.UPDATE_USER: "通讯录：更新成员",
    EventKind.DELETE_USER: "通讯录：删除成员",
    EventKind.UNKNOWN: "未知事件",
}
"""A dead letter's event as the console names it (the inbox keeps EventKind's value)."""


@console
async def stuck(request: web.Request, admin: Admin) -> web.StreamResponse:
    """/admin/stuck: the students refused lately by error, and the inbox's dead letters."""
    state = await _campaign(request)
    groups: dict[campaign.Stuck, list[dict[str, Any]]] = {}
    for student in state.stuck:
        entry = state.directory.get(student.member_id)
        holder = state.bindings.get(student.holder) if student.holder else None
        holder_entry = state.directory.get(student.holder) if student.holder else None
        groups.setdefault(student.stuck, []).append(
            {
                "student": student,
                "name": entry.name if entry else None,
                "department": entry.department if entry else None,
                "first": when(student.first_at),
                "last": when(student.last_at),
                "holder_name": holder_entry.name if holder_entry else None,
                "holder_state": _state_label(holder),
                "holder_wecom": _seen_label(state.seen.get(student.holder)) if student.holder else None,
            }
        )
    ordered = [(kind, groups[kind]) for kind in campaign.Stuck if kind in groups]
    dead = [
        {
            "item": item,
            "created": when(item.created_at),
            "kind": _EVENT_NAMES.get(item.event_type, item.event_type),
            "error": (item.last_error or "")[:_ERROR_TEXT],
        }
        for item in await _store(request).inbox_list_dead()
    ]
    context = {"groups": ordered, "days": campaign.REFUSAL_DAYS, "dead": dead}
    return render(request, admin, "stuck.html", context)


@console
async def inbox_action(request: web.Request, admin: Admin) -> web.StreamResponse:
    """POST /admin/inbox/{action}: retry or drop a dead letter (a drop asks for confirmation)."""
    action = request.match_info["action"]
    form = await request.post()
    raw = form.get("item")
    if action not in ("retry", "drop") or not isinstance(raw, str) or not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    item_id = int(raw)
    back = (url(request, "admin-stuck") + "#dead", "返回待处理")
    if action == "drop" and form.get("confirmed") != "yes":
        return render(
            request,
            admin,
            "confirm.html",
            {
                "title": f"删除死信 #{item_id}",
                "text": "删除后该事件不会再被处理，且无法恢复。确定删除吗？",
                "action": url(request, "admin-inbox", action="drop"),
                "fields": {"item": str(item_id)},
                "reason": False,
                "button": "确定删除",
                "back": back,
                "error": None,
            },
        )
    store = _store(request)
    if action == "retry":
        count = await store.inbox_requeue_dead([item_id])
        what = f"inbox: requeued dead letter #{item_id}"
        text = (
            f"死信 #{item_id} 已放回收件箱，将重新处理。" if count else f"死信 #{item_id} 已不在死信列表中。"
        )
    else:
        count = await store.inbox_drop_dead([item_id])
        what = f"inbox: dropped dead letter #{item_id}"
        text = f"死信 #{item_id} 已删除。" if count else f"死信 #{item_id} 已不在死信列表中。"
    if count:
        _changed(request)
        await store.audit_note(NOT_A_STUDENT, AuditAction.CONSOLE, what, actor=admin.actor(what))
    log.info("admin %s: %s (%d)", admin.member_id, what, count)
    return message(request, admin, title="已完成" if count else "没有变化", text=text, link=back)


@console
async def verify_holder(request: web.Request, admin: Admin) -> web.StreamResponse:
    """POST /admin/stuck/verify: ask WeCom who holds the phone that the store gives to a member
    (user/getuserid, sparingly: WeCom caps its misses), for a 2.1 dispute."""
    form = await request.post()
    holder = form.get("holder")
    if not isinstance(holder, str) or not USERID.match(holder):
        raise web.HTTPNotFound()
    back = (url(request, "admin-stuck") + "#phone_taken", "返回待处理")
    binding = await _store(request).get_binding(holder)
    if binding is None or not binding.phone:
        return message(
            request, admin, title="无需核实", text=f"{holder} 在本系统中已没有绑定的手机号。", link=back
        )
    masked = mask_phone(binding.phone)
    try:
        wecom_holder: str | None = await request.app[WECOM_APP].user_getuserid(binding.phone)
    except MobileNotFound:
        wecom_holder = None
    what = f"asked WeCom who holds {masked}: {wecom_holder or 'nobody'}"
    await _store(request).audit_note(holder, AuditAction.CONSOLE, what, actor=admin.actor(what))
    if wecom_holder == holder:
        text = (
            f"企业微信确认：{masked} 属于 {holder}，与本系统一致。"
            f"如确认号码应归他人，可在 {holder} 的详情页解除绑定。"
        )
    elif wecom_holder is None:
        text = (
            f"企业微信中没有成员使用 {masked}（或该成员不在应用可见范围内）："
            f"本系统 {holder} 的记录可能已过时。被拒绝的学生重新提交时，系统会先向企业微信核实。"
        )
    else:
        text = f"企业微信中 {masked} 属于 {wecom_holder}，与本系统记录的 {holder} 不一致。"
    return message(request, admin, title="企业微信的核实结果", text=text, link=back)


# one student


@console
async def search(request: web.Request, admin: Admin) -> web.StreamResponse:
    """/admin/students?q=: find a student by 学号 (exact or its start) or by name (any part)."""
    query = request.query.get("q", "").strip()[:_MAX_QUERY]
    found: list[DirectoryEntry] = []
    if query:
        store = _store(request)
        if USERID.match(query) and (
            await store.directory_get(query) is not None or await store.get_binding(query) is not None
        ):
            raise web.HTTPFound(url(request, "admin-student", member_id=query))
        needle = query.casefold()
        for entry in await store.directory_list():
            if entry.member_id.startswith(query) or needle in entry.name.casefold():
                found.append(entry)
                if len(found) > _SEARCH_LIMIT:
                    break
    context = {
        "query": query,
        "found": found[:_SEARCH_LIMIT],
        "more": len(found) > _SEARCH_LIMIT,
    }
    return render(request, admin, "search.html", context)


@console
async def student(request: web.Request, admin: Admin) -> web.StreamResponse:
    """/admin/students/{member_id}: the directory entry, WeCom's status read live, the binding and
    the audit history; phones masked."""
    return await _student_page(request, admin, revealed=False)


@console
async def reveal(request: web.Request, admin: Admin) -> web.StreamResponse:
    """POST /admin/students/{member_id}/reveal: the same page with the full phones, audited."""
    member_id = _member_id(request)
    store = _store(request)
    if await store.directory_get(member_id) is not None or await store.get_binding(member_id) is not None:
        what = _REVEALED
        await store.audit_note(member_id, AuditAction.REVEAL, what, actor=admin.actor(what))
        log.info("admin %s: revealed the phones of %s", admin.member_id, member_id)
    return await _student_page(request, admin, revealed=True)


async def _student_page(request: web.Request, admin: Admin, *, revealed: bool) -> web.StreamResponse:
    member_id = _member_id(request)
    store = _store(request)
    entry = await store.directory_get(member_id)
    binding = await store.get_binding(member_id)
    if entry is None and binding is None:
        return message(
            request,
            admin,
            title="找不到该学生",
            text=f"学校通讯录和绑定记录中都没有 {member_id}。",
            status=404,
            link=(url(request, "admin-search"), "重新查找"),
        )
    live = await _read_live(request, member_id)
    history = await store.audit_list(member_id=member_id, limit=50)
    seen = await store.member_seen(member_id)
    show = (lambda phone: phone) if revealed else mask_phone
    context = {
        "member_id": member_id,
        "entry": entry,
        "directory_phone": show(entry.phone) if entry and entry.phone else None,
        "binding": binding,
        "binding_state": _state_label(binding),
        "binding_phone": show(binding.phone) if binding and binding.phone else None,
        "previous_phone": show(binding.previous_phone) if binding and binding.previous_phone else None,
        "binding_updated": when(binding.updated_at) if binding else None,
        "live": live,
        "seen": seen,
        "seen_label": _seen_label(seen),
        "seen_source": _SEEN_SOURCES.get(seen.source, seen.source) if seen else None,
        "history": [_history_row(record) for record in history],
        "revealed": revealed,
        "base": url(request, "admin-student", member_id=member_id),
        "when": when,
    }
    return render(request, admin, "student.html", context)


@dataclass(frozen=True, slots=True)
class _Live:
    """What WeCom said just now about the member, or why it could not be asked."""

    status: str | None
    mobile: str | None
    problem: str | None


async def _read_live(request: web.Request, member_id: str) -> _Live:
    reader = ContactsThenApp(request.app[WECOM_CONTACTS], request.app[WECOM_APP])
    try:
        member = await reader.user_get(member_id)
    except UserNotFound:
        return _Live(status="企业微信中没有该成员", mobile=None, problem=None)
    except WeComError as exc:
        log.info("admin: reading member %s from WeCom failed (errcode %s)", member_id, exc.errcode)
        return _Live(status=None, mobile=None, problem=f"暂时无法读取（错误码 {exc.errcode}）")
    try:
        status = MemberStatus(member.status).label
    except ValueError:
        status = f"未知状态 {member.status}"
    if not member.mobile_shown:
        mobile = "企业微信未向本应用提供手机号"
    else:
        mobile = mask_phone(member.mobile) if member.mobile else "无"
    return _Live(status=status, mobile=mobile, problem=None)


_ACTIONS: Final = {
    "release": (
        "解除绑定",
        "解除后，该学生的手机号和绑定记录将被释放，该学生需要重新绑定；企业微信允许时（该成员由本系统创建且未激活），"
        "企业微信通讯录中该成员的手机号也会被清除。完成后页面会说明企业微信中的结果。",
    ),
    "refresh": ("重新读取企业微信状态", "从企业微信读取该成员的当前状态，并更新本系统记录的状态。"),
    "invite": ("重新发送邀请", "通过企业微信再次向该成员发送加入邀请。"),
}


@console
async def student_action(request: web.Request, admin: Admin) -> web.StreamResponse:
    """POST /admin/students/{member_id}/{action}: release, refresh or invite; the first POST asks
    for confirmation (and, for a release, a reason), the confirmed one acts and says what it did."""
    member_id = _member_id(request)
    action = request.match_info["action"]
    if action not in _ACTIONS:
        raise web.HTTPNotFound()
    form = await request.post()
    reason_field = form.get("reason")
    reason = reason_field.strip()[:200] if isinstance(reason_field, str) else ""
    title, text = _ACTIONS[action]
    confirm = {
        "title": f"{title}：{member_id}",
        "text": text,
        "action": url(request, "admin-student-action", member_id=member_id, action=action),
        "fields": {},
        "reason": action == "release",
        "button": f"确定{title}",
        "back": (url(request, "admin-student", member_id=member_id), "返回学生详情"),
        "error": None,
    }
    if form.get("confirmed") != "yes":
        return render(request, admin, "confirm.html", confirm)
    if action == "release" and not reason:
        confirm["error"] = "请填写解除绑定的原因（例如工单号、学生的申请）。"
        return render(request, admin, "confirm.html", confirm, status=400)
    back = (url(request, "admin-student", member_id=member_id), "返回学生详情")
    _changed(request)
    if action == "release":
        done = await _release(request, admin, member_id, reason)
    elif action == "refresh":
        done = await _refresh(request, admin, member_id)
    else:
        done = await _invite(request, admin, member_id)
    return message(request, admin, title=title, text=done, link=back)


async def _release(request: web.Request, admin: Admin, member_id: str, reason: str) -> str:
    """The CLI's release (handlers.usecases.release): the store, then the phone in WeCom where it allows."""
    actor = admin.actor(_RELEASED + reason)
    app = request.app
    try:
        done = await release(_store(request), app[WECOM_CONTACTS], app[WECOM_APP], member_id, actor=actor)
    except WeComError as exc:
        log.warning("admin %s: release of %s: WeCom errcode %s", admin.member_id, member_id, exc.errcode)
        return (
            f"已解除 {member_id} 在本系统中的绑定（原因：{reason}），但企业微信暂时无法访问或拒绝了请求"
            f"（错误码 {exc.errcode}）：如其他学生需要该手机号，请在企业微信管理后台清除该成员的手机号。"
        )
    log.info("admin %s: release of %s: %s", admin.member_id, member_id, describe_release(done))
    if not done.released:
        return f"{member_id} 没有绑定记录，无需解除。"
    phone = done.phone_masked or "无"
    return f"已解除 {member_id} 的绑定（原因：{reason}），释放的手机号：{phone}。" + _IN_WECOM[
        done.in_wecom
    ].format(phone=phone)


_IN_WECOM: Final = {
    InWeCom.CLEARED: "企业微信中该成员的手机号也已清除，其他学生可以绑定 {phone}。",
    InWeCom.KEPT_ACTIVATED: (
        "该成员已激活企业微信，企业微信只允许成员本人修改手机号（企业微信 → 我 → 个人信息 → 手机）；"
        "在此之前，其他学生绑定 {phone} 仍会遇到 2.1。"
    ),
    InWeCom.KEPT_NO_EMAIL: (
        "企业微信不允许成员既无手机号也无邮箱（60129）：请在企业微信管理后台为该成员填写邮箱后清除手机号，"
        "或删除该成员。"
    ),
    InWeCom.KEPT_NOT_CREATED: (
        "该成员不是本系统创建的，企业微信中的手机号 {phone} 保持不变：如需释放，请在企业微信管理后台修改。"
    ),
    InWeCom.NO_MEMBER: "企业微信中没有该成员，手机号已完全释放。",
    InWeCom.NOTHING: "",
}


async def _refresh(request: web.Request, admin: Admin, member_id: str) -> str:
    reader = ContactsThenApp(request.app[WECOM_CONTACTS], request.app[WECOM_APP])
    status: MemberStatus | None
    try:
        member = await reader.user_get(member_id)
    except UserNotFound:
        status = None
    else:
        try:
            status = MemberStatus(member.status)
        except ValueError:
            return f"企业微信返回了未知的成员状态 {member.status}，本系统记录未改变。"
    now = request.app[CLOCK]()
    store = _store(request)
    await store.record_members([MemberSeen(member_id, status, now, "admin")])
    label = status.label if status is not None else "企业微信中没有该成员"
    what = _READ_AGAIN + (status.name.lower() if status is not None else _NO_SUCH_MEMBER)
    await store.audit_note(member_id, AuditAction.CONSOLE, what, actor=admin.actor(what))
    return f"已从企业微信读取 {member_id} 的状态：{label}。本系统的记录已更新。"


async def _invite(request: web.Request, admin: Admin, member_id: str) -> str:
    """The CLI's invite again: batch/invite, remembered so that the flow does not invite twice, audited."""
    outcome = await request.app[WECOM_CONTACTS].batch_invite(users=[member_id])
    if member_id in outcome.invalid_users:
        log.info("admin %s: WeCom could not invite %s", admin.member_id, member_id)
        return f"企业微信没有接受对 {member_id} 的邀请（该成员可能不存在，或不在应用的可见范围内）。"
    store = _store(request)
    await store.kv_set(invite_key(member_id), "1", ttl=INVITE_MEMORY)
    what = _INVITED
    await store.audit_note(member_id, AuditAction.INVITE, what, actor=admin.actor(what))
    return f"企业微信已向 {member_id} 再次发送加入邀请。"


def _member_id(request: web.Request) -> str:
    member_id = request.match_info["member_id"]
    if not USERID.match(member_id):
        raise web.HTTPNotFound()
    return member_id


def _state_label(binding: Binding | None) -> str:
    if binding is None:
        return "未绑定"
    return {
        BindingState.PENDING: "绑定处理中",
        BindingState.BOUND: "已绑定，未关注",
        BindingState.FOLLOWED: "已关注",
    }[binding.state]


def _seen_label(seen: MemberSeen | None) -> str:
    if seen is None:
        return "未记录"
    return seen.status.label if seen.status is not None else "企业微信中没有该成员"


_ACTION_LABELS: Final = {
    AuditAction.CLAIM: "申请绑定",
    AuditAction.BIND: "绑定",
    AuditAction.RELEASE: "放弃绑定申请",
    AuditAction.CLAIM_EXPIRED: "绑定申请过期",
    AuditAction.CLAIM_DROPPED: "绑定申请取消",
    AuditAction.FOLLOW: "关注",
    AuditAction.UNFOLLOW: "取消关注",
    AuditAction.SET_PHONE: "按企业微信校正",
    AuditAction.PHONE_LOST: "手机号被收回",
    AuditAction.DELETE: "解除绑定",
    AuditAction.RENAME: "账号更名",
    AuditAction.CONFLICT: "被拒绝",
    AuditAction.EXPORT: "导出个人数据",
    AuditAction.ERASE: "删除个人数据",
    AuditAction.JOINED: "已加入（企业微信已激活）",
    AuditAction.INVITE: "重新邀请",
    AuditAction.REVEAL: "查看完整手机号",
    AuditAction.CONSOLE: "管理后台操作",
}


# The console's own audit notes: stored in English, as the CLI's `audit` prints them, and shown in
# Chinese on the student's page (an administrator read "invited again (batch/invite)" there).
_REVEALED: Final = "full phone shown"
_INVITED: Final = "invited again (batch/invite)"
_READ_AGAIN: Final = "read member from WeCom: "
_NO_SUCH_MEMBER: Final = "no such member"
_RELEASED: Final = "release: "
_SOURCES: Final = (
    ("console ", "管理后台 "), ("bind-page ", "绑定页面 "), ("admission-page ", "加入验证页面 ")
)
_CALLBACK_SOURCE: Final = "callback"
_SEEN_SOURCES: Final = {
    "admin": "管理后台",
    "login": "学生登录时读取",
    "sync": "同步通讯录",
    "subscribe": "关注事件",
    "unsubscribe": "取消关注事件",
    "change_contact": "通讯录变更事件",
}
"""Who last told the store a member's WeCom status (MemberSeen.source), in Chinese."""


def _note_label(what: str) -> str:
    """A console note in Chinese; another note as it was written."""
    if what == _REVEALED:
        return "查看了完整手机号"
    if what == _INVITED:
        return "请企业微信再次发送加入邀请"
    if what.startswith(_READ_AGAIN):
        name = what.removeprefix(_READ_AGAIN)
        status = MemberStatus.__members__.get(name.upper())
        if status is not None:
            label = status.label
        else:
            label = "企业微信中没有该成员" if name == _NO_SUCH_MEMBER else name
        return f"从企业微信重新读取：{label}"
    if what.startswith(_RELEASED):
        return "原因：" + what.removeprefix(_RELEASED)
    return what


def _source_label(source: str) -> tuple[str, str | None]:
    """Where a change came from, in Chinese, and the console's note it carries (if any)."""
    if source == _CALLBACK_SOURCE:
        return "企业微信回调", None
    note = None
    if source.startswith("console "):
        source, _, note = source.partition(": ")
    for prefix, label in _SOURCES:
        if source.startswith(prefix):
            source = label + source.removeprefix(prefix).replace("sms-verified", "（短信验证）")
    return source, note


def _history_row(record: AuditRecord) -> dict[str, str]:
    stuck = campaign.stuck_of(record)
    source, note = _source_label(record.source)
    detail = stuck.label if stuck is not None else record.detail
    if note is not None:
        # The note is the record's detail too (or its only text, as a release's reason is): once.
        detail = _note_label(note)
    return {
        "at": when(record.at),
        "action": _ACTION_LABELS.get(record.action, record.action.value),
        "phone": record.phone_masked or "",
        "who": record.who,
        "detail": detail,
        "source": source,
    }


# the lists to chase


@console
async def export_page(request: web.Request, admin: Admin) -> web.StreamResponse:
    """/admin/export: each 院系's students who have not joined, and a CSV of each."""
    state = await _campaign(request)
    base = url(request, "admin-export-csv")
    departments = [
        (tally, f"{base}?department={quote(tally.name, safe='')}") for tally in state.overview.departments
    ]
    context = {"overall": state.overview.overall, "all_url": base, "departments": departments}
    return render(request, admin, "export.html", context)


@console
async def export_csv(request: web.Request, admin: Admin) -> web.StreamResponse:
    """/admin/export/chase.csv?department=: the CSV of the students not yet joined, audited."""
    department = request.query.get("department") or None
    state = await _campaign(request)
    if department is not None and all(t.name != department for t in state.overview.departments):
        return message(
            request,
            admin,
            title="没有该院系",
            text="学校通讯录中没有该院系。",
            status=404,
            link=(url(request, "admin-export"), "返回催办名单"),
        )
    body = campaign.chase_csv(state.rows, department)
    what = f"export chase list: {department or 'all'}"
    await _store(request).audit_note(NOT_A_STUDENT, AuditAction.CONSOLE, what, actor=admin.actor(what))
    stamp = dt.datetime.fromtimestamp(request.app[CLOCK](), campaign.CAMPUS_TZ).strftime("%Y%m%d")
    name = f"未加入名单-{department or '全部'}-{stamp}.csv"
    disposition = f"filename*=UTF-8''{quote(name)}"
    return web.Response(
        body=body,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="chase-{stamp}.csv"; {disposition}'},
    )


# the directory


@console
async def directory_page(request: web.Request, admin: Admin) -> web.StreamResponse:
    """/admin/directory: the upload form, and the directory's size."""
    count = await _store(request).directory_count()
    return render(request, admin, "directory.html", {"count": count, "error": None})


@console_upload
async def directory_upload(request: web.Request, admin: Admin) -> web.StreamResponse:
    """POST /admin/directory (multipart): check the CSV with the import's own rules and show every
    problem by line; a good file waits for confirmation, nothing is written yet."""
    upload = await _read_upload(request)
    if not admin.session.csrf_ok(upload.csrf):
        return refused_form(request, admin)
    if upload.data is None:
        count = await _store(request).directory_count()
        error = "请选择一个不超过 8 MB 的 CSV 文件。"
        return render(request, admin, "directory.html", {"count": count, "error": error}, status=400)
    data, filename, encoding = upload.data, upload.filename, upload.encoding
    parsed = parse_directory(data, encoding=encoding)
    token = None
    if not parsed.problems:
        token = request.app[SESSIONS].new_token()
        value = f"{admin.member_id}\n{filename}\n{encoding}\n" + base64.b64encode(data).decode()
        await _store(request).kv_set(_upload_key(token), value, ttl=_UPLOAD_TTL)
    by_department: dict[str, int] = {}
    for entry in parsed.entries:
        by_department[entry.department] = by_department.get(entry.department, 0) + 1
    context = {
        "parsed": parsed,
        "filename": filename,
        "with_phone": sum(1 for entry in parsed.entries if entry.phone),
        "sample": [(e, mask_phone(e.phone) if e.phone else "") for e in parsed.entries[:20]],
        "by_department": sorted(by_department.items()),
        "token": token,
        "encoding": encoding,
        "existing": await _store(request).directory_count(),
    }
    return render(request, admin, "preview.html", context, status=200 if token else 400)


@console
async def directory_confirm(request: web.Request, admin: Admin) -> web.StreamResponse:
    """POST /admin/directory/confirm: the same all-or-nothing import as the CLI, audited."""
    form = await request.post()
    token = form.get("token")
    raw = await _store(request).kv_pop(_upload_key(token)) if isinstance(token, str) and token else None
    owner, filename, chosen, encoded = [*(raw or "").split("\n", 3), "", "", ""][:4]
    encoding = _ENCODINGS.get(chosen, "auto")
    back = (url(request, "admin-directory"), "返回学校通讯录")
    if raw is None or owner != admin.member_id:
        return message(
            request,
            admin,
            title="预览已过期",
            text="请重新上传文件，预览后再确认导入。",
            status=400,
            link=back,
        )
    _changed(request)
    report = await import_directory(_store(request), base64.b64decode(encoded), encoding=encoding)
    if not report.ok:
        return message(
            request, admin, title="导入未完成", text="；".join(report.lines("zh")), status=400, link=back
        )
    what = f"directory import: {report.written} entries from {filename or 'upload'}"
    await _store(request).audit_note(NOT_A_STUDENT, AuditAction.CONSOLE, what, actor=admin.actor(what))
    log.info("admin %s: %s", admin.member_id, what)
    return message(
        request,
        admin,
        title="导入完成",
        text=f"已导入 {report.written} 条记录（其中有手机号 {report.with_phone} 条）。",
        link=back,
    )


_ENCODINGS: Final[dict[str, FileEncoding]] = {name: name for name in get_args(FileEncoding)}
"""The upload form's 文件编码 choices, as the import names them (anything else reads as auto)."""


@dataclass(frozen=True)
class _Upload:
    """What the directory's upload form sent."""

    csrf: str | None
    data: bytes | None
    filename: str
    encoding: FileEncoding


async def _read_upload(request: web.Request) -> _Upload:
    """The form's CSRF token, file and chosen encoding, read as a stream (the app's own body limit is
    for forms)."""
    csrf: str | None = None
    data: bytes | None = None
    filename = ""
    encoding: FileEncoding = "auto"
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError):  # not a multipart body
        return _Upload(None, None, "", encoding)
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "csrf":
            csrf = (await part.read(decode=True))[:128].decode("ascii", "replace")
        elif part.name == "encoding":
            chosen = (await part.read(decode=True))[:16].decode("ascii", "replace")
            encoding = _ENCODINGS.get(chosen, "auto")
        elif part.name == "file":
            filename = (part.filename or "")[:100]
            chunks: list[bytes] = []
            size = 0
            while chunk := await part.read_chunk():
                size += len(chunk)
                if size > MAX_UPLOAD:
                    return _Upload(csrf, None, filename, encoding)
                chunks.append(chunk)
            data = b"".join(chunks) if size else None
    return _Upload(csrf, data, filename, encoding)


UPLOAD_PREFIX: Final = "admin-upload:"
"""The kv keys of directory uploads awaiting 确认导入: each holds the whole file, every phone in it."""


def _upload_key(token: str) -> str:
    return UPLOAD_PREFIX + token


# logging out


@console
async def logout(request: web.Request, admin: Admin) -> web.StreamResponse:
    """POST /admin/logout: end the console's session, and offer CAS's logout (its single sign-on outlives
    ours: on a shared computer /admin would log the same administrator in again without a password)."""
    back = request.app[SETTINGS].public_base_url + url(request, "admin")
    response = message(
        request,
        None,
        title="已退出",
        text="您已退出管理后台。在公用电脑上，请同时退出统一身份认证，否则再次打开管理后台会直接登录。",
        link=(request.app[ADMIN_CAS].logout_url(back), "退出统一身份认证"),
    )
    await request.app[ADMIN_SESSIONS].end(admin.session, response)
    return response


@console
async def elsewhere(request: web.Request, admin: Admin) -> web.StreamResponse:
    """Any other /admin path: the site's 404 (a visitor was sent to CAS first)."""
    raise web.HTTPNotFound()
