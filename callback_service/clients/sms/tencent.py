"""Tencent Cloud SMS: SendSms of API 3.0, signed with TC3-HMAC-SHA256.

The signature: cloud.tencent.com/document/api/382/52072; SendSms: cloud.tencent.com/document/api/382/55981.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from callback_service.clients.sms.sending import post_for_answer, refused
from handlers.core.phone import Phone
from handlers.core.sms_code import SmsFailure

DEFAULT_API_BASE: Final = "https://sms.tencentcloudapi.com"
DEFAULT_REGION: Final = "ap-guangzhou"
SERVICE: Final = "sms"
VERSION: Final = "2021-01-11"
ALGORITHM: Final = "TC3-HMAC-SHA256"
CONTENT_TYPE: Final = "application/json; charset=utf-8"

_log = logging.getLogger(__name__)

# SendSms's error codes (cloud.tencent.com/document/api/382/55981, 错误码): a number the operators
# refuse, and the per-number daily cap; anything else (flow control by the minute or the hour, a
# signature, template or balance problem of ours) the student can only retry later.
_FAILURES: Final[Mapping[str, SmsFailure]] = {
    "InvalidParameterValue.IncorrectPhoneNumber": SmsFailure.INVALID_NUMBER,
    "FailedOperation.PhoneNumberInBlacklist": SmsFailure.INVALID_NUMBER,
    "FailedOperation.PhoneNumberParseFail": SmsFailure.INVALID_NUMBER,
    "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber": SmsFailure.INVALID_NUMBER,
    "LimitExceeded.PhoneNumberDailyLimit": SmsFailure.DAILY_LIMIT,
}


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def tc3_authorization(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    host: str,
    payload: bytes,
    timestamp: int,
    content_type: str = CONTENT_TYPE,
) -> str:
    """The Authorization header of a POST to / with a JSON payload, signing content-type and host."""
    signed_headers = "content-type;host"
    canonical_request = "\n".join(
        (
            "POST",
            "/",
            "",
            f"content-type:{content_type.lower()}\nhost:{host.lower()}\n",
            signed_headers,
            hashlib.sha256(payload).hexdigest(),
        )
    )
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        (ALGORITHM, str(timestamp), scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest())
    )
    secret_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    secret_signing = _hmac(_hmac(secret_date, service), "tc3_request")
    signature = hmac.new(secret_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return (
        f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )


class TencentSms:
    """Sends verification codes through Tencent Cloud SMS's SendSms."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        secret_id: str,
        secret_key: str,
        sdk_app_id: str,
        sign_name: str,
        template_id: str,
        api_base: str = DEFAULT_API_BASE,
        region: str = DEFAULT_REGION,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._sdk_app_id = sdk_app_id
        self._sign_name = sign_name
        self._template_id = template_id
        self._url = api_base.rstrip("/") + "/"
        self._host = urlsplit(api_base).netloc
        self._region = region
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock

    async def send_code(self, phone: Phone, code: str) -> None:
        """Send the code as the template's {1}; SmsNotSent when Tencent refused or did not answer."""
        payload = json.dumps(
            {
                "PhoneNumberSet": [f"+86{phone}"],
                "SmsSdkAppId": self._sdk_app_id,
                "SignName": self._sign_name,
                "TemplateId": self._template_id,
                "TemplateParamSet": [code],
            },
            ensure_ascii=False,
        ).encode("utf-8")
        timestamp = int(self._clock())
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": self._host,
            "X-TC-Action": "SendSms",
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self._region,
            "Authorization": tc3_authorization(
                secret_id=self._secret_id,
                secret_key=self._secret_key,
                service=SERVICE,
                host=self._host,
                payload=payload,
                timestamp=timestamp,
            ),
        }
        answer = await post_for_answer(
            self._session,
            self._url,
            data=payload,
            headers=headers,
            client_timeout=self._timeout,
            provider="tencent",
            phone=phone,
            log=_log,
        )
        status = _status_code(answer)
        if status.lower() == "ok":
            return
        failure = _FAILURES.get(status, SmsFailure.LATER)
        raise refused(status, failure, provider="tencent", phone=phone, log=_log)


def _status_code(answer: object) -> str:
    """The request's error code, else the number's status code; "unreadable" for anything else."""
    response = answer.get("Response") if isinstance(answer, dict) else None
    if not isinstance(response, dict):
        return "unreadable"
    error = response.get("Error")
    if isinstance(error, dict):
        return str(error.get("Code", "unreadable"))
    statuses = response.get("SendStatusSet")
    if isinstance(statuses, list) and statuses and isinstance(statuses[0], dict):
        return str(statuses[0].get("Code", "unreadable"))
    return "unreadable"
