"""Headless Chromium per module, a fresh demo process per test, and phones with screenshots.

Debian's chromium is driven by Playwright's Python package through executable_path: nothing is
downloaded. The browser is per module, not per session: Playwright's sync API marks its event loop
as running in this thread until it stops, which the async tests of other modules cannot share.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.browser._support import (
    LAUNCH_ARGS,
    SCREENSHOTS,
    Demo,
    Phone,
    Screenshots,
    require_chromium,
    start_demo,
)
from tests.support.processes import free_port, stop, wait_healthy

UNMASKED_PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")

FAILED: pytest.StashKey[bool] = pytest.StashKey()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember a failed test, so that its fixtures can leave a screenshot of what was on screen."""
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium, with a fresh temporary profile (Playwright's launch makes one)."""
    executable = require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(LAUNCH_ARGS), timeout=30_000
        )
        yield launched
        launched.close()


@pytest.fixture
def demo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Demo]:
    """The demo (`python -m sandbox`) on a free loopback port, its store fresh in tmp_path."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "demo"
    process = start_demo(port, data_dir)
    try:
        wait_healthy(base, process)
        yield Demo(base=base, data_dir=data_dir, process=process)
    finally:
        _, stderr = stop(process)
        if request.node.stash.get(FAILED, False):
            print("demo log (last lines):\n" + "\n".join(stderr.splitlines()[-40:]))
    # Phones are personal data: whatever the walk did, the service's log holds them masked only.
    unmasked = [
        # Where each one stands (itself masked), so that a failure says which log line held it.
        f"{stderr[max(found.start() - 60, 0):found.start()]}{found.group()[:3]}****{found.group()[-4:]}"
        f"{stderr[found.end():found.end() + 20]}"
        for found in UNMASKED_PHONE.finditer(stderr)
    ]
    assert not unmasked, f"{len(unmasked)} full phone number(s) in the demo's log: {unmasked}"


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    """This test's screenshot folder: tests/_artifacts/screenshots/<module>/<test>/."""
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    return Screenshots(SCREENSHOTS / module / re.sub(r"[^\w.-]+", "_", request.node.name))


@pytest.fixture
def new_phone(
    browser: Browser, demo: Demo, shots: Screenshots, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Phone]]:
    """Make a phone for a person (a context of its own); on failure each phone's screen is saved."""
    phones: list[Phone] = []

    def make(who: str) -> Phone:
        phone = Phone(browser, demo, shots, who)
        phones.append(phone)
        return phone

    yield make
    for phone in phones:
        if request.node.stash.get(FAILED, False):
            for page in phone.context.pages:
                # A page that cannot be shot any more: the test's own error says why.
                with contextlib.suppress(PlaywrightError):
                    phone.shot("failure", page)
        phone.close()
