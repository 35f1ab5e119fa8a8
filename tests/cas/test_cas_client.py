"""Our CAS client against the emulator, against misbehaving servers, and against hand-written answers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

import aiohttp
import cas
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from yarl import URL

from callback_service.clients.cas import (
    CasAuthenticationFailure,
    CasClient,
    CasInvalidRequest,
    CasInvalidService,
    CasInvalidTicket,
    CasPrincipal,
    CasUnreachable,
    parse_service_response,
)
from sandbox.cas import create_cas_sandbox
from tests.cas._support import SERVICE, STUDENT, TICKET_TTL, USERS, FakeClock, login_for_ticket

ClientFactory = Callable[..., CasClient]


@pytest.fixture
def make_client(http: aiohttp.ClientSession, cas_base: str) -> ClientFactory:
    """Build a CasClient against the emulator, on the shared session."""

    def make(*, service_url: str = SERVICE, validate_path: str = "/p3/serviceValidate") -> CasClient:
        return CasClient(
            session=http, cas_base_url=cas_base, service_url=service_url, validate_path=validate_path
        )

    return make


async def test_validate_returns_the_student_and_attributes(
    http: aiohttp.ClientSession, login_url: URL, make_client: ClientFactory
) -> None:
    ticket = await login_for_ticket(http, login_url)
    principal = await make_client().validate(ticket)
    assert principal.user == STUDENT.member_id
    assert principal.attribute("mobile") == "13800138000"
    assert principal.attribute("department") == "电子电气工程学院"
    assert principal.attribute("name") == "张三"
    assert principal.attributes["memberOf"] == ("student", "class-2021-01")
    assert principal.attribute("memberOf") == "student"
    assert principal.attribute("email") is None


async def test_validate_on_the_cas_2_path(
    http: aiohttp.ClientSession, login_url: URL, make_client: ClientFactory
) -> None:
    ticket = await login_for_ticket(http, login_url)
    principal = await make_client(validate_path="serviceValidate").validate(ticket)
    assert principal.user == STUDENT.member_id


async def test_a_ticket_works_once(
    http: aiohttp.ClientSession, login_url: URL, make_client: ClientFactory
) -> None:
    client = make_client()
    ticket = await login_for_ticket(http, login_url)
    await client.validate(ticket)
    with pytest.raises(CasInvalidTicket) as raised:
        await client.validate(ticket)
    assert raised.value.code == "INVALID_TICKET"
    assert ticket in raised.value.message


async def test_a_ticket_for_another_service_fails_and_is_spent(
    http: aiohttp.ClientSession, login_url: URL, make_client: ClientFactory
) -> None:
    ticket = await login_for_ticket(http, login_url)
    with pytest.raises(CasInvalidService) as raised:
        await make_client(service_url="https://evil.example.com/cb").validate(ticket)
    assert raised.value.code == "INVALID_SERVICE"
    with pytest.raises(CasInvalidTicket):
        await make_client().validate(ticket)


async def test_a_missing_ticket_is_an_invalid_request(make_client: ClientFactory) -> None:
    with pytest.raises(CasInvalidRequest) as raised:
        await make_client().validate("")
    assert raised.value.code == "INVALID_REQUEST"


async def test_an_expired_ticket_fails(
    http: aiohttp.ClientSession, login_url: URL, make_client: ClientFactory, clock: FakeClock
) -> None:
    client = make_client()
    fresh = await login_for_ticket(http, login_url)
    clock.advance(TICKET_TTL - 0.001)
    assert (await client.validate(fresh)).user == STUDENT.member_id
    stale = await login_for_ticket(http, login_url)
    clock.advance(TICKET_TTL)
    with pytest.raises(CasInvalidTicket, match="expired"):
        await client.validate(stale)


async def test_a_closed_port_is_unreachable(http: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = CasClient(session=http, cas_base_url=f"http://127.0.0.1:{port}", service_url=SERVICE)
    with pytest.raises(CasUnreachable):
        await client.validate("ST-1")


@pytest.fixture
async def stalled_server(aiohttp_server: AiohttpServer) -> AsyncIterator[TestServer]:
    """A CAS that accepts the request and does not answer until the test ends."""
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/p3/serviceValidate", stall)
    server = await aiohttp_server(app)
    yield server
    release.set()


async def test_a_slow_server_times_out(http: aiohttp.ClientSession, stalled_server: TestServer) -> None:
    client = CasClient(
        session=http,
        cas_base_url=str(stalled_server.make_url("")),
        service_url=SERVICE,
        timeout=0.2,
    )
    # The server answers only once the test ends: without its own timeout the client would wait
    # until this guard's, and fail with TimeoutError rather than CasUnreachable.
    async with asyncio.timeout(30):
        with pytest.raises(CasUnreachable):
            await client.validate("ST-1")


class ScriptedCas:
    """A tiny server that answers validation with whatever the test sets, and records the query."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.raw_paths: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        """Answer a validation request from the script."""
        self.raw_paths.append(request.raw_path)
        return web.Response(status=self.status, body=self.body, content_type="application/xml")


@pytest.fixture
async def scripted(aiohttp_server: AiohttpServer) -> tuple[ScriptedCas, str]:
    """A scripted CAS and its base URL."""
    script = ScriptedCas()
    app = web.Application()
    app.router.add_get("/{tail:.*}", script.handle)
    server = await aiohttp_server(app)
    return script, str(server.make_url("/cas"))


async def test_answers_that_are_not_cas_documents_are_unreachable(
    http: aiohttp.ClientSession, scripted: tuple[ScriptedCas, str]
) -> None:
    script, base = scripted
    client = CasClient(session=http, cas_base_url=base, service_url=SERVICE)
    for status, body in (
        (500, SUCCESS),
        (302, SUCCESS),
        (200, b"<html><body>Service unavailable</body></html>"),
        (200, b"yes\n2021001\n"),
        (200, b"x" * (300 * 1024)),
        (200, ENTITY),
    ):
        script.status, script.body = status, body
        with pytest.raises(CasUnreachable):
            await client.validate("ST-1")
    script.status, script.body = 200, SUCCESS
    assert (await client.validate("ST-1")).user == "2021001"


async def test_ticket_and_service_are_sent_url_encoded(
    http: aiohttp.ClientSession, scripted: tuple[ScriptedCas, str]
) -> None:
    script, base = scripted
    script.body = SUCCESS
    client = CasClient(session=http, cas_base_url=base + "/", service_url=SERVICE)
    await client.validate("ST-a&b=c")
    assert script.raw_paths == [
        "/cas/p3/serviceValidate?ticket=ST-a%26b%3Dc&service=" + quote(SERVICE, safe="")
    ]


async def test_the_service_query_round_trips_exactly(
    http: aiohttp.ClientSession, login_url: URL, make_client: ClientFactory
) -> None:
    service = "https://bind.example.edu/cb?a=1&b=%2F%3F%26&c=x+y&d=%E4%B8%AD"
    async with http.get(make_client(service_url=service).login_url(), allow_redirects=False) as form:
        assert form.status == 200
    ticket = await login_for_ticket(http, login_url, service=service)
    assert (await make_client(service_url=service).validate(ticket)).user == STUDENT.member_id


def test_login_and_logout_urls(http: aiohttp.ClientSession) -> None:
    client = CasClient(session=http, cas_base_url="https://cas.example.edu/cas/", service_url=SERVICE)
    encoded = quote(SERVICE, safe="")
    assert client.login_url() == f"https://cas.example.edu/cas/login?service={encoded}"
    assert client.logout_url() == "https://cas.example.edu/cas/logout"
    assert client.logout_url("https://bind.example.edu/") == (
        "https://cas.example.edu/cas/logout?service=https%3A%2F%2Fbind.example.edu%2F"
    )


async def test_the_emulator_mounted_under_a_prefix_works_end_to_end(
    aiohttp_server: AiohttpServer, http: aiohttp.ClientSession
) -> None:
    parent = web.Application()
    parent.add_subapp("/sandbox/cas", create_cas_sandbox(users=USERS))
    server = await aiohttp_server(parent)
    client = CasClient(session=http, cas_base_url=str(server.make_url("/sandbox/cas")), service_url=SERVICE)

    async with http.get(client.login_url()) as form:
        assert form.status == 200
        assert 'action="/sandbox/cas/login"' in await form.text()
    async with http.get(server.make_url("/login")) as root:
        assert root.status == 404

    form_data = {"username": STUDENT.member_id, "password": STUDENT.password, "service": SERVICE}
    async with http.post(
        server.make_url("/sandbox/cas/login"), data=form_data, allow_redirects=False
    ) as response:
        assert response.status == 302
        assert response.cookies["TGC"]["path"] == "/sandbox/cas"
        ticket = response.headers["Location"].rpartition("ticket=")[2]
    assert (await client.validate(ticket)).attribute("mobile") == "13800138000"

    # The cookie, scoped to the mount, brings a second ticket at once; python-cas validates it.
    async with http.get(client.login_url(), allow_redirects=False) as again:
        assert again.status == 302
        second = again.headers["Location"].rpartition("ticket=")[2]
    python_cas = cas.CASClient(
        version=3, service_url=SERVICE, server_url=str(server.make_url("/sandbox/cas/"))
    )
    try:
        user, _, _ = await asyncio.to_thread(python_cas.verify_ticket, second)
    finally:
        python_cas.session.close()
    assert user == STUDENT.member_id

    async with http.get(client.logout_url()) as logout:
        assert "已退出" in await logout.text()
    async with http.get(client.login_url(), allow_redirects=False) as after:
        assert after.status == 200


SUCCESS = b"""<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas">
  <cas:authenticationSuccess>
    <cas:user>2021001</cas:user>
  </cas:authenticationSuccess>
