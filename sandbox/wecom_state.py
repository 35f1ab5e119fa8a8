"""The WeCom emulator's memory: contacts, tokens, OAuth codes, simulated WeChats, follows and faults.

Everything here is plain Python that tests and the demo read directly; the HTTP layer in
`sandbox.wecom` only translates requests into these calls and WeCom's JSON.
"""

from __future__ import annotations

import hmac
import ipaddress
import random as _random
import re
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from sandbox.wecom_rules import FollowError, InvalidMobile, wecom_mobile

APP: Final = "app"
"""The label of an application's secret: messages, OAuth, user/authsucc, reads."""
CONTACTS: Final = "contacts"
"""The label of the contacts-sync (通讯录同步) secret: the only one that may write the directory."""

# user/get status, developer.work.weixin.qq.com/document/path/90196: "激活状态: 1=已激活，2=已禁用，
# 4=未激活，5=退出企业。已激活代表已激活企业微信或已关注微信插件（原企业号）。"
STATUS_ACTIVE: Final = 1
"""已激活: follows the WeChat plugin, or uses the WeCom app."""
STATUS_DISABLED: Final = 2
"""已禁用: disabled in the admin console."""
STATUS_INACTIVE: Final = 4
"""未激活: neither follows the WeChat plugin nor uses the WeCom app."""
STATUS_QUIT: Final = 5
"""退出企业: left the organisation."""

SENSITIVE_FIELDS: Final = ("mobile", "gender", "email", "biz_mail", "avatar", "qr_code", "address")
"""What user/get no longer returns to an app created after 2022-06-20 (document/path/90196: "不再返回以下
字段：头像、性别、手机、邮箱、企业邮箱、员工个人二维码、地址")."""
LOOPBACK: Final = ("127.0.0.0/8", "::1")
"""The default trusted IPs (企业可信IP) of both secrets: the machine itself, where tests and the demo run."""
WRONG_SECRET_LIMIT: Final = 5
"""Wrong-secret gettoken calls from one IP before WeCom bans that IP (its number is not documented)."""
WRONG_SECRET_BAN: Final = 3600.0
"""How long such an IP is banned: document/path/90313, 45009: "同一个IP被禁用一小时"."""
DUPLICATE_CHECK_INTERVAL: Final = 1800
"""message/send's default duplicate_check_interval (document/path/90236: "默认1800s，最大不超过4小时")."""
DUPLICATE_CHECK_MAX: Final = 4 * 3600
TFA_CODE_TTL: Final = 300.0
"""tfa_code lives five minutes, used once (document/path/99499: "tfa_code五分钟内有效且只能使用一次")."""

SMS_CODE_DIGITS: Final = 6
SMS_MAX_ATTEMPTS: Final = 5
_TOKEN_ALPHABET: Final = string.ascii_letters + string.digits + "-_"
_OPENID_ALPHABET: Final = string.ascii_letters + string.digits + "-_"
_USERID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-@.]{0,63}\Z")


