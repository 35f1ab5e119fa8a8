"""The students' flow, driven as a browser would: a CAS login, the phone form, a submit.

PagesEnv holds the service (built through create_app), the CAS emulator and the WeCom emulator,
each on its own loopback port. The helpers return raw responses so that tests can look at
statuses, headers and redirects (allow_redirects=False) themselves.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from callback_service.store import STORE
from callback_service.web.pages.session import COOKIE
from config import Settings
from handlers.core.binding import DirectoryEntry
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from sandbox.cas import CasUser
from sandbox.sms import SmsAccount
from sandbox.wecom import Member, WeComSandboxState
from tests.cas._support import post_login, ticket_of

PASSWORD: Final = "密码-correct-horse"
CAS_USERS: Final = {
    user.member_id: user
    for user in (
        # In the directory with a phone; a member of WeCom without one.
        CasUser(member_id="2021001", password=PASSWORD, name="张三", attributes={}),
        # In the directory without a phone; CAS releases a mobile.
        CasUser(member_id="2021002", password=PASSWORD, name="李四", attributes={"mobile": "13800000002"}),
        # Neither: the field is empty.
        CasUser(member_id="2021003", password=PASSWORD, name="王五", attributes={}),
        # In the directory, not yet a member of WeCom: bound through user/create.
        CasUser(member_id="2021004", password=PASSWORD, name="赵六", attributes={}),
        # In neither the directory nor WeCom, with a name that HTML must escape.
        CasUser(member_id="2021009", password=PASSWORD, name="<b>孙七</b>", attributes={}),
        # Outside the directory; CAS releases a mobile typed in full-width digits.
        CasUser(member_id="2021005", password=PASSWORD, name="钱九", attributes={"mobile": "１３８０００００００５"}),
        # Outside the directory; CAS releases a mobile with Arabic-Indic digits.
        CasUser(member_id="2021006", password=PASSWORD, name="吴十", attributes={"mobile": "13800000٠٠6"}),
    )
}
DIRECTORY: Final = (
    DirectoryEntry("2021001", "张三", "机械与汽车工程学院", Phone("13800000001")),
    DirectoryEntry("2021002", "李四", "电子电气工程学院", None),
    DirectoryEntry("2021003", "王五", "管理学院", None),
    DirectoryEntry("2021004", "赵六", "电子电气工程学院", Phone("13800000004")),
)
DEPARTMENTS: Final = {1: "上海工程技术大学", 2: "电子电气工程学院"}
OTHER_MEMBER: Final = "2020999"
OTHER_PHONE: Final = Phone("13900000099")
"""A member that WeCom holds with a phone our store has never heard of (to meet 60104)."""


def wecom_members() -> list[Member]:
    """The emulator's contacts at the start of a test."""
    return [
        Member(userid="2021001", name="张三", department=[1]),
        Member(userid="2021002", name="李四", department=[2]),
        Member(userid="2021003", name="王五", department=[1]),
        Member(userid="2021009", name="孙七", department=[1]),
        # Outside the directory, members of WeCom: their phone page is pre-filled from CAS.
        Member(userid="2021005", name="钱九", department=[1]),
        Member(userid="2021006", name="吴十", department=[1]),
        Member(userid=OTHER_MEMBER, name="周八", department=[1], mobile=OTHER_PHONE),
    ]


