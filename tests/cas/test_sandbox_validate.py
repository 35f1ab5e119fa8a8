"""The emulator's validation XML, read raw and by python-cas, an independent CAS client."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import cas
import pytest
from aiohttp.test_utils import TestServer
from defusedxml.ElementTree import fromstring
from yarl import URL

from callback_service.clients.cas import CAS_NAMESPACE
from tests.cas._support import AWKWARD, SERVICE, STUDENT, TICKET_TTL, FakeClock, login_for_ticket

NS = {"cas": CAS_NAMESPACE}


async def _validate_raw(
    http: aiohttp.ClientSession, server: TestServer, path: str, params: dict[str, str]
) -> Any:
    async with http.get(server.make_url(path), params=params) as response:
        assert response.status == 200
        assert response.content_type == "application/xml"
        assert response.charset == "utf-8"
        body = await response.read()
    assert body.startswith(f'<cas:serviceResponse xmlns:cas="{CAS_NAMESPACE}">'.encode())
    return fromstring(body, forbid_dtd=True)


def _failure_code(root: Any) -> str:
    failures = root.findall("cas:authenticationFailure", NS)
    assert len(failures) == 1
    assert len(root) == 1
    assert failures[0].text.strip()
    return str(failures[0].get("code"))


@pytest.mark.parametrize("path", ["/p3/serviceValidate", "/serviceValidate"])
async def test_success_document_follows_the_schema(
    http: aiohttp.ClientSession, cas_server: TestServer, login_url: URL, path: str
) -> None:
    ticket = await login_for_ticket(http, login_url)
    root = await _validate_raw(http, cas_server, path, {"ticket": ticket, "service": SERVICE})
    assert root.tag == f"{{{CAS_NAMESPACE}}}serviceResponse"
    (success,) = root
    assert success.tag == f"{{{CAS_NAMESPACE}}}authenticationSuccess"
    user, attributes = success
    assert user.tag == f"{{{CAS_NAMESPACE}}}user"
    assert user.text == STUDENT.member_id
    released = [(child.tag.rpartition("}")[2], child.text) for child in attributes]
    assert released == [
        ("authenticationDate", "2023-11-14T22:13:20Z"),
        ("longTermAuthenticationRequestTokenUsed", "false"),
        ("isFromNewLogin", "true"),
        ("name", "张三"),
        ("mobile", "13800138000"),
        ("department", "电子电气工程学院"),
        ("memberOf", "student"),
        ("memberOf", "class-2021-01"),
    ]


async def test_a_single_sign_on_ticket_is_not_from_a_new_login(
    http: aiohttp.ClientSession, cas_server: TestServer, login_url: URL
) -> None:
    await login_for_ticket(http, login_url)
    async with http.get(login_url, params={"service": SERVICE}, allow_redirects=False) as again:
        location = again.headers["Location"]
    ticket = location.rpartition("ticket=")[2]
    params = {"ticket": ticket, "service": SERVICE}
    root = await _validate_raw(http, cas_server, "/p3/serviceValidate", params)
    assert root.find(".//cas:isFromNewLogin", NS).text == "false"

    async with http.get(login_url, params={"service": SERVICE}, allow_redirects=False) as third:
        ticket = third.headers["Location"].rpartition("ticket=")[2]
    renewed = {"ticket": ticket, "service": SERVICE, "renew": "true"}
    root = await _validate_raw(http, cas_server, "/p3/serviceValidate", renewed)
    assert _failure_code(root) == "INVALID_TICKET"


async def test_failure_codes(
    http: aiohttp.ClientSession, cas_server: TestServer, login_url: URL, clock: FakeClock
) -> None:
    path = "/p3/serviceValidate"
    ticket = await login_for_ticket(http, login_url)

    for params in ({"ticket": ticket}, {"service": SERVICE}, {"ticket": "", "service": SERVICE}):
        assert _failure_code(await _validate_raw(http, cas_server, path, params)) == "INVALID_REQUEST"
    as_json = {"ticket": ticket, "service": SERVICE, "format": "JSON"}
    assert _failure_code(await _validate_raw(http, cas_server, path, as_json)) == "INVALID_REQUEST"

    # INVALID_REQUEST above left the ticket alone; a wrong service consumes it.
    wrong = {"ticket": ticket, "service": SERVICE + "x"}
    assert _failure_code(await _validate_raw(http, cas_server, path, wrong)) == "INVALID_SERVICE"
    right = {"ticket": ticket, "service": SERVICE}
    assert _failure_code(await _validate_raw(http, cas_server, path, right)) == "INVALID_TICKET"

    unknown = {"ticket": "ST-<&>" + "x" * 1000, "service": SERVICE}
    root = await _validate_raw(http, cas_server, path, unknown)
    assert _failure_code(root) == "INVALID_TICKET"
    assert "ST-<&>" in root[0].text

    expiring = await login_for_ticket(http, login_url)
    clock.advance(TICKET_TTL)
    expired = {"ticket": expiring, "service": SERVICE}
    root = await _validate_raw(http, cas_server, path, expired)
    assert _failure_code(root) == "INVALID_TICKET"
    assert "expired" in root[0].text

    proxied = await login_for_ticket(http, login_url)
    pgt = {"ticket": proxied, "service": SERVICE, "pgtUrl": "https://bind.example.edu/pgt"}
    code = _failure_code(await _validate_raw(http, cas_server, path, pgt))
    assert code == "UNAUTHORIZED_SERVICE_PROXY"


async def test_python_cas_version_3_reads_user_and_attributes(
    http: aiohttp.ClientSession, cas_server: TestServer, login_url: URL
) -> None:
    client = cas.CASClient(version=3, service_url=SERVICE, server_url=f"{cas_server.make_url('/')}")
    try:
        # python-cas's own login URL is what the browser opens.
        async with http.get(client.get_login_url()) as form:
            assert form.status == 200
            assert 'name="service"' in await form.text()
        ticket = await login_for_ticket(http, login_url)
        user, attributes, pgtiou = await asyncio.to_thread(client.verify_ticket, ticket)
        assert user == STUDENT.member_id
        assert pgtiou is None
        assert attributes["mobile"] == "13800138000"
        assert attributes["department"] == "电子电气工程学院"
        assert attributes["memberOf"] == ["student", "class-2021-01"]
        assert attributes["isFromNewLogin"] == "true"

        # Used once: python-cas sees a failure the second time.
        again = await asyncio.to_thread(client.verify_ticket, ticket)
        assert again == (None, {}, None)
    finally:
        client.session.close()


async def test_python_cas_version_2_reads_the_user(
    http: aiohttp.ClientSession, cas_server: TestServer, login_url: URL
) -> None:
    client = cas.CASClient(version=2, service_url=SERVICE, server_url=f"{cas_server.make_url('/')}")
    try:
        ticket = await login_for_ticket(http, login_url)
        user, attributes, pgtiou = await asyncio.to_thread(client.verify_ticket, ticket)
        assert user == STUDENT.member_id
        assert pgtiou is None
        assert attributes["name"] == "张三"

        other = cas.CASClient(version=2, service_url=SERVICE + "#other", server_url=client.server_url)
        ticket = await login_for_ticket(http, login_url)
        assert await asyncio.to_thread(other.verify_ticket, ticket) == (None, None, None)
        other.session.close()
    finally:
        client.session.close()


async def test_python_cas_reads_escaped_values_back(
    http: aiohttp.ClientSession, cas_server: TestServer, login_url: URL
) -> None:
    form = {"username": AWKWARD.member_id, "password": AWKWARD.password, "service": SERVICE}
    async with http.post(login_url, data=form, allow_redirects=False) as response:
        ticket = response.headers["Location"].rpartition("ticket=")[2]
    client = cas.CASClient(version=3, service_url=SERVICE, server_url=f"{cas_server.make_url('/')}")
    try:
        user, attributes, _ = await asyncio.to_thread(client.verify_ticket, ticket)
    finally:
        client.session.close()
    assert user == AWKWARD.member_id
    assert attributes["name"] == AWKWARD.name