class SandboxError(Exception):
    """A WeCom API error the emulator answers with: errcode and errmsg, as WeCom's JSON carries them."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass(slots=True)
class Member:
    """A member of the emulated contacts directory (企业号通讯录)."""

    userid: str
    name: str
    department: list[int]
    mobile: str | None = None
    position: str = ""
    email: str = ""
    gender: str = "0"
    main_department: int | None = None
    status: int = STATUS_INACTIVE
    uses_wecom_app: bool = False
    """Logged in to the WeCom app: activated whether or not a WeChat follows (status stays 1)."""

    def as_json(self, *, sensitive: bool = True, hidden_as_empty: bool = False) -> dict[str, object]:
        """The member as user/get returns it; without `sensitive`, the fields an app no longer sees are
        left out, or with `hidden_as_empty` answered empty ("", and "0" for the gender)."""
        full: dict[str, object] = {
            "userid": self.userid,
            "name": self.name,
            "department": list(self.department),
            "main_department": self.main_department or (self.department[0] if self.department else 1),
            "position": self.position,
            "mobile": self.mobile or "",
            "gender": self.gender,
            "email": self.email,
            "avatar": "",
            "status": self.status,
            "enable": 0 if self.status == STATUS_DISABLED else 1,
        }
        if sensitive:
            return full
        if hidden_as_empty:
            # Nothing in WeCom's documents promises absent over empty, and it answers 0 for a hidden
            # gender: a reader must take "" from such a read as unknown too.
            return full | {key: "0" if key == "gender" else "" for key in SENSITIVE_FIELDS}
        # Absent: an app cannot tell a hidden mobile from a member without one by the key.
        return {key: value for key, value in full.items() if key not in SENSITIVE_FIELDS}


@dataclass(frozen=True, slots=True)
class WeChatUser:
    """A simulated personal WeChat: its own phone, and the openid WeCom knows it by."""

    wechat_id: str
    name: str
    phone: str
    openid: str


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message/send that the emulator delivered (to `touser`), or dropped as a duplicate."""

    msgid: str
    agent_id: int
    touser: tuple[str, ...]
    msgtype: str
    content: str
    sent_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Invite:
    """A batch/invite that the emulator accepted (valid members only)."""

    users: tuple[str, ...]
    parties: tuple[int, ...]
    tags: tuple[int, ...]


@dataclass(slots=True)
class SmsChallenge:
    """The follow verification of one simulated WeChat: the phone typed and the code shown."""

    phone: str
    userid: str
    code: str = field(repr=False)
    expires_at: float
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class OAuthGrant:
    """What an OAuth code resolves to: a member's userid, or the openid of a non-member."""

    userid: str | None
    openid: str | None
    expires_at: float


@dataclass(frozen=True, slots=True)
class Token:
    """An access_token, the secret it was issued for (never shown) and that secret's label."""

    secret: str = field(repr=False)
    label: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class TfaGrant:
    """A tfa_code from auth/get_tfa_info: the member it admits, until it expires or is used."""

    userid: str
    expires_at: float


@dataclass(slots=True)
class PushRecord:
    """One callback the emulator pushed: the plaintext XML, each try's outcome, and the result.

    `target` is "app" (the app's 接收消息 URL) or "contacts" (the contacts-sync event server).
    """

    event: str
    userid: str
    xml: str
    tries: list[str] = field(default_factory=list)
    delivered: bool = False
    target: str = "app"


FaultKind = Literal["errcode", "status", "delay"]


@dataclass(slots=True)
class Fault:
    """One armed fault: the next `count` matching calls answer an errcode, an HTTP status, or late."""

    kind: FaultKind
    value: float
    count: int
    api: str | None = None


@dataclass(frozen=True, slots=True)
class Block:
    """A 45009 block: every matching call answers 45009 until `until` on the sandbox clock."""

    until: float
    api: str | None = None


