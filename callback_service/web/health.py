"""Liveness, readiness and metrics for monitoring."""

from __future__ import annotations

import asyncio
from importlib import metadata

from aiohttp import web

from callback_service.clients.wecom import WeComError
from callback_service.web.keys import METRICS, STORE, WECOM_APP
from handlers.contracts import StoreNotDurable, StoreUnavailable


def _version() -> str:
    try:
        return metadata.version("wecom-bind")
    except metadata.PackageNotFoundError:
        return "unknown"


async def health(request: web.Request) -> web.Response:
    """Answer 200 while the process serves requests."""
    return web.json_response({"status": "ok", "service": "wecom-bind", "version": _version()})


READY_TIMEOUT = 3.0


async def ready(request: web.Request) -> web.Response:
    """Answer 200 when the store answers and WeCom gives the app a token, 503 otherwise."""
    checks = {"store": "up", "wecom": "up"}
    try:
        await request.app[STORE].ping()
    except StoreNotDurable:
        checks["store"] = "redis does not persist"
    except StoreUnavailable:
        checks["store"] = "down"
    if checks["store"] == "down":
        checks["wecom"] = "unknown"
    else:
        try:
            # The token usually comes from the store's cache: WeCom is asked only when it runs out.
            async with asyncio.timeout(READY_TIMEOUT):
                await request.app[WECOM_APP].access_token()
        except (WeComError, StoreUnavailable, TimeoutError):
            checks["wecom"] = "down"
    ok = checks["store"] == checks["wecom"] == "up"
    body = {"status": "ready" if ok else "unavailable", **checks}
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text: the counters, and the inbox's depth."""
    stats = await request.app[STORE].inbox_stats()
    text = request.app[METRICS].render(
        {
            "wecom_bind_inbox_pending": stats.pending,
            "wecom_bind_inbox_leased": stats.leased,
            "wecom_bind_inbox_dead": stats.dead,
        }
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")