</cas:serviceResponse>"""

ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE cas:serviceResponse [<!ENTITY who "2021001">]>
<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas">
  <cas:authenticationSuccess><cas:user>&who;</cas:user></cas:authenticationSuccess>
</cas:serviceResponse>"""


def _document(inner: str) -> bytes:
    return (
        f'<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas">{inner}</cas:serviceResponse>'.encode()
    )


def test_a_bare_success_has_no_attributes() -> None:
    principal = parse_service_response(SUCCESS)
    assert principal == CasPrincipal(user="2021001", attributes={})
    assert principal.attribute("mobile") is None


def test_attributes_keep_every_value() -> None:
    principal = parse_service_response(
        _document(
            "<cas:authenticationSuccess><cas:user> 2021001 </cas:user><cas:attributes>"
            "<cas:mobile>13800138000</cas:mobile><cas:memberOf>a</cas:memberOf>"
            "<cas:memberOf>b</cas:memberOf><cas:empty/></cas:attributes>"
            "<cas:proxyGrantingTicket>PGTIOU-1</cas:proxyGrantingTicket>"
            "</cas:authenticationSuccess>"
        )
    )
    assert principal.user == "2021001"
    assert dict(principal.attributes) == {
        "mobile": ("13800138000",),
        "memberOf": ("a", "b"),
        "empty": ("",),
    }
    with pytest.raises(TypeError):
        principal.attributes["mobile"] = ("1",)  # type: ignore[index]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("INVALID_TICKET", CasInvalidTicket),
        ("INVALID_SERVICE", CasInvalidService),
        ("INVALID_REQUEST", CasInvalidRequest),
        ("INTERNAL_ERROR", CasAuthenticationFailure),
        ("", CasAuthenticationFailure),
    ],
)
def test_failures_carry_code_and_message(code: str, error: type[CasAuthenticationFailure]) -> None:
    body = _document(
        f'<cas:authenticationFailure code="{code}">\n   Ticket ST-1 &lt;gone&gt;\n'
        "</cas:authenticationFailure>"
    )
    with pytest.raises(error) as raised:
        parse_service_response(body)
    assert type(raised.value) is error
    assert raised.value.code == code
    assert raised.value.message == "Ticket ST-1 <gone>"


