"""Arbitrary bytes at every route of the service, over real loopback HTTP: never a 5xx, never a
change in the store.

Each example writes one request byte for byte (tests/support/rawhttp.py), so that cookies, query
strings, form fields, paths and headers can hold what aiohttp's client would refuse to send. The
routes come from the app's router, so a route added later is fuzzed too.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callback_service.web.app import create_app
from callback_service.web.pages.session import COOKIE
from callback_service.web.pages.views import LOGIN_COOKIE
from tests.pages.conftest import MakeEnv
from tests.pages.support import PagesEnv
from tests.support.rawhttp import raw_request
from tests.support.world import CONTACTS_AES_KEY, CONTACTS_TOKEN, world_settings

METRICS_TOKEN: Final = "fuzz-metrics-token-0123456789abcdef"
# Every route on: both callback endpoints, /metrics for its bearer, the admission page.
SETTINGS: Final[dict[str, Any]] = {
    "metrics_token": METRICS_TOKEN,
    "contacts_token": CONTACTS_TOKEN,
    "contacts_encoding_aes_key": CONTACTS_AES_KEY,
    "second_verification": True,
}
TABLES: Final = ("kv", "bindings", "phones", "audit", "inbox", "inbox_dedup", "directory")
NAMES: Final = (
    b"ticket", b"state", b"code", b"msg_signature", b"timestamp", b"nonce", b"echostr",
    b"csrf", b"phone", b"form_id", b"logoutRequest", b"service",
)
HEADER_NAMES: Final = (
    b"X-Forwarded-For", b"Authorization", b"X-Request-Id", b"Content-Type", b"Accept-Language",
    b"Referer", b"User-Agent", b"Origin", b"Accept",
)
COOKIE_NAMES: Final = (COOKIE.encode(), LOGIN_COOKIE.encode(), b"TGC", b"x")
CONTENT_TYPES: Final = (
    b"application/x-www-form-urlencoded",
    b"application/x-www-form-urlencoded; charset=gbk",
    b"multipart/form-data; boundary=b",
    b"application/xml",
    b"text/plain; charset=\xe9",
)



def _printable(raw: bytes) -> bytes:
    return bytes(b for b in raw if b >= 0x20 and b != 0x7F)


# Header values: any byte the parser lets through to the app (no control bytes); one header of an
# example in eight may also hold control bytes (not CR, LF or NUL, which would end the line).
header_bytes = st.one_of(
    st.binary(max_size=60).map(_printable),
    st.sampled_from([b"", b"\xe9", b"\xe9\xe9.a", b"Bearer \xe9", b"13800000001", b"1" * 400, b"%ff"]),
)
hostile_bytes = st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b""))
header_names = st.from_regex(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,16}", fullmatch=True)
anything = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"", b"\xe9\xe9.a", b"%", b"%zz", b"%ff%fe", b"13800000001", b"1" * 400, b"\xff" * 3]),
)


def escaped(raw: bytes) -> bytes:
    return quote_from_bytes(raw, safe="").encode()


def in_target(raw: bytes, escape: bool) -> bytes:
    # Raw bytes are what a broken client sends; a space or a control byte would end the target.
    return escaped(raw) if escape else bytes(b for b in raw if b > 0x20 and b != 0x7F)


@dataclass(frozen=True)
class Route:
    method: bytes
    path: str


def _routes() -> list[Route]:
    # The factory is pure: the app it builds lists its routes without starting.
    found = []
    for route in create_app(world_settings(**SETTINGS)).router.routes():
        if route.method in {"GET", "POST"} and route.resource is not None:
            found.append(Route(route.method.encode(), route.resource.canonical))
    return found


ROUTES: Final = _routes()


def counts(store_file: Path) -> dict[str, int]:
    with sqlite3.connect(store_file) as db:
        # The table names are this module's constants.
        return {table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]) for table in TABLES}  # noqa: S608


@pytest.fixture
async def fuzz_env(make_env: MakeEnv, tmp_path: Path) -> PagesEnv:
    env = await make_env(**SETTINGS)
    # A logged-in student, whose cookie the examples may carry; WeCom's tokens fetched and cached.
    await env.login("2021001")
    ready = await env.client.get("/ready")
    assert ready.status == 200, await ready.text()
    await env.client.get("/wecom/admit", params={"code": "warm-up-code"})
    return env


@st.composite
def requests(draw: st.DrawFn, route: Route, session: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    method = draw(st.sampled_from([route.method, route.method, b"GET", b"POST", b"PUT", b"\xe9"]))
    escape = draw(st.booleans())
    path = route.path.encode()
    if "{" in route.path:
        path = re.sub(rb"\{[^}]*\}", lambda _: in_target(draw(anything), escape), path)
    if draw(st.integers(0, 4)) == 0:
        path += b"/" + in_target(draw(anything), escape)
    pairs = draw(st.lists(st.tuples(st.sampled_from(NAMES) | st.binary(max_size=8), anything), max_size=4))
    query = b"&".join(in_target(name, escape) + b"=" + in_target(value, escape) for name, value in pairs)
    if draw(st.booleans()):
        query = in_target(draw(anything), escape)
    target = path + (b"?" + query if query or draw(st.booleans()) else b"")
    cookie_values = header_bytes | anything.map(_printable)
    cookies = [name + b"=" + draw(cookie_values) for name in draw(st.lists(st.sampled_from(COOKIE_NAMES), max_size=3))]
    if draw(st.booleans()):
        cookies.append(COOKIE.encode() + b"=" + session)
    headers = [(b"Cookie", b"; ".join(cookies))] if cookies else []
    for name in HEADER_NAMES:
        if draw(st.integers(0, 3)) == 0:
            headers.append((name, draw(header_bytes | anything.map(_printable))))
    for name in draw(st.lists(header_names, max_size=2)):
        headers.append((name, draw(header_bytes)))
    if draw(st.integers(0, 7)) == 0:
        headers.append((draw(st.sampled_from(HEADER_NAMES) | header_names), draw(hostile_bytes)))
    if draw(st.booleans()):
        headers.append((b"Authorization", b"Bearer " + METRICS_TOKEN.encode()))
    body = b""
    if method == b"POST":
        headers.append((b"Content-Type", draw(st.sampled_from(CONTENT_TYPES))))
        fields = draw(st.lists(st.tuples(st.sampled_from(NAMES), anything), max_size=4))
        body = b"&".join(name + b"=" + (escaped(value) if draw(st.booleans()) else value) for name, value in fields)
    return method, target, headers, body


@pytest.mark.parametrize("route", ROUTES, ids=[f"{r.method.decode()} {r.path}" for r in ROUTES])
# Derandomized: `make test` runs the same examples each time, so that a failure is not a fluke of a run.
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
async def test_arbitrary_bytes_never_answer_5xx_nor_change_the_store(
    fuzz_env: PagesEnv, route: Route, data: st.DataObject
) -> None:
    env = fuzz_env
    store_file = Path(env.settings.store_url.get_secret_value().removeprefix("sqlite:///"))
    session = next(m.value for m in env.client.session.cookie_jar if m.key == COOKIE).encode()
    before = counts(store_file)
    method, target, headers, body = data.draw(requests(route, session))
    answer = await raw_request(env.client.port or 0, method, target, headers=headers, body=body)
    assert answer.status < 500, (answer.head, answer.body[:300])
    assert counts(store_file) == before


def test_the_fuzz_reaches_every_route() -> None:
    assert {route.path for route in ROUTES} >= {
        "/health", "/ready", "/metrics", "/wecom/callback", "/wecom/contacts-callback", "/wecom/admit",
        "/bind", "/bind/cas", "/bind/phone", "/bind/result/{form}", "/me", "/logout", "/help",
    }
