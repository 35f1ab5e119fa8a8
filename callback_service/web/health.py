"""Liveness, readiness and metrics for monitoring."""

from __future__ import annotations

import hmac
from importlib import metadata
from typing import Final

from aiohttp import web

from callback_service.clients.wecom import WECOM_READY
from callback_service.compose import CLOCK, SETTINGS
from callback_service.metrics import CONTENT_TYPE, METRICS
from callback_service.store import HEALTH_STORE
from handlers.usecases.contracts import StoreNotDurable, StoreUnavailable

HEALTH_PATH: Final = "/health"
READY_PATH: Final = "/ready"
METRICS_PATH: Final = "/metrics"
MONITORING_PATHS: Final = (HEALTH_PATH, READY_PATH, METRICS_PATH)
"""What monitoring calls: answers for machines."""


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
    """Answer 200 when the store answers and WeCom gives a token for each secret, 503 otherwise.

    To the bearer of the metrics token, each check is named, and a configuration error shows as
    "wecom: <errcode>: <remedy>"; while WeCom refuses, it is asked again at most once a minute.
    """
    checks = {"store": "up", "wecom": "up"}
    try:
        await request.app[HEALTH_STORE].ping()
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
    body = {"status": "ready" if ok else "unavailable"}
    # What is wrong, and its remedy, only to the operator's monitoring (the metrics bearer): the
    # public answer says ready or not, and nothing of the setup behind it.
    if _may_scrape(request):
        body |= checks
    return web.json_response(body, status=200 if ok else 503)


def _may_scrape(request: web.Request) -> bool:
    token = request.app[SETTINGS].metrics_token
    if token is None:
        return False
    # A header's bytes that are not UTF-8 come as surrogates: encoded back to those bytes, not a 500.
    given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    expected = "Bearer " + token.get_secret_value()
    return hmac.compare_digest(given, expected.encode("utf-8"))


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text for a scraper with the bearer token; 404 to anyone else, or without a token set."""
    if not _may_scrape(request):
        raise web.HTTPNotFound()
    store = request.app[HEALTH_STORE]
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