def test_a_document_holding_both_success_and_failure_is_a_failure() -> None:
    success = "<cas:authenticationSuccess><cas:user>2021001</cas:user></cas:authenticationSuccess>"
    failure = '<cas:authenticationFailure code="INVALID_TICKET">no</cas:authenticationFailure>'
    for inner in (
        success + failure,
        failure + success,
        success.replace("</cas:user>", "</cas:user>" + failure),
    ):
        with pytest.raises(CasInvalidTicket):
            parse_service_response(_document(inner))


@pytest.mark.parametrize(
    "body",
    [
        ENTITY,
        b'<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd"><x/>',
        b"<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>",
        b"<serviceResponse><authenticationSuccess><user>2021001</user></authenticationSuccess>"
        b"</serviceResponse>",
        b'<cas:serviceResponse xmlns:cas="urn:other"><cas:authenticationSuccess>'
        b"<cas:user>2021001</cas:user></cas:authenticationSuccess></cas:serviceResponse>",
        _document(""),
        _document("<cas:authenticationSuccess/>"),
        _document("<cas:authenticationSuccess><cas:user> </cas:user></cas:authenticationSuccess>"),
        _document(
            "<cas:authenticationSuccess><cas:user>a</cas:user><cas:user>b</cas:user>"
            "</cas:authenticationSuccess>"
        ),
        _document(
            "<cas:authenticationSuccess><cas:user>a</cas:user></cas:authenticationSuccess>"
            "<cas:authenticationSuccess><cas:user>b</cas:user></cas:authenticationSuccess>"
        ),
        _document("<cas:authenticationSuccess><x><cas:user>a</cas:user></x></cas:authenticationSuccess>"),
    ],
)
def test_doubtful_documents_are_refused(body: bytes) -> None:
    with pytest.raises(CasUnreachable):
        parse_service_response(body)
