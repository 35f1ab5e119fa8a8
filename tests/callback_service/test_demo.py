"""The demo mounts the emulators beside the service; the production app never does."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from sandbox.demo import DEMO_PASSWORD, DEMO_STUDENTS
from tests.support.processes import free_port, start_service, stop, wait_healthy


@pytest.mark.parametrize("path", ["/sandbox/cas/login", "/sandbox/wecom/cgi-bin/gettoken"])
async def test_production_app_has_no_sandbox(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    response = await client.get(path)
    assert response.status == 404


def test_demo_command_serves_its_start_page_and_both_sandboxes(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_service(
        ["demo", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path)], {}
    )
    try:
        wait_healthy(base, process)
        with urllib.request.urlopen(base + "/", timeout=5) as response:  # noqa: S310 - loopback
            start = response.read().decode()
        with urllib.request.urlopen(base + "/sandbox/cas/login", timeout=5) as response:  # noqa: S310
            login = response.read().decode()
        with urllib.request.urlopen(base + "/sandbox/wecom/", timeout=5) as response:  # noqa: S310
            wecom_home = response.read().decode()
    finally:
        _, stderr = stop(process)
    # The demo's log is for people: readable lines, each request's id at the end of its access line.
    access = [line for line in stderr.splitlines() if 'aiohttp.access' in line and '"GET /"' in line]
    assert access
    assert not access[0].startswith("{")
    assert "request_id=" in access[0]
    for student in DEMO_STUDENTS:
        assert student.member_id in start
        assert student.name in start
    assert DEMO_PASSWORD in start
    assert "不能读取成员详情（48009）" in start  # the demo's WeCom is today's, and its start page says so
    assert f"{base}/bind" in start
    assert "统一身份认证" in login
    assert "上海工程技术大学" in wecom_home
