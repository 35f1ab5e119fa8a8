"""/metrics: Prometheus text for the scraper holding the bearer token, 404 to everyone else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from callback_service.callbacks.inbox import INBOX
from callback_service.clients.wecom import WECOM_APP, WeComError
from callback_service.metrics import METRICS
from callback_service.web.app import create_app
from sandbox.wecom_state import Member
from tests.callback_service.conftest import NOW, Clock, Recorder
from tests.support.callbacks import encrypt_callback, event_xml
from tests.support.world import ServerFactory, running_world, world_settings

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
TOKEN = "scrape-token-0123456789"
SCRAPER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def scraped(aiohttp_client: ClientFactory, clock: Clock, recorder: Recorder, store_url: str) -> Client:
    settings = world_settings(store_url=store_url, metrics_token=TOKEN)
    return await aiohttp_client(
        create_app(settings, clock=clock, dispatcher=recorder.dispatcher(), run_workers=False)
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _post(client: Client, message: str, nonce: str = "1") -> None:
    signed = encrypt_callback(message, timestamp=NOW, nonce=nonce)
    response = await client.post("/wecom/callback", params=signed.query, data=signed.body)
    assert response.status == 200


async def test_without_a_token_setting_metrics_is_not_there(
    aiohttp_client: ClientFactory, store_url: str
) -> None:
    client = await aiohttp_client(create_app(world_settings(store_url=store_url), run_workers=False))
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        response = await client.get("/metrics", headers=headers)
        assert response.status == 404


async def test_only_the_bearer_token_gets_the_text(scraped: Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}):
        response = await scraped.get("/metrics", headers=headers)
        assert response.status == 404
        assert "wecom_bind" not in await response.text()
    response = await scraped.get("/metrics", headers=SCRAPER)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")


async def test_counters_histograms_and_the_inbox_gauges(scraped: Client, clock: Clock) -> None:
    message = event_xml("subscribe", "zhangsan", create_time=NOW)
    await _post(scraped, message)
    await _post(scraped, message)  # WeCom's retry: a duplicate
    await _post(scraped, event_xml("unsubscribe", "lisi", create_time=NOW))
    assert (await scraped.get("/help")).status == 200
    clock.now = NOW + 42
    found = samples(await (await scraped.get("/metrics", headers=SCRAPER)).text())
    assert found[("wecom_bind_inbox_duplicates_total", ())] == 1
    assert found[("wecom_bind_callback_ack_seconds_count", ())] == 3
    assert found[("wecom_bind_page_seconds_count", (("route", "/help"),))] == 1
    assert found[("wecom_bind_inbox_pending", ())] == 2
    assert found[("wecom_bind_inbox_oldest_pending_age_seconds", ())] == 42

    assert await scraped.app[INBOX].drain() == 2
    found = samples(await (await scraped.get("/metrics", headers=SCRAPER)).text())
    assert found[("wecom_bind_handler_seconds_count", (("event", "subscribe"),))] == 1
    assert found[("wecom_bind_handler_seconds_count", (("event", "unsubscribe"),))] == 1
    assert found[("wecom_bind_inbox_handled_total", (("kind", "subscribe"),))] == 1
    assert found[("wecom_bind_inbox_pending", ())] == 0
    assert found[("wecom_bind_inbox_oldest_pending_age_seconds", ())] == 0
    # The page histogram counts the scrapes too, under their route; the callback is not a page.
    assert ("wecom_bind_page_seconds_count", (("route", "/wecom/callback"),)) not in found


async def test_wecom_calls_are_timed_by_endpoint_and_errcode(
    aiohttp_server: ServerFactory, store_url: str
) -> None:
    async with running_world(
        aiohttp_server, store_url=store_url,
        members=[Member(userid="2021001", name="张三", department=[1], mobile="13800000001")],
    ) as world:
        app = world.service.app
        # The app's secret reads members (today's contacts-sync assistant may not: 48009).
        await app[WECOM_APP].user_get("2021001")
        with pytest.raises(WeComError):
            await app[WECOM_APP].user_get("nobody")
        found = samples(app[METRICS].render())
    calls = {
        labels: value for (name, labels), value in found.items() if name == "wecom_bind_wecom_api_seconds_count"
    }
    assert calls[(("endpoint", "gettoken"), ("errcode", "0"))] == 1
    assert calls[(("endpoint", "user/get"), ("errcode", "0"))] == 1
    assert sum(value for labels, value in calls.items()
               if ("endpoint", "user/get") in labels and ("errcode", "0") not in labels) == 1
