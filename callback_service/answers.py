"""One table of how a failure is answered: to a person, as a page of the site (a headline and a
remedy), and to a machine, as plain text; and how our log records it.

The pages' `@page` decorator, the service's middleware and the callback endpoint all answer from
here, so that an outage is a 503 with the same words wherever it is met, and no answer leaks what
went wrong (the details go to our log only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from callback_service.clients.cas import CasUnreachable
from handlers.core.wecom_errors import ConfigurationError, WeComUnavailable
from handlers.usecases.contracts import StoreUnavailable


@dataclass(frozen=True, slots=True)
class Answer:
    """An error's answer: its status, its plain text, and its page."""

    status: int
    plain: str
    """What a machine reads (WeCom, monitoring)."""
    title: str
    """The page's headline."""
    text: str
    """The page's remedy: what happened to the student's action, and what to do."""
    retry_after: int | None = None


UNAVAILABLE: Final = Answer(
    503,
    "service temporarily unavailable, please retry",
    "服务暂时不可用",
    "系统繁忙或正在维护，您的操作没有生效。请稍后再试。",
    retry_after=30,
)
"""Something we depend on is down (the store, WeCom, CAS), or refuses our configuration: nothing
was changed, and the student may only wait."""
INTERNAL: Final = Answer(
    500,
    "internal error",
    "出错了",
    "系统处理您的请求时出错，您的操作可能没有生效。请重新开始认证绑定；如仍失败，请联系学校信息中心。",
)
"""A bug."""

OUTAGES: Final[tuple[type[Exception], ...]] = (StoreUnavailable, WeComUnavailable, CasUnreachable)
"""The failures of what we depend on, answered UNAVAILABLE and logged as a warning."""

_START_AGAIN: Final = "无法处理本次请求，您的操作没有生效。请从下方按钮重新开始认证绑定。"
HTTP_ERRORS: Final = {
    400: Answer(400, "bad request", "请求无效", _START_AGAIN),
    403: Answer(403, "forbidden", "请求无效", _START_AGAIN),
    404: Answer(
        404,
        "not found",
        "页面不存在",
        "您访问的页面不存在，请检查链接是否完整，或从下方按钮重新开始认证绑定。",
    ),
    405: Answer(
        405,
        "method not allowed",
        "无法打开此页面",
        "该页面不能以这种方式打开。请返回上一页，或重新开始认证绑定。",
    ),
    413: Answer(
        413,
        "request too large",
        "提交的内容过长",
        "您提交的内容超过了允许的长度，本次提交没有生效。请返回手机号绑定页面，重新输入手机号后提交。",
    ),
}
"""The HTTP errors a request can meet, by status."""


def failure(exc: Exception) -> Answer:
    """The answer to a failure that escaped a view."""
    if isinstance(exc, (*OUTAGES, ConfigurationError)):
        return UNAVAILABLE
    return INTERNAL


def http_error(status: int) -> Answer:
    """The answer to an HTTP error (4xx, 5xx) by its status."""
    if status in HTTP_ERRORS:
        return HTTP_ERRORS[status]
    if status >= 500:
        return UNAVAILABLE
    return HTTP_ERRORS[400]


def log_failure(log: logging.Logger, where: str, exc: Exception) -> Answer:
    """Log a failure as its kind asks (an outage, our configuration, a bug) and return its answer."""
    if isinstance(exc, OUTAGES):
        log.warning("%s: %s unavailable", where, type(exc).__name__)
    elif isinstance(exc, ConfigurationError):
        # The operator's to fix (the message names the remedy); the student may only wait.
        log.error("%s: WeCom refused our configuration: %s", where, exc)
    else:
        log.error("%s: unhandled error", where, exc_info=exc)
    return failure(exc)
