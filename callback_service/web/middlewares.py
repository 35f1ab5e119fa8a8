"""The request id of every request; domain failures turned into HTTP answers that leak nothing; and
every HTTP error that a browser can reach turned into a page of the site."""

from __future__ import annotations

import logging
import time
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from callback_service.clients.budget import impatient
from callback_service.logs import REQUEST_ID, REQUEST_ID_HEADER, accept_request_id
from callback_service.metrics import CALLBACK_SECONDS, PAGE_SECONDS
from callback_service.web.client_address import from_trusted_proxy
from callback_service.web.keys import METRICS
from callback_service.web.pages.render import SECURITY_HEADERS, message, url
from handlers.usecases.contracts import StoreUnavailable

log: Final = logging.getLogger(__name__)
# The POST routes of WeCom's callbacks (the app's, and the contacts-sync assistant's when it has its
# own): timed as acknowledgements, not as pages.
CALLBACK_ROUTES: Final = frozenset({"callback", "contacts-callback"})

MACHINE_PATHS: Final = frozenset(
    {"/wecom/callback", "/wecom/contacts-callback", "/health", "/ready", "/metrics"}
)
"""Paths that WeCom and monitoring call: their answers stay plain for the machines that read them."""
# Headers of an HTTP error that still mean something on its page.
_KEPT_HEADERS: Final = ("Allow", "Retry-After")


# A path typed with a trailing slash (/bind/) is sent, relatively, to the one without it.
_TRAILING_SLASH: Final = web.normalize_path_middleware(append_slash=False, remove_slash=True)


@web.middleware
async def service_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request an id, on every log line of it and in the X-Request-Id of its answer, time
    it (the callback's acknowledgement, or the page's route), and turn its failures into answers.

    The id of the proxy in front is kept when well formed, so that its log and ours join up. One
    middleware rather than a chain of four: each layer of aiohttp's chain cost every callback about
    4 µs of CPU (docs/performance.md).
    """
    started = time.perf_counter()
    # Only a trusted proxy's id is kept: anyone else could plant misleading ids in our logs.
    offered = request.headers.get(REQUEST_ID_HEADER) if from_trusted_proxy(request) else None
    request_id = accept_request_id(offered)
    token = REQUEST_ID.set(request_id)
    try:
        # A request waits for no WeCom call: a spent budget answers 稍后再试 (CallBudgetSpent).
        with impatient():
            response = await _answer(request, handler)
    except web.HTTPException as exc:  # a redirect, or an error that stays plain (MACHINE_PATHS)
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        REQUEST_ID.reset(token)
        _observe(request, time.perf_counter() - started)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer; a store outage answers 503 and a bug a bare 500, the details going to
    our log only; an HTTP error (404, 405, 413...) a browser can reach becomes a page of the site."""
    try:
        try:
            if request.match_info.http_exception is not None:  # no route: perhaps a trailing slash
                return await _TRAILING_SLASH(request, handler)
            return await handler(request)
        except web.HTTPException as answer:
            page = _error_page(request, answer)
            if page is None:
                raise
            return page
    except web.HTTPException:
        raise
    except StoreUnavailable:
        log.warning("store unavailable during %s %s", request.method, request.path)
        return web.Response(status=503, text="service temporarily unavailable, please retry")
    except Exception:
        log.exception("unhandled error during %s %s", request.method, request.path)
        return web.Response(status=500, text="internal error")


def _observe(request: web.Request, seconds: float) -> None:
    metrics = request.app.get(METRICS)
    if metrics is None:  # an app of the sandbox's, mounted beside ours in the demo
        return
    route = request.match_info.route
    if route.name in CALLBACK_ROUTES:
        metrics.observe(CALLBACK_SECONDS, seconds)
        return
    resource = route.resource
    metrics.observe(PAGE_SECONDS, seconds, route=resource.canonical if resource is not None else "unmatched")


def _error_page(request: web.Request, answer: web.HTTPException) -> web.Response | None:
    """The Chinese page in the site's layout, with a way back, for an HTTP error; None where the
    answer stays as it is (not an error, a machine's path, or a mounted application's own)."""
    if answer.status < 400 or request.path in MACHINE_PATHS or len(request.match_info.apps) > 1:
        return None
    title, text, link = _error_text(request, answer.status)
    kept = {name: answer.headers[name] for name in _KEPT_HEADERS if name in answer.headers}
    return message(
        request, title=title, text=text, status=answer.status, link=link, headers=kept | SECURITY_HEADERS
    )


def _error_text(request: web.Request, status: int) -> tuple[str, str, tuple[str, str] | None]:
    if status == 404:
        return "页面不存在", "您访问的页面不存在，请检查链接是否完整，或从下方按钮重新开始认证绑定。", None
    if status == 405:
        return "无法打开此页面", "该页面不能以这种方式打开。请返回上一页，或重新开始认证绑定。", None
    if status == 413:
        return (
            "提交的内容过长",
            "您提交的内容超过了允许的长度，本次提交没有生效。请返回手机号绑定页面，重新输入手机号后提交。",
            (url(request, "bind-phone"), "返回手机号绑定页面"),
        )
    if status >= 500:
        return "服务暂时不可用", "系统繁忙或正在维护，您的操作没有生效。请稍后重新尝试。", None
    return "请求无效", "无法处理本次请求，您的操作没有生效。请从下方按钮重新开始认证绑定。", None