class FaultSwitch:
    """Faults for tests: arm them, and the next matching /cgi-bin calls misbehave in order."""

    def __init__(self, clock: Callable[[], float] = lambda: 0.0) -> None:
        self._armed: list[Fault] = []
        self._blocks: list[Block] = []
        self._clock = clock

    def block(self, seconds: float, *, api: str | None = None) -> Block:
        """Answer every call (of `api`, or of any) with 45009 for `seconds` of the sandbox clock.

        WeCom's frequency blocks last as long as the limit's period, a minute or an hour
        (document/path/90313, 45009: "频率拦截时长一般与调用的限制时长相同"): retrying sooner is futile.
        """
        if seconds <= 0:
            raise ValueError("a block lasts a positive time")
        block = Block(until=self._clock() + seconds, api=api)
        self._blocks.append(block)
        return block

    def blocked(self, api: str) -> bool:
        """Whether a block covers a call of this API now."""
        now = self._clock()
        self._blocks = [b for b in self._blocks if b.until > now]
        return any(b.api is None or b.api == api for b in self._blocks)

    @property
    def blocks(self) -> list[Block]:
        """The blocks still in force."""
        now = self._clock()
        return [b for b in self._blocks if b.until > now]

    def errcode(self, errcode: int, *, count: int = 1, api: str | None = None) -> None:
        """Answer the next `count` calls (of `api`, e.g. "user/get", or of any) with this errcode."""
        self._arm(Fault("errcode", errcode, count, api))

    def status(self, status: int, *, count: int = 1, api: str | None = None) -> None:
        """Answer the next `count` calls with this HTTP status and no JSON."""
        self._arm(Fault("status", status, count, api))

    def delay(self, seconds: float, *, count: int = 1, api: str | None = None) -> None:
        """Answer the next `count` calls only after this many seconds (then normally)."""
        self._arm(Fault("delay", seconds, count, api))

    def clear(self) -> None:
        """Disarm every fault and lift every block."""
        self._armed.clear()
        self._blocks.clear()

    @property
    def armed(self) -> list[Fault]:
        """The faults still armed, in the order they fire."""
        return list(self._armed)

    def take(self, api: str) -> Fault | None:
        """Consume and return the first fault that matches this call, or None."""
        for fault in self._armed:
            if fault.api is None or fault.api == api:
                fault.count -= 1
                if fault.count <= 0:
                    self._armed.remove(fault)
                return fault
        return None

    def _arm(self, fault: Fault) -> None:
        if fault.count < 1:
            raise ValueError("a fault fires at least once")
        self._armed.append(fault)


@dataclass(frozen=True, slots=True)
class FollowOutcome:
    """The result of a follow step: followed as a member, a guide error, or a refusal."""

    userid: str | None = None
    error: FollowError | None = None
    already_followed: str | None = None


