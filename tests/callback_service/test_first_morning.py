"""The first morning on an existing organisation: sync, then the app's visible range set to everyone.

WeCom pushes `subscribe` for every activated member that enters the range (document/path/90376);
none of them bound through the service, so none is welcomed, none is dead-lettered, and each is
recorded as joined, whether a WeChat follows (converted to an openid) or not (the WeCom app only).
"""

from __future__ import annotations

import time

import aiohttp

from callback_service.clients.wecom import WECOM_APP, WECOM_CONTACTS
from callback_service.store import STORE
from handlers.core.binding import Actor, BindingState
from handlers.core.member import MemberStatus
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from handlers.usecases.sync import sync_organisation
from sandbox.wecom_state import STATUS_ACTIVE, STATUS_DISABLED, STATUS_INACTIVE, Member
from tests.support.world import ServerFactory, World, eventually, running_world
from tests.wecom._support import browser, new_wechat, post_page

STUDENT = Actor(who="2019009", source="web 127.0.0.1")


def _store(world: World) -> Store:
    return world.service.app[STORE]


async def test_visible_range_to_everyone_welcomes_nobody_and_records_them_joined(
    aiohttp_server: ServerFactory, store_url: str
) -> None:
    members = [
        Member(userid=f"20190{n:02d}", name="学生", department=[2], mobile=f"139000000{n:02d}",
               status=STATUS_ACTIVE, uses_wecom_app=True)
        for n in range(1, 7)
    ] + [
        Member(userid="2019007", name="停用", department=[2], status=STATUS_DISABLED),
        Member(userid="2019008", name="未激活", department=[2], status=STATUS_INACTIVE),
        Member(userid="2019009", name="新生", department=[2]),
    ]
    options = {"departments": {1: "校", 2: "机械", 3: "空"}, "visible_departments": [3]}
    async with running_world(aiohttp_server, store_url=store_url, members=members, wecom_options=options) as world:
        state = world.wecom
        # Three of the activated members follow the WeChat plugin too; the rest use the WeCom app only.
        for n in (1, 2, 3):
            state.follow(f"20190{n:02d}", state.add_wechat("微信", f"139000000{n:02d}"))
        store = _store(world)
        report = await sync_organisation(
            lister=world.service.app[WECOM_CONTACTS], reader=world.service.app[WECOM_APP], store=store,
            clock=time.time,
        )
        # The app sees nobody yet (its range is an empty department): statuses unknown, reported.
        assert len(report.unreadable) == 9
        state.visible_departments = None  # so that sync reads everyone: run it as the guide says
        report = await sync_organisation(
            lister=world.service.app[WECOM_CONTACTS], reader=world.service.app[WECOM_APP], store=store,
            clock=time.time,
        )
        assert report.totals[MemberStatus.ACTIVATED] == 6
        state.visible_departments = frozenset({3})

        async with aiohttp.ClientSession() as http, http.post(
            world.wecom_url + "/_sandbox/console/visible", json={"departments": None}
        ) as response:
            assert response.status == 200

        async def all_handled() -> bool | None:
            pushes = [p for p in state.pushes if p.event == "subscribe"]
            stats = await store.inbox_stats()
            done = len(pushes) == 6 and all(p.delivered for p in pushes)
            return True if done and stats.pending == stats.leased == 0 else None

        await eventually(all_handled, within=20)
        assert (await store.inbox_stats()).dead == 0
        assert state.messages == []  # no welcome: none of them bound through the service
        for n in range(1, 7):
            seen = await store.member_seen(f"20190{n:02d}")
            assert seen is not None
            assert seen.status is MemberStatus.ACTIVATED
        followed = [b.member_id for b in await store.list_bindings() if b.state is BindingState.FOLLOWED]
        assert followed == ["2019001", "2019002", "2019003"]  # the openids WeCom could convert

        # A student of the same morning binds through the service, follows, and is welcomed, once.
        claim = await store.claim_phone("2019009", Phone("13900000009"), lease=30, actor=STUDENT)
        await world.service.app[WECOM_CONTACTS].user_update("2019009", mobile="13900000009")
        await store.commit_claim(claim)
        async with browser() as http:
            await new_wechat(http, world.wecom_url, "新生的微信", "13900000009")
            status, page = await post_page(http, world.wecom_url + "/follow")
            assert status == 200
            assert "关注成功" in page

        async def welcomed() -> bool | None:
            return True if state.messages else None

        await eventually(welcomed)
        assert [m.touser for m in state.messages] == [("2019009",)]
