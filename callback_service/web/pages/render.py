"""Rendering the students' pages, and turning every failure on them into a page, never a traceback."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import aiohttp_jinja2
import jinja2
from aiohttp import web

from callback_service.answers import UNAVAILABLE, Answer, log_failure
from callback_service.compose import SETTINGS
from handlers.core.guide import UNFOLLOW, ErrorCode

log: Final = logging.getLogger(__name__)
PAGE_TEMPLATES: Final = web.AppKey("page_templates", jinja2.Environment)
"""The pages' templates, compiled once (setup_pages)."""

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


def answer_page(
    request: web.Request,
    answer: Answer,
    *,
    link: tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The page of an error's answer (callback_service.answers), with one way on."""
    extra = {"Retry-After": str(answer.retry_after)} if answer.retry_after is not None else {}
    return message(
        request, title=answer.title, text=answer.text, status=answer.status, link=link,
        headers={**extra, **(headers or {})},
    )


def unavailable(request: web.Request) -> web.Response:
    """The 503 page: something we depend on is down; nothing was changed."""
    return answer_page(request, UNAVAILABLE)


def page(view: View) -> View:
    """Wrap a page view: security headers on every answer, and every failure shown as a page."""

    @functools.wraps(view)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await view(request)
        except web.HTTPException as answer:
            answer.headers.update(SECURITY_HEADERS)
            raise
        except Exception as exc:  # the answer and the log line by callback_service.answers' table
            response = answer_page(request, log_failure(log, f"page {request.path}", exc))
        response.headers.update(SECURITY_HEADERS)
        return response

    return wrapped

