"""Headless Chromium on a student's phone, walking the demo: the browser, the demo process, the steps.

Each `Phone` is one person's phone: a browser context with its own cookies, so the service's
session, the CAS single sign-on and the simulated WeChat of the emulator all live in it, as they
would in WeChat's browser. Every wait is bounded; every step can leave a screenshot.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from callback_service.store import open_store
from handlers.core.binding import AuditRecord, InboxStats
from handlers.core.guide import GUIDE, ErrorCode
from handlers.usecases.contracts import Store
from sandbox.demo import DEMO_PASSWORD
from testkit.processes import start_service

CHROMIUM: Final = "/usr/bin/chromium"
LAUNCH_ARGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WECHAT_UA: Final = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 "
    "MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 Weixin "
    "NetType/WIFI Language/zh_CN ABI/arm64"
)
ACTION_TIMEOUT_MS: Final = 5_000
NAVIGATION_TIMEOUT_MS: Final = 10_000
FOLLOW_WAIT_S: Final = 10.0
"""How long the follow may take to reach /me: the emulator's push, the inbox, a worker."""
SCREENSHOTS: Final = Path(__file__).resolve().parents[1] / "_artifacts" / "screenshots"
ORGANISATION: Final = """userid,name,department,mobile,status
2019001,陈一,2,13900000001,1
2019003,黄三,3,13900000003,2
2019004,周四,3,13900000004,4
2019005,吴五,2,,5
"""
"""An existing organisation for `--wecom-members`: activated (1), disabled (2), not activated (4), departed (5)."""

T = TypeVar("T")


def require_chromium() -> str:
    """Return Debian's chromium; fail under CI=true, skip elsewhere, when it is missing."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is not installed (CI=true: scripts/system-deps.sh installs chromium)")
    pytest.skip(f"{CHROMIUM} is not installed")


def start_demo(port: int, data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    """`python -m sandbox` (what `make demo` runs) on a loopback port, its store in data_dir.

    Not `wecom-bind demo`, which only hands over to it (tests/callback_service/test_demo.py walks
    that): the hand-over would cost each test a second interpreter's start and imports.
    """
    return start_service(
        ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), *extra], {},
        command=(sys.executable, "-m", "sandbox"),
    )


@dataclass
class Demo:
    """A demo process on a loopback port, with its SQLite file under data_dir."""

    base: str
    data_dir: Path
    process: subprocess.Popen[str] = field(repr=False)

    def url(self, path: str) -> str:
        """The absolute URL of a path of the demo."""
        return self.base + path

    def audit(self, member_id: str) -> list[AuditRecord]:
        """The member's audit records, newest first, read from the demo's store file."""
        return self._read(lambda store: store.audit_list(member_id=member_id))

    def inbox_stats(self) -> InboxStats:
        """The demo's inbox counts, read from its store file."""
        return self._read(lambda store: store.inbox_stats())

    def _read(self, query: Callable[[Store], Awaitable[T]]) -> T:
        async def read() -> T:
            store = await open_store(f"sqlite:///{self.data_dir / 'demo.db'}")
            try:
                return await query(store)
            finally:
                await store.close()

        # Playwright's sync API marks its own loop as running in this thread: read in another.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, read()).result(timeout=10)


