"""SMS providers that send the codes proving a typed phone: Tencent Cloud and Alibaba Cloud, signed by us."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp

from callback_service.clients.sms import aliyun, tencent
from callback_service.clients.sms.aliyun import AliyunSms
from callback_service.clients.sms.tencent import TencentSms
from config import Settings
from handlers.usecases.sms_proof import SmsSender

__all__ = ["AliyunSms", "TencentSms", "create_sms_sender"]


def create_sms_sender(
    settings: Settings, session: aiohttp.ClientSession, *, clock: Callable[[], float] = time.time
) -> SmsSender | None:
    """The provider the settings name, or None when they name none (the settings checked them whole)."""
    if settings.sms_provider is None or settings.sms_key_secret is None:
        return None
    secret = settings.sms_key_secret.get_secret_value()
    if settings.sms_provider == "tencent":
        return TencentSms(
            session=session,
            secret_id=settings.sms_key_id or "",
            secret_key=secret,
            sdk_app_id=settings.sms_app_id or "",
            sign_name=settings.sms_sign_name or "",
            template_id=settings.sms_template_id or "",
            api_base=settings.sms_api_base or tencent.DEFAULT_API_BASE,
            region=settings.sms_region or tencent.DEFAULT_REGION,
            timeout=settings.sms_timeout,
            clock=clock,
        )
    return AliyunSms(
        session=session,
        access_key_id=settings.sms_key_id or "",
        access_key_secret=secret,
        sign_name=settings.sms_sign_name or "",
        template_code=settings.sms_template_id or "",
        api_base=settings.sms_api_base or aliyun.DEFAULT_API_BASE,
        region=settings.sms_region or aliyun.DEFAULT_REGION,
        timeout=settings.sms_timeout,
        clock=clock,
    )
