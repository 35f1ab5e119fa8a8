"""The login against a real CAS server: django-cas-server (from PyPI), run by Django on loopback with
a SQLite database in the test's directory. A student logs in through its own login form; the service
validates with CAS 2.0 (/serviceValidate) and 3.0 (/p3/serviceValidate); the login's state in the
service URL binds the ticket to the browser that started it; and the server's single logout reaches
the service and ends the session.
"""

from __future__ import annotations

import html
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
import pytest
from yarl import URL

from callback_service.clients.cas import CAS, CasAuthenticationFailure
from tests.pages.conftest import MakeEnv
from tests.pages.support import PagesEnv
from tests.support.processes import free_port

try:
    import cas_server  # noqa: F401  (only its presence: the server runs in its own process)
except ImportError:
    if os.environ.get("CI") == "true":
        pytest.fail("django-cas-server is not installed (a test extra, locked in requirements/test.txt)")
    pytest.skip("django-cas-server is not installed (a test extra)", allow_module_level=True)

pytestmark = pytest.mark.slow

REPOSITORY: Final = Path(__file__).resolve().parents[2]
STUDENT: Final = "2021009"  # outside the directory: the page shows the name CAS released
NAME: Final = "孙七（真 CAS）"
PASSWORD: Final = "a-real-cas-password"
# Bounded waits for the server's start and its commands.
START_TIMEOUT: Final = 60.0


@dataclass
class RealCas:
    """A django-cas-server on a loopback port."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path


def _django_env(database: Path) -> dict[str, str]:
    return os.environ | {
        "DJANGO_SETTINGS_MODULE": "tests.cas.django_cas.settings",
        "WECOM_BIND_TEST_CAS_DB": str(database),
        "PYTHONPATH": str(REPOSITORY),
    }


@pytest.fixture
def service_port() -> int:
    """The port the service will listen on: CAS's single logout posts to its public URL."""
    return free_port()


@pytest.fixture(scope="module")
def real_cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCas]:
    """Migrate, seed and start django-cas-server, once for this module's tests."""
    tmp_path = tmp_path_factory.mktemp("real-cas")
    env = _django_env(tmp_path / "cas.sqlite3")
    # The service on any loopback port, and only with a login's state in its service URL.
    pattern = r"^http://127\.0\.0\.1:[0-9]+/bind/cas\?state=[A-Za-z0-9_-]+$"
    subprocess.run(
        [sys.executable, "-m", "tests.cas.django_cas.seed", STUDENT, PASSWORD, NAME, pattern],
        env=env, cwd=REPOSITORY, check=True, timeout=START_TIMEOUT, capture_output=True,
    )
    port = free_port()
    log = tmp_path / "cas.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=env, cwd=REPOSITORY, stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the CAS server exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("the CAS server did not listen in time") from None
                time.sleep(0.1)
        yield RealCas(base=f"http://127.0.0.1:{port}/cas", process=process, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _form_fields(page: str) -> dict[str, str]:
    """The named inputs of the CAS login page's form, with their values."""
    fields = {}
    for tag in re.findall(r"<input\b[^>]*>", page):
        name = re.search(r'\bname="([^"]*)"', tag)
        value = re.search(r'\bvalue="([^"]*)"', tag)
        if name:
            fields[html.unescape(name.group(1))] = html.unescape(value.group(1)) if value else ""
    return fields


async def _cas_login(browser: aiohttp.ClientSession, cas: RealCas, service: str) -> str:
    """Log the student in through CAS's own login form, as a browser would; return the redirect."""
    login = URL(f"{cas.base}/login").with_query(service=service)
    async with browser.get(login) as form_page:
        assert form_page.status == 200, await form_page.text()
        fields = _form_fields(await form_page.text())
    assert "csrfmiddlewaretoken" in fields  # the real form, with its CSRF token and login ticket
    fields |= {"username": STUDENT, "password": PASSWORD}
    async with browser.post(login, data=fields, allow_redirects=False) as answer:
        assert answer.status == 302, (answer.status, await answer.text())
        return answer.headers["Location"]


def _ticket(location: str, service: str) -> str:
    assert location.startswith(service + "&ticket="), location
    return location.removeprefix(service + "&ticket=")


async def _env(make_env: MakeEnv, cas: RealCas, service_port: int, validate_path: str) -> PagesEnv:
    return await make_env(
        port=service_port,
        public_base_url=f"http://127.0.0.1:{service_port}",
        cas_base_url=cas.base,
        cas_validate_path=validate_path,
    )


@pytest.mark.parametrize("validate_path", ["/serviceValidate", "/p3/serviceValidate"], ids=["cas2", "cas3"])
async def test_a_student_logs_in_through_a_real_cas_server(
    make_env: MakeEnv, real_cas: RealCas, service_port: int, validate_path: str
) -> None:
    env = await _env(make_env, real_cas, service_port, validate_path)
    await env.start_login()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        location = await _cas_login(browser, real_cas, env.service_url)
    response = await env.cas_return(_ticket(location, env.service_url))
    assert response.status == 302
    assert response.headers["Location"] == "/bind/phone"
    page = await (await env.client.get("/bind/phone")).text()
    assert STUDENT in page
    assert html.escape(NAME) in page or NAME in page


async def test_the_real_cas_binds_a_ticket_to_its_login_s_service_url(
    make_env: MakeEnv, real_cas: RealCas, service_port: int
) -> None:
    env = await _env(make_env, real_cas, service_port, "/p3/serviceValidate")
    # The attacker's login: its own state, its own ticket, kept.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as attacker:
        async with attacker.get(env.client.make_url("/bind"), allow_redirects=False) as started:
            attackers_service = URL(started.headers["Location"]).query["service"]
        stolen = _ticket(await _cas_login(attacker, real_cas, attackers_service), attackers_service)
    # The victim's browser opens /bind, then the attacker's link.
    await env.start_login()
    assert env.service_url != attackers_service
    for state in (None, URL(attackers_service).query["state"]):
        params = {"ticket": stolen} if state is None else {"state": state, "ticket": stolen}
        response = await env.client.get("/bind/cas", params=params, allow_redirects=False)
        assert response.status == 400
        assert "请重新登录" in await response.text()
    assert "您尚未登录" in await (await env.client.get("/me")).text()
    # Below the state check, the real CAS refuses the ticket for the victim's service URL.
    with pytest.raises(CasAuthenticationFailure):
        await env.client.app[CAS].validate(stolen, state=env.state)


async def test_the_real_cas_single_logout_ends_the_session(
    make_env: MakeEnv, real_cas: RealCas, service_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callback_service.web.pages.views")
    env = await _env(make_env, real_cas, service_port, "/p3/serviceValidate")
    await env.start_login()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        location = await _cas_login(browser, real_cas, env.service_url)
        assert (await env.cas_return(_ticket(location, env.service_url))).status == 302
        assert NAME in await (await env.client.get("/me")).text()
        # Logging out of CAS: django-cas-server POSTs a SAML LogoutRequest to the service URL of
        # each ticket the session validated, and waits for the answers.
        async with browser.get(f"{real_cas.base}/logout") as logout:
            assert logout.status == 200
    assert "您尚未登录" in await (await env.client.get("/me")).text()
    assert any("single logout ended a session" in record.getMessage() for record in caplog.records)