class Screenshots:
    """Numbered PNGs of one test's steps, in its own folder (emptied first)."""

    def __init__(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder = folder
        self._count = 0

    def take(self, page: Page, step: str) -> Path:
        """Save the whole page, at one pixel per CSS pixel (390 wide)."""
        self._count += 1
        path = self.folder / f"{self._count:02d}-{step}.png"
        page.screenshot(path=path, full_page=True, scale="css", animations="disabled")
        return path


class Phone:
    """One person's phone: a fresh browser context (cookies of its own) and its page."""

    def __init__(self, browser: Browser, demo: Demo, shots: Screenshots, who: str) -> None:
        self.demo = demo
        self.who = who
        self._shots = shots
        self.context: BrowserContext = browser.new_context(
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            user_agent=WECHAT_UA,
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
        )
        self.context.set_default_timeout(ACTION_TIMEOUT_MS)
        self.context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        self.page: Page = self.context.new_page()

    def shot(self, step: str, page: Page | None = None) -> Path:
        """A screenshot of this step, named after the person and the step."""
        return self._shots.take(page or self.page, f"{self.who}-{step}")

    def open(self, path: str) -> None:
        """Open a path of the demo."""
        self.page.goto(self.demo.url(path))

    # steps 1 to 3: the service's pages

    def login(self, member_id: str, *, shot: bool = False) -> None:
        """Steps 1 and 2: /bind, then the CAS login with 学号 and password, back on the phone page."""
        self.open("/bind")
        expect(self.page.locator("#username")).to_be_visible()
        if shot:
            self.shot("cas-login")
        self.page.fill("#username", member_id)
        self.page.fill("#password", DEMO_PASSWORD)
        self.page.get_by_role("button", name="登录").click()
        expect(self.page).to_have_url(self.demo.url("/bind/phone"))

    def submit_phone(self, phone: str | None = None) -> str:
        """Step 3: confirm the phone (or type another), click 绑定, and enter the SMS code when the
        phone is not the directory's (read from the demo's SMS emulator); return the data-outcome."""
        if phone is not None:
            self.page.fill("#phone", phone)
        typed = _digits(self.page.input_value("#phone"))
        self.page.locator("#bind-submit").click()
        self.page.locator("#outcome, [data-sms-sent]").first.wait_for()
        if self.page.locator("[data-sms-sent]").count():
            self.enter_code(self.sms_code(typed))
        return self.outcome()

    def sms_messages(self, phone: str) -> list[str]:
        """The texts the phone received from the demo's SMS emulator, oldest first."""
        response = self.page.request.get(self.demo.url("/sandbox/sms/messages"))
        assert response.ok, response.status
        return [message["text"] for message in response.json() if message["phone"] == phone]

    def sms_code(self, phone: str) -> str:
        """The code of the last SMS the phone received."""
        texts = self.sms_messages(phone)
        assert texts, f"no SMS reached {phone[:3]}****{phone[-4:]}"
        found = re.search(r"\d{6}", texts[-1])
        assert found is not None, texts[-1]
        return found.group(0)

    def enter_code(self, code: str) -> None:
        """On /bind/code: type the code, click 验证并绑定."""
        self.page.fill("#code", code)
        self.page.locator("#code-submit").click()

    def outcome(self) -> str:
        """The data-outcome of the result page on screen, once it is settled (not pending)."""
        outcome = self.page.locator("#outcome")
        expect(outcome).to_have_attribute("data-outcome", re.compile(r"^(?!pending$)"))
        return outcome.get_attribute("data-outcome") or ""

    def bind(self, member_id: str, phone: str | None = None) -> None:
        """Steps 1 to 3 at once, expecting 绑定成功."""
        self.login(member_id)
        assert self.submit_phone(phone) == "bound"

    def wait_for_state(self, state: str) -> None:
        """Poll /me, boundedly, until the binding shows this state (已关注, 已绑定，未关注...)."""
        deadline = time.monotonic() + FOLLOW_WAIT_S
        badge = self.page.locator("dl.who .state")
        while True:
            self.open("/me")
            if badge.inner_text().strip() == state:
                return
            if time.monotonic() >= deadline:
                raise AssertionError(f"/me still shows {badge.inner_text()!r}, not {state!r}")
            self.page.wait_for_timeout(200)

    # steps 4 and 5: the WeCom emulator's follow

    def use_wechat(self, name: str) -> None:
        """On 模拟微信, make this simulated WeChat the phone's own (点“使用”)."""
        row = self.page.locator("tr").filter(has=self.page.get_by_role("cell", name=name, exact=True))
        row.get_by_role("button", name="使用").click()

    def scan_follow_qr(self, wechat: str) -> None:
        """Open the follow page as this WeChat (picking it first): what scanning the follow QR does."""
        self.open("/sandbox/wecom/wechat?next=/sandbox/wecom/follow")
        self.use_wechat(wechat)
        expect(self.page.get_by_role("button", name="关注", exact=True)).to_be_visible()

    def press_follow(self) -> None:
        """Click 关注 on the follow page."""
        self.page.get_by_role("button", name="关注", exact=True).click()

    def verify_phone(self, phone: str) -> None:
        """验证身份: type the phone and click 下一步."""
        expect(self.page.locator("[data-step=verify]")).to_be_visible()
        self.page.fill("#phone", phone)
        self.page.get_by_role("button", name="下一步").click()

    def enter_sms_code(self) -> str:
        """Read the code from the 模拟短信 box, type it, click 验证; return the code."""
        code = self.page.locator("[data-sms-code]").inner_text().strip()
        assert re.fullmatch(r"\d{6}", code), code
        self.page.fill("#code", code)
        self.page.get_by_role("button", name="验证", exact=True).click()
        return code

    def expect_followed(self, member_name: str) -> None:
        """The emulator's 关注成功 page (图 1-7), as this member."""
        card = self.page.locator("[data-result=followed]")
        expect(card).to_be_visible()
        expect(card.get_by_role("heading")).to_have_text("关注成功")
        expect(card).to_contain_text(member_name)

    def expect_image_shown(self, alt: str) -> None:
        """The image with this alt text was fetched and decoded (not a broken-image box)."""
        image = self.page.get_by_alt_text(alt, exact=True)
        expect(image).to_be_visible()
        shown = image.evaluate("img => img.decode().then(() => img.naturalWidth > 0, () => false)")
        assert shown, f"the image {alt!r} does not show"

    def close(self) -> None:
        """Close the context and its pages."""
        self.context.close()


def expect_wecom_refusal(page: Page, code: ErrorCode) -> None:
    """WeCom's verification screen refused with this error, and its 常见问题 link leads to the guide's
    cause and remedy on our /help (read in a second tab: WeCom's screen answered a POST)."""
    expect(page.locator(f'[data-error="{code}"]')).to_be_visible()
    expect(page.get_by_role("heading", name=GUIDE[code].title)).to_be_visible()
    link = page.get_by_role("link", name="常见问题")
    expect(link).to_have_attribute("href", re.compile(f"/help#{code}$"))
    help_page = page.context.new_page()
    try:
        help_page.goto(str(link.get_attribute("href")))
        expect(help_page.locator(f"#{code}")).to_be_in_viewport()
        expect_guide_entry(help_page, code)
    finally:
        help_page.close()


def expect_guide_entry(page: Page, code: ErrorCode) -> None:
    """The guide's section, title, every cause and every remedy of this error are on the screen."""
    entry = GUIDE[code]
    expect(page.get_by_text(entry.title).first).to_be_visible()
    expect(page.get_by_text("错误原因").first).to_be_visible()
    expect(page.get_by_text("解决方法").first).to_be_visible()
    for text in (*entry.causes, *entry.remedies):
        expect(page.get_by_text(text, exact=True)).to_be_visible()


def _digits(typed: str) -> str:
    """A typed mainland phone as its 11 digits (+86, spaces and dashes dropped)."""
    digits = re.sub(r"\D", "", typed)
    return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits
