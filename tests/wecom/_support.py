"""Constants and helpers shared by the WeCom tests."""

from __future__ import annotations

import re
from typing import Final

import aiohttp

CORP_ID: Final = "ww1436e0e65a779aee"
AGENT_ID: Final = 1000002
APP_SECRET: Final = "app-secret-for-tests-0123456789abcdef"
CONTACTS_SECRET: Final = "contacts-secret-for-tests-0123456789"
TOKEN: Final = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
AES_KEY: Final = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
_SMS_CODE: Final = re.compile(r"data-sms-code>(\d{6})<")
_ERROR: Final = re.compile(r'data-error="([A-Z_]+)"')


def browser() -> aiohttp.ClientSession:
    """A browser-like session whose cookie jar accepts cookies from 127.0.0.1."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def sms_code(html: str) -> str:
    """The code the emulator's 模拟短信 box shows."""
    found = _SMS_CODE.search(html)
    assert found is not None, html
    return found.group(1)


def error_code(html: str) -> str | None:
    """The guide error code a page shows, if any."""
    found = _ERROR.search(html)
    return found.group(1) if found else None


async def new_wechat(http: aiohttp.ClientSession, base: str, name: str, phone: str) -> None:
    """Create a simulated WeChat through 模拟微信 and make it the browser's."""
    async with http.post(base + "/wechat", data={"name": name, "phone": phone}, allow_redirects=False) as r:
        assert r.status == 303, await r.text()


async def post_page(
    http: aiohttp.ClientSession, url: str, data: dict[str, str] | None = None
) -> tuple[int, str]:
    """Submit a form as a browser does (following the redirect) and return the final status and page."""
    async with http.post(url, data=data or {}) as response:
        return response.status, await response.text()


async def oauth_code(http: aiohttp.ClientSession, base: str, corp_id: str) -> str:
    """Open the OAuth authorize page as the current simulated WeChat and return the code it issues."""
    params = {
        "appid": corp_id,
        "redirect_uri": "https://bind.example.edu/oauth?x=1",
        "response_type": "code",
        "scope": "snsapi_base",
        "state": "abc123",
    }
    async with http.get(base + "/connect/oauth2/authorize", params=params, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        location = r.headers["Location"]
    assert location.startswith("https://bind.example.edu/oauth?x=1&code=")
    assert location.endswith("&state=abc123")
    return location.split("code=", 1)[1].split("&", 1)[0]
