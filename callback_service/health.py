"""Liveness, readiness and metrics for monitoring."""

from __future__ import annotations

from importlib import metadata

from aiohttp import web

from callback_service.keys import METRICS, STORE
from handlers.contracts import StoreUnavailable


def _version() -> str:
    try:
        return metadata.version("wecom-bind")
    except metadata.PackageNotFoundError:
        return "unknown"


async def health(request: web.Request) -> web.Response:
    """Answer 200 while the process serves requests."""
    return web.json_response({"status": "ok", "service": "wecom-bind", "version": _version()})


async def ready(request: web.Request) -> web.Response:
    """Answer 200 when the store answers, 503 otherwise."""
    try:
        await request.app[STORE].ping()
    except StoreUnavailable:
        return web.json_response({"status": "unavailable", "store": "down"}, status=503)
    return web.json_response({"status": "ready", "store": "up"})


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
