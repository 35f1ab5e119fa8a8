"""/ready: both secrets probed; the public answer is ready or not, the checks and remedies go to the
bearer of the metrics token only."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from callback_service.web.app import create_app
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from tests.support.world import ServerFactory, wecom_sandbox, world_settings

BEARER = "the-monitoring-bearer-0123456789abcdef"


async def _ready(aiohttp_server: ServerFactory, store_url: str, **overrides: Any) -> list[tuple[int, Any]]:
    wecom_app = wecom_sandbox(callback_url="http://127.0.0.1:9/wecom/callback", members=[])
    wecom_server = await aiohttp_server(wecom_app)
    settings = world_settings(
        wecom_api_base=str(wecom_server.make_url("")).rstrip("/"),
        store_url=store_url,
        metrics_token=BEARER,
        **overrides,
    )
    service = await aiohttp_server(create_app(settings, run_workers=False))
    answers = []
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Bearer {BEARER}"}):
            async with http.get(str(service.make_url("/ready")), headers=headers) as response:
                answers.append((response.status, await response.json()))
    assert wecom_app[WECOM_SANDBOX_STATE].calls.count("gettoken") <= 2
    return answers


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_wrong_contacts_secret_makes_the_service_unready(
    aiohttp_server: ServerFactory, store_url: str
) -> None:
    public, wrong_bearer, bearer = await _ready(aiohttp_server, store_url, contacts_secret="wrong-contacts-secret")
    assert public == wrong_bearer == (503, {"status": "unavailable"})
    status, body = bearer
    assert status == 503
    assert body["store"] == "up"
    assert body["wecom"].startswith("40001: the secret is wrong")
    assert "WECOM_BIND_CONTACTS_SECRET" in body["wecom"]
    assert "wrong-contacts-secret" not in str(bearer)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_the_public_answer_is_ready_or_not_and_the_bearer_sees_the_checks(
    aiohttp_server: ServerFactory, store_url: str
) -> None:
    public, wrong_bearer, bearer = await _ready(aiohttp_server, store_url)
    assert public == wrong_bearer == (200, {"status": "ready"})
    assert bearer == (200, {"status": "ready", "store": "up", "wecom": "up"})
    public, _, bearer = await _ready(aiohttp_server, store_url, app_secret="wrong-app-secret")
    assert public == (503, {"status": "unavailable"})
    assert bearer[1]["wecom"].startswith("40001: ")
