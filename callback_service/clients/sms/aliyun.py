"""Alibaba Cloud SMS: dysmsapi's SendSms, signed as its RPC API asks.

The signature: help.aliyun.com/document_detail/101343.html;
SendSms: help.aliyun.com/document_detail/101414.html.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

import aiohttp

from callback_service.clients.sms.sending import post_for_answer, refused
from handlers.core.phone import Phone
from handlers.core.sms_code import SmsFailure

DEFAULT_API_BASE: Final = "https://dysmsapi.aliyuncs.com"
DEFAULT_REGION: Final = "cn-hangzhou"
VERSION: Final = "2017-05-25"

_log = logging.getLogger(__name__)

# SendSms's error codes (help.aliyun.com/document_detail/101346.html): isv.BUSINESS_LIMIT_CONTROL is
# the flow control of one number by the minute, the hour or the day; only its message says which.
_FAILURES: Final[Mapping[str, SmsFailure]] = {
    "isv.MOBILE_NUMBER_ILLEGAL": SmsFailure.INVALID_NUMBER,
    "isv.MOBILE_COUNT_OVER_LIMIT": SmsFailure.INVALID_NUMBER,
    "isv.BLACK_KEY_CONTROL_LIMIT": SmsFailure.INVALID_NUMBER,
    "isv.DAY_LIMIT_CONTROL": SmsFailure.DAILY_LIMIT,
}
_DAY_FLOW_CONTROL: Final = "天级"


def percent_encode(text: str) -> str:
    """RFC 3986 encoding as POP asks: UTF-8, only A-Z a-z 0-9 - _ . ~ left, a space as %20."""
    return quote(text, safe="-_.~")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """The method, the path "/" and the sorted, encoded parameters (Signature left out), each encoded."""
    canonical = "&".join(
        f"{percent_encode(key)}={percent_encode(value)}"
        for key, value in sorted(params.items())
        if key != "Signature"
    )
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def rpc_signature(method: str, params: Mapping[str, str], access_key_secret: str) -> str:
    """Base64 of HMAC-SHA1 over the string to sign, keyed with the secret and "&"."""
    digest = hmac.new(
        (access_key_secret + "&").encode("utf-8"),
        string_to_sign(method, params).encode("utf-8"),
        hashlib.sha1,
    ).digest()
    return base64.b64encode(digest).decode("ascii")


class AliyunSms:
    """Sends verification codes through Alibaba Cloud's dysmsapi SendSms (a signed form POST)."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        template_code: str,
        api_base: str = DEFAULT_API_BASE,
        region: str = DEFAULT_REGION,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self._session = session
        self._access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        self._sign_name = sign_name
        self._template_code = template_code
        self._url = api_base.rstrip("/") + "/"
        self._region = region
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._nonce = nonce

    def signed_params(self, phone: Phone, code: str) -> dict[str, str]:
        """SendSms's parameters for the code, with their Signature for a POST."""
        params = {
            "AccessKeyId": self._access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": str(phone),
            "RegionId": self._region,
            "SignName": self._sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": self._nonce(),
            "SignatureVersion": "1.0",
            "TemplateCode": self._template_code,
            "TemplateParam": json.dumps({"code": code}),
            "Timestamp": datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": VERSION,
        }
        params["Signature"] = rpc_signature("POST", params, self._access_key_secret)
        return params

    async def send_code(self, phone: Phone, code: str) -> None:
        """Send the code as the template's ${code}; SmsNotSent when Alibaba refused or did not answer."""
        body = "&".join(
            f"{percent_encode(key)}={percent_encode(value)}"
            for key, value in self.signed_params(phone, code).items()
        )
        answer = await post_for_answer(
            self._session,
            self._url,
            data=body.encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            client_timeout=self._timeout,
            provider="aliyun",
            phone=phone,
            log=_log,
        )
        fields = answer if isinstance(answer, dict) else {}
        status = str(fields.get("Code", "unreadable"))
        if status == "OK":
            return
        failure = _FAILURES.get(status, SmsFailure.LATER)
        if status == "isv.BUSINESS_LIMIT_CONTROL" and _DAY_FLOW_CONTROL in str(fields.get("Message", "")):
            failure = SmsFailure.DAILY_LIMIT
        raise refused(status, failure, provider="aliyun", phone=phone, log=_log)
