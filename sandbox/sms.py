"""An emulated SMS provider: Tencent Cloud's SendSms (TC3-HMAC-SHA256) and Alibaba Cloud's dysmsapi
SendSms (its RPC signature), each refusing what the real one refuses, and an inbox of what each phone got.

It keeps its own notion of both signatures, written from the providers' documents and never imported
from the service (cloud.tencent.com/document/api/382/52072, help.aliyun.com/document_detail/101343.html).
Tests and the demo can make it refuse (flow control, a bad number, the daily cap) or hang past the
caller's timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qsl, quote

import jinja2
from aiohttp import web

TENCENT_VERSION: Final = "2021-01-11"
ALIYUN_VERSION: Final = "2017-05-25"
TENCENT_TEMPLATE: Final = "{1}为您的验证码，10分钟内有效。如非本人操作，请忽略本短信。"
ALIYUN_TEMPLATE: Final = "您的验证码为${code}，10分钟内有效。如非本人操作，请忽略本短信。"
# Tencent refuses a signature older than 5 minutes; Alibaba a timestamp off by 15.
_TENCENT_SKEW: Final = 300
_ALIYUN_SKEW: Final = 900
_MAINLAND: Final = re.compile(r"1[3-9][0-9]{9}")
_AUTHORIZATION: Final = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z]+)/tc3_request, "
    r"SignedHeaders=(?P<headers>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})\Z"
)


class SmsRefusal(enum.Enum):
    """What the emulator can be told to answer instead of sending: each provider's own code for it."""

    FLOW_CONTROL = (
        "LimitExceeded.PhoneNumberOneHourLimit",
        "isv.BUSINESS_LIMIT_CONTROL",
        "触发小时级流控Permits:5",
    )
    DAILY_LIMIT = (
        "LimitExceeded.PhoneNumberDailyLimit",
        "isv.BUSINESS_LIMIT_CONTROL",
        "触发天级流控Permits:10",
    )
    INVALID_NUMBER = (
        "InvalidParameterValue.IncorrectPhoneNumber",
        "isv.MOBILE_NUMBER_ILLEGAL",
        "invalid mobile number",
    )
    NO_BALANCE = ("FailedOperation.InsufficientBalanceInSmsPackage", "isv.AMOUNT_NOT_ENOUGH", "账户余额不足")

    @property
    def tencent(self) -> str:
        """Tencent's code."""
        return self.value[0]

    @property
    def aliyun(self) -> str:
        """Alibaba's code."""
        return self.value[1]


@dataclass(frozen=True, slots=True)
class SmsMessage:
    """A message a phone received."""

    phone: str
    text: str
    sent_at: float
    provider: str


@dataclass(frozen=True, slots=True)
class SmsAccount:
    """The one account the emulator knows: its key pair, its approved 签名 and template, Tencent's app id."""

    key_id: str
    key_secret: str
    sign_name: str
    template_id: str
    app_id: str = "1400000000"


@dataclass
class SmsSandboxState:
    """The emulator's inbox and its switches."""

    account: SmsAccount
    clock: Callable[[], float] = time.time
    inbox: list[SmsMessage] = field(default_factory=list)
    refusal: SmsRefusal | None = None
    hang_seconds: float = 0.0
    refused: list[str] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def messages(self, phone: str | None = None) -> list[SmsMessage]:
        """What was received, oldest first; one phone's only when named."""
        return [message for message in self.inbox if phone is None or message.phone == phone]

    def last_code(self, phone: str) -> str | None:
        """The 6 digits of the last message the phone received (tests type it as a student would)."""
        for message in reversed(self.inbox):
            if message.phone == phone:
                found = re.search(r"\d{6}", message.text)
                return found.group(0) if found else None
        return None


SMS_SANDBOX_STATE: Final = web.AppKey("sms_sandbox_state", SmsSandboxState)


