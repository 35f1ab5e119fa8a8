"""Issue 17's first morning, in headless Chromium: an existing organisation, `wecom-bind sync` run for
real against the demo's settings, the app's visible range set to everyone in the WeCom console, then
an activated member is told it has joined and a student not yet activated binds a phone.

The demo makes up its secrets at each start, so this module is also its launcher (run as
`python -m tests.browser.test_first_morning`): the demo of `--wecom-members FILE`, which also writes
its settings as WECOM_BIND_* variables to a file for the `wecom-bind sync` process.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from pydantic import SecretStr

from tests.browser._support import ORGANISATION, Demo, Phone, Screenshots
from tests.support.processes import free_port, run_command, start_service, stop, wait_healthy

pytestmark = pytest.mark.browser

SETTLE_S = 15.0


@pytest.fixture
def morning(tmp_path: Path) -> Iterator[tuple[Demo, dict[str, str]]]:
    """The demo of the organisation above (this module as launcher), and its settings as variables."""
    members = tmp_path / "organisation.csv"
    members.write_text(ORGANISATION, encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "demo"
    env_file = tmp_path / "settings.json"
    process = start_service(
        [str(port), str(data_dir), str(members), str(env_file)], {},
        command=(sys.executable, "-m", "tests.browser.test_first_morning"),
    )
    try:
        wait_healthy(base, process)
        yield Demo(base=base, data_dir=data_dir, process=process), json.loads(env_file.read_text("utf-8"))
    finally:
        stop(process)


@pytest.fixture
def phone(browser: Browser, morning: tuple[Demo, dict[str, str]], shots: Screenshots
          ) -> Iterator[Callable[[str], Phone]]:
    phones: list[Phone] = []

    def make(who: str) -> Phone:
        made = Phone(browser, morning[0], shots, who)
        phones.append(made)
        return made

    yield make
    for made in phones:
        made.close()


def test_first_morning_sync_then_everyone_visible_then_students_log_in(
    morning: tuple[Demo, dict[str, str]], phone: Callable[[str], Phone]
) -> None:
    demo, env = morning
    sync = run_command(env, "sync")
    assert sync.returncode == 0, sync.stderr
    assert "WeCom: 4 members: 已激活 1, 已禁用 1, 未激活 1, 退出企业 1" in sync.stdout, sync.stdout

    chen = phone("chenyi")
    console = chen.page.request
    # Before the morning the app sees nobody; then the administrator sets its range to everyone.
    ranges: list[list[int] | None] = [[], None]
    for departments in ranges:
        answer = console.post(demo.url("/sandbox/wecom/_sandbox/console/visible"),
                              data=json.dumps({"departments": departments}),
                              headers={"Content-Type": "application/json"})
        assert answer.ok, answer.text()
    # WeCom pushes subscribe for the activated member entering the range (document/path/90376).
    deadline = time.monotonic() + SETTLE_S
    while True:
        state = console.get(demo.url("/sandbox/wecom/_sandbox/state")).json()
        subscribes = [p for p in state["pushes"] if p["event"] == "subscribe"]
        stats = demo.inbox_stats()
        if subscribes and all(p["delivered"] for p in subscribes) and not (stats.pending or stats.leased):
            break
        assert time.monotonic() < deadline, (state["pushes"], stats)
        time.sleep(0.2)
    assert [p["userid"] for p in subscribes] == ["2019001"]
    assert stats.dead == 0
    assert state["messages"] == []  # no welcome: nobody bound through the service yet

    chen.login("2019001")
    expect(chen.page.locator("#outcome")).to_have_attribute("data-outcome", "joined")
    expect(chen.page.get_by_role("heading", name="您的账号已加入企业号")).to_be_visible()
    expect(chen.page.get_by_text("无需再绑定")).to_be_visible()
    expect(chen.page.locator("#phone")).to_have_count(0)
    chen.shot("joined")

    zhou = phone("zhousi")
    zhou.login("2019004")
    assert zhou.page.viewport_size == {"width": 390, "height": 844}
    expect(zhou.page.locator("#phone")).to_be_visible()
    zhou.shot("phone-page")
    assert zhou.submit_phone("13900000004") == "bound"
    expect(zhou.page.get_by_role("heading", name="绑定成功")).to_be_visible()
    expect(zhou.page.get_by_text("13900000004")).to_have_count(0)  # masked only
    zhou.shot("bound")
    assert demo.inbox_stats().dead == 0


def _launch(port: str, data_dir: str, members: str, env_file: str) -> int:
    """The demo of `--wecom-members`, its settings written first as WECOM_BIND_* variables."""
    from callback_service.compose import SETTINGS
    from callback_service.logs import configure_logging
    from callback_service.ops.processes import run_app
    from config import env_name
    from sandbox.demo import create_demo_app

    configure_logging("INFO", "text")
    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    app = create_demo_app(host="127.0.0.1", port=int(port), data_dir=folder, wecom_members=Path(members))
    settings = app[SETTINGS]
    env: dict[str, str] = {}
    for field in settings.model_fields_set:
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, frozenset | set | tuple | list):
            value = json.dumps(sorted(value))
        env[env_name(field)] = str(value)
    Path(env_file).write_text(json.dumps(env), encoding="utf-8")
    run_app(app, host="127.0.0.1", port=int(port))
    return 0


if __name__ == "__main__":
    sys.exit(_launch(*sys.argv[1:5]))
