"""Rendering the students' pages, and turning every failure on them into a page, never a traceback."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import aiohttp_jinja2
from aiohttp import web

from callback_service.clients.cas import CasUnreachable
from callback_service.clients.wecom import ConfigurationError, WeComUnavailable
from callback_service.web.keys import PAGE_TEMPLATES, SETTINGS
from handlers.core.guide import UNFOLLOW, ErrorCode
from handlers.usecases.contracts import StoreUnavailable

log: Final = logging.getLogger(__name__)

View = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No script runs on these pages, nothing frames them, and forms post to us only.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def url(request: web.Request, name: str, **parts: str) -> str:
    """The path of a named route (relative: never built from the Host header)."""
    return str(request.app.router[name].url_for(**parts))


def guide_links(request: web.Request) -> dict[str, list[tuple[str, str]]]:
    """The ways on from each error of chapter 2: the steps its remedy cites, and the pages to go to."""
    help_url = url(request, "help")
    return {
        ErrorCode.PHONE_TAKEN: [(f"{help_url}#rules", "查看 1.2 注意事项")],
        ErrorCode.ACCOUNT_FOLLOWED: [(url(request, "me"), "查看我的绑定状态")],
        ErrorCode.PHONE_NOT_IN_CONTACTS: [
            (f"{help_url}#step-2", "查看 1.3 关注企业号的具体步骤：步骤2"),
            (f"{help_url}#step-3", "步骤3"),
            (url(request, "bind"), "原因二：去认证绑定"),
        ],
        ErrorCode.PHONE_VERIFIED_BY_OTHER: [
            (f"{help_url}#step-3", "查看 1.3 关注企业号的具体步骤：步骤3"),
            (url(request, "bind"), "去绑定新的手机号"),
        ],
    }


def render(
    request: web.Request, template: str, context: Mapping[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    """Render a page of templates/pages/ with the links every page needs."""
    values = {
        "school": request.app[SETTINGS].school_name,
        "help_contact": request.app[SETTINGS].help_contact,
        "guide_links": guide_links(request),
        "unfollow": UNFOLLOW,
        "help_url": url(request, "help"),
        "me_url": url(request, "me"),
        "start_url": url(request, "bind"),
        **(context or {}),
    }
    return aiohttp_jinja2.render_template(
        f"pages/{template}", request, values, app_key=PAGE_TEMPLATES, status=status
    )


def message(
    request: web.Request,
    *,
    title: str,
    text: str,
    status: int,
    link: tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A page that says one thing and offers one way on (by default: start again)."""
    href, label = link or (url(request, "bind"), "重新开始认证绑定")
    response = render(
        request, "message.html", {"title": title, "text": text, "link_href": href, "link_label": label},
        status=status,
    )
    response.headers.update(headers or {})
    return response


def unavailable(request: web.Request) -> web.Response:
    """The 503 page: something we depend on is down; nothing was changed."""
    return message(
        request,
        title="服务暂时不可用",
        text="系统繁忙或正在维护，您的操作没有生效。请稍后再试。",
        status=503,
        headers={"Retry-After": "30"},
    )


def page(view: View) -> View:
    """Wrap a page view: security headers on every answer, and every failure shown as a page."""

    @functools.wraps(view)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await view(request)
        except web.HTTPException as answer:
            answer.headers.update(SECURITY_HEADERS)
            raise
        except (StoreUnavailable, WeComUnavailable, CasUnreachable) as exc:
            log.warning("page %s: %s unavailable", request.path, type(exc).__name__)
            response = unavailable(request)
        except ConfigurationError as exc:
            # The operator's to fix (the message names the remedy); the student may only wait.
            log.error("page %s: WeCom refused our configuration: %s", request.path, exc)
            response = unavailable(request)
        except Exception:
            log.exception("page %s: unhandled error", request.path)
            response = message(
                request,
                title="出错了",
                text="系统处理您的请求时出错，您的操作可能没有生效。请重新开始认证绑定；如仍失败，请联系学校信息中心。",
                status=500,
            )
        response.headers.update(SECURITY_HEADERS)
        return response

    return wrapped

