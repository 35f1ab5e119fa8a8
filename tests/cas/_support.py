"""Seeded accounts, a settable clock and login steps shared by the CAS tests."""

from __future__ import annotations

from typing import Final

import aiohttp
from yarl import URL

from sandbox.cas import CasUser

STUDENT: Final = CasUser(
    member_id="2021001",
    password="correct-horse",
    name="张三",
    attributes={
        "mobile": "13800138000",
        "department": "电子电气工程学院",
        "memberOf": ("student", "class-2021-01"),
    },
)
# A name that XML and HTML must both escape.
AWKWARD: Final = CasUser(member_id="2021002", password="另一个密码", name='李四 <b>&"x"', attributes={})
USERS: Final = {user.member_id: user for user in (STUDENT, AWKWARD)}
# A service URL with its own query, escapes and reserved characters, which must come back exactly.
SERVICE: Final = "https://bind.example.edu/cas/callback?next=%2Fbind%3Fstep%3D3&lang=zh-CN"
TICKET_TTL: Final = 10.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


async def post_login(
    http: aiohttp.ClientSession,
    login_url: URL,
    *,
    username: str = STUDENT.member_id,
    password: str = STUDENT.password,
    service: str | None = SERVICE,
) -> aiohttp.ClientResponse:
    """Submit the login form as a browser would, without following the redirect."""
    form = {"username": username, "password": password}
    if service is not None:
        form["service"] = service
    async with http.post(login_url, data=form, allow_redirects=False) as response:
        await response.read()
        return response


async def login_for_ticket(http: aiohttp.ClientSession, login_url: URL, *, service: str = SERVICE) -> str:
    """Log the seeded student in for service and return the service ticket CAS handed back."""
    response = await post_login(http, login_url, service=service)
    assert response.status == 302, response.status
    return ticket_of(response.headers["Location"], service)


def ticket_of(location: str, service: str) -> str:
    """The ticket of a redirect to service, checking that the service URL came back intact."""
    base, _, fragment = service.partition("#")
    joiner = "&" if "?" in base else "?"
    prefix = f"{base}{joiner}ticket="
    assert location.startswith(prefix), location
    ticket = location[len(prefix) :]
    if fragment:
        assert ticket.endswith("#" + fragment), location
        ticket = ticket[: -len(fragment) - 1]
    return ticket