class ShiftedClock:
    """The emulator's time: the real clock moved forward on request, so a test can let a code expire
    (the demo hands the same clock to the service's SMS step)."""

    def __init__(self, base: Callable[[], float] = time.time) -> None:
        self._base = base
        self.offset = 0.0

    def __call__(self) -> float:
        return self._base() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the time forward."""
        self.offset += seconds


# ---- Tencent Cloud: POST / with a JSON body, signed in the Authorization header ----------------------


def _tencent_error(code: str, message: str) -> web.Response:
    # API 3.0 answers 200 with Response.Error for every refusal (cloud.tencent.com/document/api/382/52075).
    return web.json_response(
        {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": _request_id()}}
    )


def _tencent_expected(
    request: web.Request, body: bytes, secret_key: str, date: str, service: str, names: list[str]
) -> str:
    # Each signed header as "name:value", both lower-cased and trimmed (the document's step 1).
    headers = "".join(f"{name}:{request.headers.get(name, '').strip().lower()}\n" for name in names)
    canonical = f"POST\n/\n\n{headers}\n{';'.join(names)}\n{hashlib.sha256(body).hexdigest()}"
    timestamp = request.headers.get("X-TC-Timestamp", "")
    hashed = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n{hashed}"
    key = hmac.new(f"TC3{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    key = hmac.new(key, service.encode(), hashlib.sha256).digest()
    key = hmac.new(key, b"tc3_request", hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


async def _tencent(request: web.Request) -> web.Response:
    state = request.app[SMS_SANDBOX_STATE]
    body = await request.read()
    if (
        request.headers.get("X-TC-Action") != "SendSms"
        or request.headers.get("X-TC-Version") != TENCENT_VERSION
    ):
        return _tencent_error("InvalidAction", "the emulator plays SendSms of 2021-01-11 only")
    found = _AUTHORIZATION.match(request.headers.get("Authorization", ""))
    if found is None:
        return _tencent_error("AuthFailure.SignatureFailure", "the Authorization header is malformed")
    if found["id"] != state.account.key_id:
        return _tencent_error("AuthFailure.SecretIdNotFound", "the SecretId is not found")
    names = found["headers"].split(";")
    if "content-type" not in names or "host" not in names or names != sorted(names):
        return _tencent_error("AuthFailure.SignatureFailure", "content-type and host must be signed, sorted")
    try:
        timestamp = int(request.headers.get("X-TC-Timestamp", ""))
    except ValueError:
        return _tencent_error("MissingParameter", "X-TC-Timestamp is missing")
    if abs(state.clock() - timestamp) > _TENCENT_SKEW:
        return _tencent_error("AuthFailure.SignatureExpire", "the signature expired")
    if (
        datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d") != found["date"]
        or found["service"] != "sms"
    ):
        return _tencent_error("AuthFailure.SignatureFailure", "the credential scope is wrong")
    expected = _tencent_expected(request, body, state.account.key_secret, found["date"], "sms", names)
    if not hmac.compare_digest(expected, found["signature"]):
        return _tencent_error("AuthFailure.SignatureFailure", "the signature does not match")
    try:
        params = json.loads(body)
        phones = [str(phone) for phone in params["PhoneNumberSet"]]
        values = [str(value) for value in params.get("TemplateParamSet", [])]
        app_id, sign, template = (
            str(params["SmsSdkAppId"]),
            str(params["SignName"]),
            str(params["TemplateId"]),
        )
    except (ValueError, KeyError, TypeError):
        return _tencent_error("InvalidParameter", "the body is not SendSms's")
    if app_id != state.account.app_id:
        return _tencent_error("InvalidParameterValue.SdkAppIdNotExist", "the SmsSdkAppId does not exist")
    if sign != state.account.sign_name:
        return _tencent_error("FailedOperation.SignatureIncorrectOrUnapproved", "the 签名 is not approved")
    if template != state.account.template_id:
        return _tencent_error("FailedOperation.TemplateIncorrectOrUnapproved", "the template is not approved")
    if len(phones) != 1 or not phones[0].startswith("+86") or not _MAINLAND.fullmatch(phones[0][3:]):
        return _tencent_error("InvalidParameterValue.IncorrectPhoneNumber", "the number is not valid")
    if (slow := await _hang(state)) is not None:
        return slow
    phone = phones[0][3:]
    if state.refusal is not None:
        state.refused.append(phone)
        if state.refusal in (SmsRefusal.INVALID_NUMBER, SmsRefusal.NO_BALANCE):
            return _tencent_error(state.refusal.tencent, state.refusal.value[2])
        code, message = state.refusal.tencent, state.refusal.value[2]
    else:
        text = TENCENT_TEMPLATE
        for number, value in enumerate(values, start=1):
            text = text.replace(f"{{{number}}}", value)
        state.inbox.append(SmsMessage(phone, f"【{sign}】{text}", state.clock(), "tencent"))
        code, message = "Ok", "send success"
    status = {
        "SerialNo": _request_id(),
        "PhoneNumber": phones[0],
        "Fee": 1,
        "SessionContext": "",
        "Code": code,
        "Message": message,
        "IsoCode": "CN",
    }
    return web.json_response({"Response": {"SendStatusSet": [status], "RequestId": _request_id()}})


# ---- Alibaba Cloud: RPC parameters in the query or a form body, HMAC-SHA1 signed -------------------------


def _aliyun_error(code: str, message: str, status: int = 200) -> web.Response:
    return web.json_response({"Code": code, "Message": message, "RequestId": _request_id()}, status=status)


def _pop_encode(text: str) -> str:
    # POP's percent-encoding: RFC 3986 unreserved characters kept, everything else as UTF-8 %XX.
    return quote(text.encode("utf-8"), safe="~")


def _aliyun_expected(method: str, params: dict[str, str], secret: str) -> str:
    pairs = sorted((key, value) for key, value in params.items() if key != "Signature")
    query = "&".join(f"{_pop_encode(key)}={_pop_encode(value)}" for key, value in pairs)
    to_sign = f"{method}&%2F&{_pop_encode(query)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


async def _aliyun(request: web.Request) -> web.Response:
    state = request.app[SMS_SANDBOX_STATE]
    pairs = list(request.query.items())
    if request.method == "POST":
        pairs += parse_qsl((await request.read()).decode("utf-8", "replace"), keep_blank_values=True)
    params = dict(pairs)
    for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp", "Action", "Version"):
        if not params.get(name):
            return _aliyun_error(f"MissingParameter.{name}", f"{name} is mandatory for this action.", 400)
    if params["Action"] != "SendSms" or params["Version"] != ALIYUN_VERSION:
        return _aliyun_error("InvalidAction.NotFound", "the emulator plays SendSms of 2017-05-25 only", 404)
    if params["AccessKeyId"] != state.account.key_id:
        return _aliyun_error("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
    if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
        return _aliyun_error("InvalidParameter", "SignatureMethod HMAC-SHA1, SignatureVersion 1.0", 400)
    try:
        stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return _aliyun_error("InvalidTimeStamp.Format", "Specified time stamp is not valid.", 400)
    if abs(state.clock() - stamp) > _ALIYUN_SKEW:
        return _aliyun_error(
            "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.", 400
        )
    expected = _aliyun_expected(request.method, params, state.account.key_secret)
    if not hmac.compare_digest(expected, params["Signature"]):
        return _aliyun_error(
            "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.", 400
        )
    if params["SignatureNonce"] in state.nonces:
        return _aliyun_error("SignatureNonceUsed", "Specified signature nonce was used already.", 400)
    state.nonces.add(params["SignatureNonce"])
    if params.get("SignName") != state.account.sign_name:
        return _aliyun_error("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
    if params.get("TemplateCode") != state.account.template_id:
        return _aliyun_error("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
    phone = params.get("PhoneNumbers", "")
    if not _MAINLAND.fullmatch(phone):
        return _aliyun_error("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
    try:
        values = json.loads(params.get("TemplateParam", "{}"))
        text = re.sub(r"\$\{(\w+)\}", lambda found: str(values[found.group(1)]), ALIYUN_TEMPLATE)
    except (ValueError, KeyError, TypeError):
        return _aliyun_error("isv.TEMPLATE_PARAMS_ILLEGAL", "模板变量里包含非法关键字")
    if (slow := await _hang(state)) is not None:
        return slow
    if state.refusal is not None:
        state.refused.append(phone)
        return _aliyun_error(state.refusal.aliyun, state.refusal.value[2])
    state.inbox.append(SmsMessage(phone, f"【{params['SignName']}】{text}", state.clock(), "aliyun"))
    return web.json_response(
        {"Code": "OK", "Message": "OK", "BizId": _request_id(), "RequestId": _request_id()}
    )


# ---- the inbox --------------------------------------------------------------------------------------------


async def _hang(state: SmsSandboxState) -> web.Response | None:
    """When told to, answer only after the caller has given up (its timeout is shorter), or as soon
    as the hang is switched off (so that a test can end with no request still held)."""
    if state.hang_seconds <= 0:
        return None
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.released.wait(), timeout=state.hang_seconds)
    return web.json_response({}, status=504)


async def _messages(request: web.Request) -> web.Response:
    state = request.app[SMS_SANDBOX_STATE]
    phone = request.query.get("phone")
    return web.json_response(
        [{"phone": m.phone, "text": m.text, "sent_at": m.sent_at} for m in state.messages(phone)]
    )


_PAGES: Final = jinja2.Environment(loader=jinja2.PackageLoader("sandbox", "templates"), autoescape=True)


async def _inbox(request: web.Request) -> web.Response:
    state = request.app[SMS_SANDBOX_STATE]
    phones: dict[str, list[SmsMessage]] = {}
    for message in reversed(state.inbox):
        phones.setdefault(message.phone, []).append(message)
    html = _PAGES.get_template("sms/inbox.html").render(
        phones=phones,
        when=lambda stamp: datetime.fromtimestamp(stamp).strftime("%H:%M:%S"),
    )
    return web.Response(text=html, content_type="text/html")


def _request_id() -> str:
    return secrets.token_hex(16)


async def _faults(request: web.Request) -> web.Response:
    """POST /_sandbox/faults: refusal=<SmsRefusal name or empty>, hang=<seconds>, advance=<seconds>."""
    state = request.app[SMS_SANDBOX_STATE]
    form = await request.post()
    try:
        if "refusal" in form:
            name = str(form["refusal"])
            state.refusal = SmsRefusal[name] if name else None
        if "hang" in form:
            state.hang_seconds = min(max(float(str(form["hang"])), 0.0), 60.0)
            # Switched off: the requests held now are answered at once; on: the next ones are held.
            if state.hang_seconds:
                state.released.clear()
            else:
                state.released.set()
        if "advance" in form:
            if not isinstance(state.clock, ShiftedClock):
                raise ValueError("this emulator's clock cannot be moved")
            state.clock.advance(min(max(float(str(form["advance"])), 0.0), 86400.0))
    except (KeyError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    refusal = state.refusal.name if state.refusal else None
    return web.json_response({"refusal": refusal, "hang": state.hang_seconds})


def create_sms_sandbox(account: SmsAccount, *, clock: Callable[[], float] | None = None) -> web.Application:
    """The emulator: Tencent at /tencent/, Alibaba at /aliyun/, the inbox at / and as JSON at /messages;
    its switches at /_sandbox/faults. Its clock is a ShiftedClock unless one is given."""
    app = web.Application()
    app[SMS_SANDBOX_STATE] = SmsSandboxState(account=account, clock=clock or ShiftedClock())
    app.router.add_post("/tencent/", _tencent, name="sms_tencent")
    app.router.add_route("*", "/aliyun/", _aliyun, name="sms_aliyun")
    app.router.add_get("/messages", _messages, name="sms_messages")
    app.router.add_get("/", _inbox, name="sms_inbox")
    app.router.add_post("/_sandbox/faults", _faults, name="sms_faults")
    return app