class WeComSandboxState:
    """The emulated organisation: directory, tokens, codes, simulated WeChats, follows and records."""

    def __init__(
        self,
        *,
        corp_id: str,
        corp_name: str,
        agent_id: int,
        secrets: Mapping[str, str],
        departments: Mapping[int, str],
        token_ttl: float,
        oauth_code_ttl: float,
        sms_code_ttl: float,
        clock: Callable[[], float],
        rng: _random.Random,
        visible_departments: Iterable[int] | None = None,
        app_sees_sensitive: bool = False,
        contacts_trusted_ips: Iterable[str] | None = LOOPBACK,
        app_trusted_ips: Iterable[str] | None = LOOPBACK,
        contacts_reads_details: bool = False,
        hidden_as_empty: bool = False,
        contacts_event_server_since_2022: bool = True,
    ) -> None:
        self.corp_id = corp_id
        self.corp_name = corp_name
        self.agent_id = agent_id
        self.secrets = dict(secrets)
        """secret -> label (APP, CONTACTS, or another app's name)."""
        self.departments = dict(departments)
        self.token_ttl = token_ttl
        self.oauth_code_ttl = oauth_code_ttl
        self.sms_code_ttl = sms_code_ttl
        self.clock = clock
        self.rng = rng
        self.members: dict[str, Member] = {}
        self.wechats: dict[str, WeChatUser] = {}
        self.follows: dict[str, str] = {}
        """userid -> wechat_id of the WeChat that follows as that member."""
        self.tokens: dict[str, Token] = {}
        self.oauth_codes: dict[str, OAuthGrant] = {}
        self.sms: dict[str, SmsChallenge] = {}
        self.pending_admissions: dict[str, str] = {}
        """userid -> wechat_id waiting for user/authsucc (二次验证)."""
        self.messages: list[SentMessage] = []
        self.invites: list[Invite] = []
        self.authsucc: list[str] = []
        self.pushes: list[PushRecord] = []
        self.calls: list[str] = []
        """Every /cgi-bin API called, by name ("gettoken", "user/get"...), in order."""
        self.faults = FaultSwitch(clock)
        self.visible_departments = None if visible_departments is None else frozenset(visible_departments)
        """The app's visible range (可见范围) by department; None: the whole organisation."""
        self.app_sees_sensitive = app_sees_sensitive
        """Whether user/get shows the app the sensitive fields (an app created before 2022-06-20)."""
        self.contacts_reads_details = contacts_reads_details
        """Whether the contacts-sync assistant may read members (user/get) from the caller's address:
        only an address trusted before 2022-08-15 may (document/path/90196); a newer one gets 48009."""
        self.hidden_as_empty = hidden_as_empty
        """Whether a read that hides the sensitive fields answers them "" (and gender "0") instead of
        leaving them out."""
        self.contacts_event_server_since_2022 = contacts_event_server_since_2022
        """Whether the contacts-sync event server was saved after 2022-08-15: update_user only for a
        changed department or UserID, with those fields only (document/path/90970); else every change,
        every changed field."""
        self.trusted_ips = {CONTACTS: _networks(contacts_trusted_ips), APP: _networks(app_trusted_ips)}
        """Each secret label's 企业可信IP as networks; None: any address."""
        self.invitations: dict[str, int] = {}
        """userid -> invitations sent (user/create with to_invite, batch/invite)."""
        self.duplicates: list[SentMessage] = []
        """message/send deliveries dropped by the duplicate check."""
        self.tfa_codes: dict[str, TfaGrant] = {}
        self.wrong_secrets: dict[str, int] = {}
        """peer address -> wrong-secret gettoken calls."""
        self.banned_ips: dict[str, float] = {}
        """peer address -> end of its ban for presenting wrong secrets."""

    # tokens

    def issue_token(self, corp_id: str, secret: str, *, peer: str = "127.0.0.1") -> tuple[str, int]:
        """gettoken: the live token of this secret (WeCom repeats it while valid), and its remaining life.

        An IP that keeps presenting wrong secrets is banned for an hour (document/path/90313, 45009:
        "如果应用的secret错误多次，会导致同一个IP被禁用一小时"), even with the right secret then.
        """
        now = self.clock()
        if self.banned_ips.get(peer, 0.0) > now:
            raise SandboxError(45009, f"api freq out of limit, ip banned for wrong secrets, from ip: {peer}")
        if corp_id != self.corp_id:
            raise SandboxError(40013, "invalid corpid")
        known = self._known_secret(secret)
        if known is None:
            wrong = self.wrong_secrets.get(peer, 0) + 1
            self.wrong_secrets[peer] = wrong
            if wrong >= WRONG_SECRET_LIMIT:
                self.banned_ips[peer] = now + WRONG_SECRET_BAN
                del self.wrong_secrets[peer]
            raise SandboxError(40001, "invalid credential, secret is invalid")
        for token, held in self.tokens.items():
            if held.secret == known and held.expires_at > now:
                return token, max(1, int(held.expires_at - now))
        token = self.random_text(64, _TOKEN_ALPHABET)
        self.tokens[token] = Token(known, self.secrets[known], now + self.token_ttl)
        return token, int(self.token_ttl)

    def check_token(self, token: str | None) -> str:
        """Return the secret label of a valid token; 41001, 40014 or 42001 otherwise."""
        if not token:
            raise SandboxError(41001, "access_token missing")
        held = self.tokens.get(token)
        if held is None:
            raise SandboxError(40014, "invalid access_token")
        if self.clock() >= held.expires_at:
            raise SandboxError(42001, "access_token expired")
        return held.label

    def check_ip(self, label: str, peer: str | None) -> None:
        """Refuse a call from outside the secret's trusted IPs with 60020, for either secret.

        document/path/90313, 60020 "不安全的访问IP": "1）若调用者是企业自建应用或通讯录同步助手，请确认该IP是
        本企业服务器IP，并已经配置到应用详情的'企业可信IP'项目中". 48009 is the other refusal: the assistant
        reading details from an address trusted after 2022-08-15 (see user/get). gettoken itself is not
        refused: the error comes on the API call.
        """
        networks = self.trusted_ips.get(label)
        if networks is None:
            return
        try:
            address = ipaddress.ip_address((peer or "").split("%", 1)[0])
        except ValueError:
            address = None
        if address is not None and any(address in network for network in networks):
            return
        raise SandboxError(60020, f"not allow to access from your ip, from ip: {peer}")

    def revoke_tokens(self) -> None:
        """Invalidate every token early, as WeCom may do: their next use answers 40014."""
        self.tokens.clear()

    def _known_secret(self, secret: str) -> str | None:
        found = None
        for known in self.secrets:
            # Every secret is compared, so timing does not tell how far a guess matched.
            if hmac.compare_digest(known.encode(), secret.encode()):
                found = known
        return found

    # the directory

    def member(self, userid: str) -> Member:
        """The member with this userid (case-insensitive, as WeCom's), or 60111."""
        found = self._find_member(userid)
        if found is None:
            raise SandboxError(60111, f"userid not found: {userid[:64]}")
        return found

    def member_by_mobile(self, phone: str) -> Member | None:
        """The member whose mobile is this phone, or None."""
        return next((m for m in self.members.values() if m.mobile == phone), None)

    def create_member(
        self,
        *,
        userid: str,
        name: str,
        department: Iterable[int],
        mobile: str | None = None,
        position: str = "",
        email: str = "",
        gender: str = "0",
        main_department: int | None = None,
    ) -> Member:
        """user/create: a new member; 60102 for a taken userid, 60104 for a taken mobile."""
        if not userid:
            raise SandboxError(41009, "missing userid")
        if not _USERID.match(userid):
            raise SandboxError(40003, "invalid userid")
        if not name or len(name) > 64:
            raise SandboxError(60112, "invalid name")
        departments = self._departments(department)
        phone = self._mobile(mobile)
        if self._find_member(userid) is not None:
            raise SandboxError(60102, "userid existed")
        self._check_mobile_free(phone, None)
        member = Member(
            userid=userid,
            name=name,
            department=departments,
            mobile=phone,
            position=position,
            email=email,
            gender=gender,
            main_department=main_department,
        )
        self.members[userid] = member
        return member

    def update_member(
        self, userid: str, changes: Mapping[str, object], *, by_member: bool = False
    ) -> tuple[Member, dict[str, str]]:
        """user/update: apply the given fields; return the member and the fields that changed.

        Through the API, an activated member's mobile is ignored without an error (document/path/90197:
        "若成员已激活企业微信，则需成员自行修改（此情况下该参数被忽略，但不会报错）"); `by_member` is the
        member's own change (or the console's), which applies it.
        """
        member = self.member(userid)
        if "mobile" in changes and member.status == STATUS_ACTIVE and not by_member:
            changes = {key: value for key, value in changes.items() if key != "mobile"}
        fields: dict[str, str] = {}
        new_userid = changes.get("new_userid")
        if isinstance(new_userid, str) and new_userid and new_userid != member.userid:
            if not _USERID.match(new_userid):
                raise SandboxError(40003, "invalid new_userid")
            clash = self._find_member(new_userid)
            if clash is not None and clash is not member:
                raise SandboxError(60102, "userid existed")
        phone = member.mobile
        if "mobile" in changes:
            raw = changes["mobile"]
            phone = self._mobile(raw if isinstance(raw, str) else None)
            self._check_mobile_free(phone, member)
            email = changes.get("email", member.email)
            if phone is None and not email:
                # go-workwx errcodes (90313): "60129 成员手机和邮箱都为空 … 成员手机和邮箱至少有个非空".
                raise SandboxError(60129, "mobile and email are both empty")
        departments = member.department
        if "department" in changes:
            departments = self._departments(changes["department"])
        name = changes.get("name", member.name)
        if not isinstance(name, str) or not name or len(name) > 64:
            raise SandboxError(60112, "invalid name")
        # All checks passed: apply at once, so a refused update changes nothing.
        if name != member.name:
            member.name = name
            fields["Name"] = name
        if phone != member.mobile:
            member.mobile = phone
            fields["Mobile"] = phone or ""
        if departments != member.department:
            member.department = departments
            fields["Department"] = ",".join(str(d) for d in departments)
        for key, tag in (("position", "Position"), ("email", "Email"), ("gender", "Gender")):
            value = changes.get(key)
            if isinstance(value, str | int) and str(value) != getattr(member, key):
                setattr(member, key, str(value))
                fields[tag] = str(value)
        if isinstance(new_userid, str) and new_userid and new_userid != member.userid:
            old = member.userid
            del self.members[old]
            member.userid = new_userid
            self.members[new_userid] = member
            for table in (self.follows, self.pending_admissions):
                if old in table:
                    table[new_userid] = table.pop(old)
            fields["NewUserID"] = new_userid
        return member, fields

    def delete_member(self, userid: str) -> Member:
        """user/delete: remove the member; its WeChat no longer follows."""
        member = self.member(userid)
        del self.members[member.userid]
        self.follows.pop(member.userid, None)
        self.pending_admissions.pop(member.userid, None)
        return member

    def set_enabled(self, userid: str, enabled: bool) -> Member:
        """Disable (status 2) or enable a member, as the admin console does."""
        member = self.member(userid)
        if not enabled:
            member.status = STATUS_DISABLED
        elif member.status == STATUS_DISABLED:
            member.status = self._activation(member)
        return member

    def set_uses_wecom_app(self, userid: str, uses: bool) -> Member:
        """Record that the member logged in to (or left) the WeCom app: activated whatever WeChat does."""
        member = self.member(userid)
        member.uses_wecom_app = uses
        if member.status != STATUS_DISABLED:
            member.status = self._activation(member)
        return member

    def _activation(self, member: Member) -> int:
        active = member.uses_wecom_app or member.userid in self.follows
        return STATUS_ACTIVE if active else STATUS_INACTIVE

    def invite(self, userid: str) -> None:
        """Count one invitation (邀请) sent to the member."""
        self.invitations[userid] = self.invitations.get(userid, 0) + 1

    def visible(self, member: Member) -> bool:
        """Whether the member is in the app's visible range (可见范围)."""
        return self.visible_departments is None or not self.visible_departments.isdisjoint(member.department)

    def in_app(self, member: Member) -> bool:
        """Whether the app counts the member as subscribed: joined (activated) and in its visible range."""
        return member.status == STATUS_ACTIVE and self.visible(member)

    def check_visible(self, label: str, member: Member) -> None:
        """60011 when an app's secret names a member outside its visible range.

        document/path/90313, 60011 "指定的成员/部门/标签参数无权限":
        "指定的成员或部门或标签不在应用的可见范围之内".
        """
        if label == APP and not self.visible(member):
            raise SandboxError(60011, f"no privilege to access contact, userid: {member.userid}")

    def dept_users(self) -> list[tuple[str, int]]:
        """user/list_id rows: (userid, department) for each department of each member, by userid."""
        ordered = sorted(self.members.values(), key=lambda m: m.userid)
        return [(m.userid, d) for m in ordered for d in m.department]

    def _find_member(self, userid: str) -> Member | None:
        exact = self.members.get(userid)
        if exact is not None:
            return exact
        folded = userid.casefold()
        return next((m for m in self.members.values() if m.userid.casefold() == folded), None)

    def _departments(self, value: object) -> list[int]:
        if not isinstance(value, list) or not value:
            raise SandboxError(40066, "invalid department list")
        departments: list[int] = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise SandboxError(40066, "invalid department list")
            try:
                number = int(item)
            except ValueError:
                raise SandboxError(40066, "invalid department list") from None
            if number not in self.departments:
                raise SandboxError(40066, f"department not found: {number}")
            departments.append(number)
        return departments

    @staticmethod
    def _mobile(value: str | None) -> str | None:
        if value is None or value == "":
            return None
        # Only mainland mobiles: the emulator stores them as the 11 digits the service binds.
        try:
            return wecom_mobile(value)
        except InvalidMobile:
            raise SandboxError(60103, "mobile invalid") from None

    def _check_mobile_free(self, phone: str | None, owner: Member | None) -> None:
        if phone is None:
            return
        holder = self.member_by_mobile(phone)
        if holder is not None and holder is not owner:
            raise SandboxError(60104, f"mobile existed:{holder.userid}")

    # simulated WeChats and the follow

    def add_wechat(self, name: str, phone: str) -> WeChatUser:
        """Create a simulated WeChat with its own phone (raises InvalidMobile)."""
        wechat = WeChatUser(
            wechat_id=self.random_text(24, string.ascii_letters + string.digits),
            name=name.strip()[:32] or "微信用户",
            phone=wecom_mobile(phone),
            openid="o" + self.random_text(27, _OPENID_ALPHABET),
        )
        self.wechats[wechat.wechat_id] = wechat
        return wechat

    def followed_member(self, wechat_id: str) -> str | None:
        """The userid this WeChat follows as, or None."""
        return next((u for u, w in self.follows.items() if w == wechat_id), None)

    def follower(self, userid: str) -> WeChatUser | None:
        """The WeChat that follows as this member, or None."""
        wechat_id = self.follows.get(userid)
        return self.wechats.get(wechat_id) if wechat_id else None

    def try_direct_follow(self, wechat: WeChatUser) -> FollowOutcome | None:
        """Step 4 without verification: the member whose mobile is the WeChat's phone, if any."""
        current = self.followed_member(wechat.wechat_id)
        if current is not None:
            return FollowOutcome(already_followed=current)
        member = self.member_by_mobile(wechat.phone)
        if member is None:
            return None
        if self._followed_by_other(member.userid, wechat):
            return FollowOutcome(error=FollowError.PHONE_VERIFIED_BY_OTHER)
        return FollowOutcome(userid=member.userid)

    def start_verification(self, wechat: WeChatUser, phone: str) -> tuple[FollowOutcome, SmsChallenge | None]:
        """验证身份: check the phone against the directory and issue a six-digit code when it may follow."""
        outcome = self._may_follow(wechat, phone)
        if outcome.userid is None:
            return outcome, None
        code = "".join(self.rng.choice(string.digits) for _ in range(SMS_CODE_DIGITS))
        challenge = SmsChallenge(
            phone=phone, userid=outcome.userid, code=code, expires_at=self.clock() + self.sms_code_ttl
        )
        self.sms[wechat.wechat_id] = challenge
        return outcome, challenge

    def _may_follow(self, wechat: WeChatUser, phone: str) -> FollowOutcome:
        current = self.followed_member(wechat.wechat_id)
        if current is not None:
            return FollowOutcome(already_followed=current)
        member = self.member_by_mobile(phone)
        if member is None:
            return FollowOutcome(error=FollowError.PHONE_NOT_IN_CONTACTS)
        if self._followed_by_other(member.userid, wechat):
            return FollowOutcome(error=FollowError.PHONE_VERIFIED_BY_OTHER)
        return FollowOutcome(userid=member.userid)

    def check_code(self, wechat: WeChatUser, code: str) -> tuple[FollowOutcome | None, str | None]:
        """Check the SMS code: (outcome, None) when it matched, or (None, why not) to show on the form."""
        challenge = self.sms.get(wechat.wechat_id)
        if challenge is None:
            return None, "请先输入手机号获取验证码"
        if self.clock() >= challenge.expires_at:
            del self.sms[wechat.wechat_id]
            return None, "验证码已过期，请重新获取"
        challenge.attempts += 1
        if not hmac.compare_digest(challenge.code.encode(), code.strip().encode()):
            if challenge.attempts >= SMS_MAX_ATTEMPTS:
                del self.sms[wechat.wechat_id]
                return None, "验证码错误次数过多，请重新获取"
            return None, "验证码错误，请重新输入"
        del self.sms[wechat.wechat_id]
        # The directory may have changed while the code was on its way: check again.
        return self._may_follow(wechat, challenge.phone), None

    def follow(self, userid: str, wechat: WeChatUser) -> Member:
        """Record that this WeChat follows as the member (I4 holds: both sides were checked)."""
        member = self.member(userid)
        self.follows[member.userid] = wechat.wechat_id
        member.status = STATUS_ACTIVE
        return member

    def unfollow(self, wechat: WeChatUser) -> str | None:
        """取消关注: the WeChat no longer follows; return the member it followed as, or None."""
        userid = self.followed_member(wechat.wechat_id)
        if userid is None:
            return None
        del self.follows[userid]
        member = self.members.get(userid)
        if member is not None and member.status == STATUS_ACTIVE:
            # Still activated while the member uses the WeCom app (document/path/90196: 已激活代表已激活
            # 企业微信或已关注微信插件).
            member.status = self._activation(member)
        return userid

    def _followed_by_other(self, userid: str, wechat: WeChatUser) -> bool:
        other = self.follows.get(userid) or self.pending_admissions.get(userid)
        return other is not None and other != wechat.wechat_id

    # OAuth

    def issue_code(self, wechat: WeChatUser) -> str:
        """A single-use OAuth code for this WeChat, valid oauth_code_ttl seconds."""
        now = self.clock()
        for stale in [c for c, g in self.oauth_codes.items() if g.expires_at <= now]:
            del self.oauth_codes[stale]
        userid = self.followed_member(wechat.wechat_id) or next(
            (u for u, w in self.pending_admissions.items() if w == wechat.wechat_id), None
        )
        code = self.random_text(32, string.ascii_letters + string.digits)
        self.oauth_codes[code] = OAuthGrant(
            userid=userid, openid=None if userid else wechat.openid, expires_at=now + self.oauth_code_ttl
        )
        return code

    def redeem_code(self, code: str | None) -> OAuthGrant:
        """auth/getuserinfo: the grant of a code, used up by this call; 41008 or 40029 otherwise."""
        if not code:
            raise SandboxError(41008, "missing code")
        grant = self.oauth_codes.pop(code, None)
        if grant is None or self.clock() >= grant.expires_at:
            raise SandboxError(40029, "invalid code")
        return grant

    # 二次验证 (document/path/99499 auth/get_tfa_info, 99500 user/tfa_succ)

    def issue_tfa(self, code: str | None) -> tuple[str, str]:
        """auth/get_tfa_info: the member a verification page's code is for, and a fresh tfa_code."""
        grant = self.redeem_code(code)
        if grant.userid is None:
            raise SandboxError(40029, "invalid code")
        now = self.clock()
        for stale in [c for c, g in self.tfa_codes.items() if g.expires_at <= now]:
            del self.tfa_codes[stale]
        tfa_code = self.random_text(32, string.ascii_letters + string.digits)
        self.tfa_codes[tfa_code] = TfaGrant(userid=grant.userid, expires_at=now + TFA_CODE_TTL)
        return grant.userid, tfa_code

    def redeem_tfa(self, userid: str, tfa_code: str) -> Member:
        """user/tfa_succ: use up the tfa_code issued for this member; 40207 otherwise."""
        member = self.member(userid)
        grant = self.tfa_codes.get(tfa_code)
        if grant is None or grant.userid != member.userid or self.clock() >= grant.expires_at:
            raise SandboxError(40207, "invalid tfa_code")
        del self.tfa_codes[tfa_code]
        return member

    # helpers

    def random_text(self, length: int, alphabet: str) -> str:
        """Random characters from the alphabet, from the injected source."""
        return "".join(self.rng.choice(alphabet) for _ in range(length))

    def openid_of(self, userid: str) -> str:
        """user/convert_to_openid: the openid of the WeChat that follows as the member."""
        member = self.member(userid)
        wechat = self.follower(member.userid)
        if wechat is None:
            # WeCom converts only members who joined through WeChat (关注); we found no
            # documented errcode for this case and answer 41054 (该用户尚未激活).
            raise SandboxError(41054, "user not active")
        return wechat.openid


def _networks(
    addresses: Iterable[str] | None,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    if addresses is None:
        return None
    if isinstance(addresses, str):
        raise ValueError("trusted IPs are a list of networks, not one string")
    return tuple(ipaddress.ip_network(address, strict=False) for address in addresses)


def system_random() -> _random.Random:
    """The default randomness of the emulator: the operating system's."""
    return secrets.SystemRandom()

