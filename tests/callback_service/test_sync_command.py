"""`wecom-bind sync` as an operator runs it: a real process, the emulator, a SQLite file."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp.test_utils import TestServer

from callback_service.ops.sync import ProgressBar
from callback_service.store import open_store
from handlers.core.binding import DirectoryEntry
from handlers.core.member import MemberStatus
from sandbox.wecom import create_wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_members import read_members
from sandbox.wecom_state import APP, CONTACTS, WeComSandboxState
from tests.support.callbacks import AGENT_ID, CORP_ID
from tests.support.processes import run_command
from tests.support.world import APP_SECRET, CONTACTS_SECRET, service_env

ServerFactory = Callable[..., Awaitable[TestServer]]
ORGANISATION = Path(__file__).resolve().parents[1] / "data" / "organisation.csv"


async def _organisation(aiohttp_server: ServerFactory) -> tuple[WeComSandboxState, TestServer]:
    app = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
        agent_id=AGENT_ID,
        callback=None,
        departments={1: "校", 2: "机械", 3: "电子", 4: "教务处"},
        members=read_members(ORGANISATION).members,
    )
    return app[WECOM_SANDBOX_STATE], await aiohttp_server(app)


async def test_sync_prints_the_statuses_in_wecoms_words_and_records_them(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    state, server = await _organisation(aiohttp_server)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = await open_store(store_url)
    try:
        await store.directory_upsert([
            DirectoryEntry("2019001", "陈一", "机械学院", None),
            DirectoryEntry("2019099", "新生", "电子学院", None),
        ])
    finally:
        await store.close()
    env = service_env(9, wecom_api_base=str(server.make_url("")).rstrip("/"), store_url=store_url)

    dry = await asyncio.to_thread(run_command, env, "sync", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "WeCom: 6 members: 已激活 3, 已禁用 1, 未激活 1, 退出企业 1" in dry.stdout
    assert "dry run: nothing was recorded" in dry.stdout
    store = await open_store(store_url)
    try:
        assert await store.list_members_seen() == []
    finally:
        await store.close()

    done = await asyncio.to_thread(run_command, env, "sync")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "  机械学院: 已激活 1, 已禁用 0, 未激活 0, 退出企业 0" in lines
    assert "directory students with no member in WeCom: 1: 2019099" in lines
    assert "WeCom members in no directory entry: 5: 2019002, 2019003, 2019004, 2019005, T0001" in lines
    assert "recorded: 6 members' status new or changed" in lines
    assert "reading statuses" not in done.stderr  # no progress bar when stderr is no terminal
    store = await open_store(store_url)
    try:
        recorded = await store.member_seen("2019001")
        assert recorded is not None
        assert recorded.status is MemberStatus.ACTIVATED
    finally:
        await store.close()
    assert state.calls.count("user/get") == 12


async def test_sync_names_the_assistants_trusted_ips_when_wecom_refuses_its_address(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    state, server = await _organisation(aiohttp_server)
    state.trusted_ips[CONTACTS] = ()  # the server's address is not trusted
    env = service_env(9, wecom_api_base=str(server.make_url("")).rstrip("/"),
                      store_url=f"sqlite:///{tmp_path / 'store.db'}")
    result = await asyncio.to_thread(run_command, env, "sync")
    assert result.returncode == 4
    assert "errcode 60020" in result.stderr
    assert "管理工具 → 通讯录同步 → 企业可信IP" in result.stderr
    assert "Traceback" not in result.stderr


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_on_a_terminal_only() -> None:
    terminal, piped = Terminal(), io.StringIO()
    for stream in (terminal, piped):
        bar = ProgressBar(stream, width=10)
        for done in range(0, 201, 50):
            bar(done, 200)
    assert piped.getvalue() == ""
    shown = terminal.getvalue()
    assert "\rreading statuses 100/200 [#####.....]" in shown
    assert shown.endswith("\rreading statuses 200/200 [##########]\n")
