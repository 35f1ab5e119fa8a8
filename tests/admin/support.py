"""An administrator in the pages' world: the console's own CAS login, and its forms."""

from __future__ import annotations

import html
import re
from typing import Final

import aiohttp
from yarl import URL

from tests.cas._support import post_login, ticket_of
from tests.pages.support import CAS_USERS, PagesEnv

ADMIN: Final = "2021003"
"""The administrator of these tests: a CAS account of the pages' world (王五), listed in WECOM_BIND_ADMINS."""
ADMIN_COOKIE: Final = "wecom_bind_admin"


async def admin_login(env: PagesEnv, member_id: str = ADMIN) -> aiohttp.ClientResponse:
    """Walk /admin → CAS → /admin/cas as a browser would; return the service's answer to the ticket."""
    start = await env.client.get("/admin", allow_redirects=False)
    assert start.status == 302, start.status
    service = env.settings.public_base_url + "/admin/cas"
    assert start.headers["Location"].startswith(env.settings.cas_base_url + "/login?")
    response = await post_login(
        env.http,
        env.cas.make_url("/login"),
        username=member_id,
        password=CAS_USERS[member_id].password,
        service=service,
    )
    assert response.status == 302, response.status
    ticket = ticket_of(response.headers["Location"], service)
    answer = await env.client.get("/admin/cas", params={"ticket": ticket}, allow_redirects=False)
    await answer.read()
    return answer


def admin_cookie(env: PagesEnv) -> str | None:
    """The console's session cookie in the test browser's jar, if any."""
    for morsel in env.client.session.cookie_jar.filter_cookies(
        URL(str(env.client.make_url("/admin")))
    ).values():
        if morsel.key == ADMIN_COOKIE:
            return morsel.value
    return None


def csrf_of(page: str) -> str:
    """The CSRF token of a console page's forms."""
    found = re.search(r'name="csrf" value="([^"]*)"', page)
    assert found is not None, "no CSRF token in the page"
    return html.unescape(found.group(1))


def count_of(page: str, name: str) -> int:
    """A number of the overview (data-count=name)."""
    found = re.search(rf'data-count="{name}">(\d+)<', page)
    assert found is not None, f"no count {name} on the page"
    return int(found.group(1))
