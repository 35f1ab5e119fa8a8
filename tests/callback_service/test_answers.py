"""One table answers every failure: the pages, the middleware and the callback endpoint agree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from callback_service.answers import INTERNAL, UNAVAILABLE, failure, http_error
from callback_service.clients.cas import CasUnreachable
from callback_service.web.middlewares import service_middleware
from handlers.core.wecom_errors import InvalidSecret, WeComUnavailable
from handlers.usecases.contracts import StoreUnavailable

Client = TestClient[web.Request, web.Application]


@pytest.mark.parametrize(
    "exc",
    [StoreUnavailable("down"), WeComUnavailable(-1, "busy"), CasUnreachable("down"), InvalidSecret(40001, "x")],
)
def test_an_outage_or_a_refused_configuration_is_unavailable(exc: Exception) -> None:
    assert failure(exc) is UNAVAILABLE


def test_a_bug_is_internal_and_an_unknown_status_falls_to_its_class() -> None:
    assert failure(KeyError("x")) is INTERNAL
    assert http_error(599) is UNAVAILABLE
    assert http_error(418).status == 400


async def test_the_middleware_answers_a_wecom_outage_as_503_without_details(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> None:
    async def view(request: web.Request) -> web.Response:
        raise WeComUnavailable(-1, "system busy at 10.0.0.7")

    app = web.Application(middlewares=[service_middleware])
    app.router.add_get("/bind/qr.png", view)
    client = await aiohttp_client(app)
    response = await client.get("/bind/qr.png")
    assert response.status == 503
    assert await response.text() == UNAVAILABLE.plain
