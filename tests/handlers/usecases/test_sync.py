"""`wecom-bind sync` over the WeCom emulator playing an existing organisation, on both stores."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from callback_service.clients.wecom import WeComClient
from handlers.core.binding import DirectoryEntry
from handlers.core.member import MemberSeen, MemberStatus
from handlers.core.wecom_errors import WeComUnavailable
from handlers.usecases.contacts import ContactMember
from handlers.usecases.contracts import Store
from handlers.usecases.sync import CHECKPOINT_KEY, OrganisationLister, StatusReader, sync_organisation
from sandbox.wecom import APP, CONTACTS, WeComSandboxState, create_wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_members import read_members
from tests.store.support import FakeClock

CORP_ID = "wwsynctest0000000"
ORGANISATION = Path(__file__).resolve().parents[2] / "data" / "organisation.csv"
A, D, N, Q = MemberStatus.ACTIVATED, MemberStatus.DISABLED, MemberStatus.NOT_ACTIVATED, MemberStatus.QUIT
DIRECTORY = [
    DirectoryEntry("2019001", "陈一", "机械学院", None),
    DirectoryEntry("2019002", "林二", "机械学院", None),
    DirectoryEntry("2019003", "黄三", "电子学院", None),
    DirectoryEntry("2019004", "周四", "电子学院", None),
    DirectoryEntry("2019005", "吴五", "机械学院", None),
    DirectoryEntry("2019099", "新生", "电子学院", None),  # no member in WeCom yet
]


@dataclass
class Org:
    server: TestServer
    state: WeComSandboxState
    lister: WeComClient
    reader: WeComClient


@pytest.fixture
async def org(aiohttp_server: AiohttpServer, store: Store, clock: FakeClock) -> AsyncIterator[Org]:
    organisation = read_members(ORGANISATION)
    app = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={"app-secret": APP, "contacts-secret": CONTACTS},
        agent_id=1000002,
        callback=None,
        departments={1: "校", 2: "机械", 3: "电子", 4: "教务处"},
        members=organisation.members,
        clock=clock,
    )
    server = await aiohttp_server(app)
    await store.directory_upsert(DIRECTORY)
    async with aiohttp.ClientSession() as session:
        def client(secret: str) -> WeComClient:
            return WeComClient(
                session=session, api_base=str(server.make_url("")), corp_id=CORP_ID, secret=secret,
                store=store, clock=clock, max_attempts=1, contacts=secret == "contacts-secret",
            )

        yield Org(server, app[WECOM_SANDBOX_STATE], client("contacts-secret"), client("app-secret"))


async def test_sync_records_every_status_and_compares_the_directory(org: Org, store: Store, clock: FakeClock) -> None:
    lister: OrganisationLister = org.lister  # the real client fulfils the narrow contracts, as mypy checks
    reader: StatusReader = org.reader
    shown: list[tuple[int, int]] = []
    report = await sync_organisation(
        lister=lister, reader=reader, store=store, clock=clock, departments={4: "教务处"},
        progress=lambda done, total: shown.append((done, total)),
    )
    assert report.members == 6
    assert report.totals == Counter({A: 3, D: 1, N: 1, Q: 1})
    assert report.by_department == {
        "机械学院": Counter({A: 2, Q: 1}), "电子学院": Counter({D: 1, N: 1}), "教务处": Counter({A: 1})
    }
    assert report.without_member == ["2019099"]
    assert report.outside_directory == ["T0001"]
    assert report.changed == 6
    assert shown[-1] == (6, 6)
    seen = {r.member_id: r for r in await store.list_members_seen()}
    assert {m: r.status for m, r in seen.items()} == {
        "2019001": A, "2019002": A, "2019003": D, "2019004": N, "2019005": Q, "T0001": A
    }
    assert {r.source for r in seen.values()} == {"sync"}
    # Statuses with the app's secret; the list with the contacts-sync one.
    assert org.state.calls.count("user/get") == 6
    assert org.state.calls.count("user/list_id") == 1
    assert await store.kv_get(CHECKPOINT_KEY) is None


async def test_a_dry_run_records_nothing(org: Org, store: Store, clock: FakeClock) -> None:
    report = await sync_organisation(lister=org.lister, reader=org.reader, store=store, clock=clock, dry_run=True)
    assert report.totals == Counter({A: 3, D: 1, N: 1, Q: 1})
    assert report.changed == 0
    assert await store.list_members_seen() == []
    assert await store.kv_get(CHECKPOINT_KEY) is None


async def test_a_second_run_changes_only_what_wecom_changed(org: Org, store: Store, clock: FakeClock) -> None:
    await sync_organisation(lister=org.lister, reader=org.reader, store=store, clock=clock)
    clock.advance(60)
    again = await sync_organisation(lister=org.lister, reader=org.reader, store=store, clock=clock)
    assert again.changed == 0
    org.state.set_enabled("2019004", False)
    org.state.delete_member("2019005")
    clock.advance(60)
    third = await sync_organisation(lister=org.lister, reader=org.reader, store=store, clock=clock)
    assert third.changed == 2
    assert third.gone == ["2019005"]
    assert await store.member_seen("2019005") == MemberSeen("2019005", None, clock(), "sync")
    recorded = await store.member_seen("2019004")
    assert recorded is not None
    assert recorded.status is D


class FailsAfter:
    """The app's real client, until WeCom stops answering after `reads` calls (an interruption)."""

    def __init__(self, reader: WeComClient, reads: int) -> None:
        self._reader = reader
        self._left = reads

    async def user_get(self, userid: str) -> ContactMember:
        self._left -= 1
        if self._left < 0:
            raise WeComUnavailable(-1, "timeout")
        return await self._reader.user_get(userid)


async def test_an_interrupted_run_resumes_where_it_stopped(org: Org, store: Store, clock: FakeClock) -> None:
    with pytest.raises(WeComUnavailable):
        await sync_organisation(lister=org.lister, reader=FailsAfter(org.reader, 4), store=store, clock=clock)
    assert len(await store.list_members_seen()) == 4  # what was read is kept
    assert await store.kv_get(CHECKPOINT_KEY) is not None
    before = org.state.calls.count("user/get")
    clock.advance(30)
    report = await sync_organisation(lister=org.lister, reader=org.reader, store=store, clock=clock)
    assert report.resumed_from is not None
    assert report.skipped == 4
    assert org.state.calls.count("user/get") - before == 2  # only the members not read before
    assert report.totals == Counter({A: 3, D: 1, N: 1, Q: 1})
    assert await store.kv_get(CHECKPOINT_KEY) is None


async def test_members_outside_the_apps_visible_range_are_reported_unknown(
    org: Org, store: Store, clock: FakeClock
) -> None:
    org.state.visible_departments = frozenset({2, 4})
    report = await sync_organisation(lister=org.lister, reader=org.reader, store=store, clock=clock)
    assert report.unreadable == ["2019003", "2019004"]
    assert await store.member_seen("2019003") is None
    assert report.totals == Counter({A: 3, Q: 1})