@dataclass
class PagesEnv:
    """The service and both emulators, running."""

    client: TestClient[web.Request, web.Application]
    settings: Settings
    cas: TestServer
    wecom: TestServer
    wecom_state: WeComSandboxState
    http: aiohttp.ClientSession
    # The service URL of the login this browser started last at /bind (its state included).
    login_service: str | None = None

    @property
    def store(self) -> Store:
        """The service's own store."""
        return self.client.app[STORE]

    @property
    def service_url(self) -> str:
        """The CAS service URL the service asked tickets for at the last /bind (without one: the
        settings' URL, with no state)."""
        return self.login_service or self.settings.public_base_url + "/bind/cas"

    @property
    def state(self) -> str:
        """The state of the login this browser started last."""
        return URL(self.service_url).query.get("state", "")

    async def cas_return(
        self, ticket: str, *, state: str | None = None, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        """Come back from CAS to /bind/cas with a ticket, as CAS's redirect does (this login's state
        unless another is given)."""
        params = {"state": self.state if state is None else state, "ticket": ticket}
        response = await self.client.get("/bind/cas", params=params, headers=headers, allow_redirects=False)
        await response.read()
        return response

    async def ticket(self, member_id: str) -> str:
        """Log the student in at CAS and return the ticket CAS hands back for our service."""
        response = await post_login(
            self.http,
            self.cas.make_url("/login"),
            username=member_id,
            password=CAS_USERS[member_id].password,
            service=self.service_url,
        )
        assert response.status == 302, response.status
        return ticket_of(response.headers["Location"], self.service_url)

    async def start_login(self) -> None:
        """Open /bind as this browser would to log in (anew, if a student is logged in already):
        the service sets the cookie that ties the coming CAS ticket to this browser."""
        jar = self.client.session.cookie_jar
        kept = {morsel.key: morsel.value for morsel in jar if morsel.key == COOKIE}
        jar.clear(lambda morsel: morsel.key == COOKIE)
        response = await self.client.get("/bind", allow_redirects=False)
        assert response.status == 302, response.status
        location = response.headers["Location"]
        assert location.startswith(self.settings.cas_base_url + "/login?")
        self.login_service = URL(location).query["service"]
        jar.update_cookies(kept, URL(str(self.client.make_url("/"))))

    async def login(self, member_id: str) -> aiohttp.ClientResponse:
        """Walk the student through /bind and CAS back to /bind/cas; return the service's answer."""
        await self.start_login()
        return await self.cas_return(await self.ticket(member_id))

    async def form(self) -> PhoneForm:
        """Open the phone page of the student logged in and read its form."""
        response = await self.client.get("/bind/phone", allow_redirects=False)
        assert response.status == 200, response.status
        return PhoneForm.read(await response.text())

    async def submit(
        self,
        phone: str,
        *,
        form: PhoneForm | None = None,
        follow: bool = True,
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """Submit the phone form (read afresh unless given)."""
        form = form or await self.form()
        response = await self.client.post(
            "/bind/phone",
            data={"csrf": form.csrf, "form_id": form.form_id, "phone": phone},
            allow_redirects=follow,
            headers=headers,
        )
        await response.read()
        return response

    async def bind(self, member_id: str, phone: str) -> str:
        """Log in and bind; return the result page."""
        assert (await self.login(member_id)).status == 302
        response = await self.submit(phone)
        return await response.text()


@dataclass(frozen=True)
class PhoneForm:
    """The hidden fields and the pre-filled phone of the binding page."""

    csrf: str
    form_id: str
    phone: str

    @classmethod
    def read(cls, page: str) -> PhoneForm:
        """Read the form out of the page's HTML."""
        return cls(
            csrf=_value(page, "csrf"),
            form_id=_value(page, "form_id"),
            phone=_value(page, "phone"),
        )


def _value(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no {name} field in the page"
    return html.unescape(found.group(1))


SMS_ACCOUNT: Final = SmsAccount(
    key_id="AKIDpages000000000000000000000000",
    key_secret="pages-secret-key-000000000000000",
    sign_name="上海工程技术大学",
    template_id="7654321",
    app_id="1400654321",
)
"""The SMS emulator's account the pages' tests send codes through (tests/pages/conftest.py's sms_server)."""


def sms_settings(server: TestServer, verify: str = "changed") -> dict[str, Any]:
    """The settings of an SMS proof through the emulator at server (make_env's overrides)."""
    return {
        "sms_provider": "tencent",
        "sms_key_id": SMS_ACCOUNT.key_id,
        "sms_key_secret": SMS_ACCOUNT.key_secret,
        "sms_sign_name": SMS_ACCOUNT.sign_name,
        "sms_template_id": SMS_ACCOUNT.template_id,
        "sms_app_id": SMS_ACCOUNT.app_id,
        "sms_api_base": str(server.make_url("/tencent")).rstrip("/"),
        "sms_code_secret": "c" * 40,
        "sms_verify": verify,
    }
