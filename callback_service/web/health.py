"""Liveness, readiness and metrics for monitoring."""

from __future__ import annotations

import hmac
from importlib import metadata

from aiohttp import web

from callback_service.metrics import CONTENT_TYPE
from callback_service.web.keys import CLOCK, METRICS, SETTINGS, STORE, WECOM_READY
from handlers.usecases.contracts import StoreNotDurable, StoreUnavailable


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
    """Answer 200 when the store answers and WeCom gives the app a token, 503 otherwise.

    A configuration error shows as "wecom: <errcode>: <remedy>"; while WeCom refuses, it is asked
    again at most once a minute.
    """
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
            problem = await request.app[WECOM_READY].problem(within=READY_TIMEOUT)
        except StoreUnavailable:
            problem = "down"
        if problem is not None:
            checks["wecom"] = problem
    ok = checks["store"] == checks["wecom"] == "up"
    body = {"status": "ready" if ok else "unavailable", **checks}
    return web.json_response(body, status=200 if ok else 503)


def _may_scrape(request: web.Request) -> bool:
    token = request.app[SETTINGS].metrics_token
    if token is None:
        return False
    given = request.headers.get("Authorization", "")
    expected = "Bearer " + token.get_secret_value()
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text for a scraper with the bearer token; 404 to anyone else, or without a token set."""
    if not _may_scrape(request):
        raise web.HTTPNotFound()
    store = request.app[STORE]
    stats = await store.inbox_stats()
    oldest = await store.inbox_oldest_pending()
    age = 0.0 if oldest is None else max(0.0, request.app[CLOCK]() - oldest)
    text = request.app[METRICS].render(
        {
            "wecom_bind_inbox_pending": stats.pending,
            "wecom_bind_inbox_leased": stats.leased,
            "wecom_bind_inbox_dead": stats.dead,
            "wecom_bind_inbox_oldest_pending_age_seconds": age,
        }
    )
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})
