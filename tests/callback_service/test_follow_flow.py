"""The rules kept by callbacks, end to end: the emulator pushes real callbacks to a running service.

Every test runs on both store backends.
"""

from __future__ import annotations

import aiohttp
import pytest

from callback_service.web.app import create_app
from callback_service.web.keys import STORE, WECOM_CONTACTS
from handlers.core.binding import AccountFollowed, Actor, Binding, BindingState
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_state import Member
from tests.support.world import (
    OLD_ASSISTANT,
    ServerFactory,
    World,
    eventually,
    running_world,
    wecom_sandbox,
    world_settings,
)
from tests.wecom._support import browser, new_wechat, post_page

P1 = Phone("13800000001")
P2 = Phone("13800000009")
STUDENT = Actor(who="2021001", source="127.0.0.1")


def _store(world: World) -> Store:
    return world.service.app[STORE]


async def _state(world: World, member: str, state: BindingState) -> Binding:
    async def probe() -> Binding | None:
        binding = await _store(world).get_binding(member)
        return binding if binding is not None and binding.state is state else None

    return await eventually(probe)


async def _bind(world: World, member: str, phone: str) -> None:
    """What the binding page does: claim, write the phone to WeCom, commit."""
    store = _store(world)
    claim = await store.claim_phone(member, Phone(phone), lease=30, actor=STUDENT)
    await world.service.app[WECOM_CONTACTS].user_update(member, mobile=phone)
    await store.commit_claim(claim)


async def test_remedy_of_2_2_bind_follow_refused_unfollow_rebind(
    aiohttp_server: ServerFactory, store_url: str
) -> None:
    members = [Member(userid="2021001", name="张三", department=[1], mobile=None)]
    async with running_world(aiohttp_server, store_url=store_url, members=members) as world:
        await _bind(world, "2021001", P1)
        async with browser() as http:
            await new_wechat(http, world.wecom_url, "张三的微信", P1)
            status, page = await post_page(http, world.wecom_url + "/follow")
            assert status == 200
            assert "关注成功" in page
            followed = await _state(world, "2021001", BindingState.FOLLOWED)
            assert followed.openid == world.wecom.openid_of("2021001")
            assert followed.phone == P1

            with pytest.raises(AccountFollowed):
                await _store(world).claim_phone("2021001", P2, lease=30, actor=STUDENT)

            status, page = await post_page(http, world.wecom_url + "/unfollow")
            assert status == 200
        await _state(world, "2021001", BindingState.BOUND)
        await _bind(world, "2021001", P2)
        binding = await _store(world).get_binding("2021001")
        assert binding is not None
        assert binding.phone == P2
        assert await _store(world).get_binding_by_phone(P1) is None
        # The welcome went out once, on the follow.
        assert [sent.touser for sent in world.wecom.messages] == [("2021001",)]


@pytest.mark.parametrize(
    ("wecom_options", "shown"), [(OLD_ASSISTANT, True), ({}, False)], ids=["assistant-before-2022-08-15", "today"]
)
async def test_console_changes_pushed_to_the_contacts_sync_server_move_and_free_phones(
    aiohttp_server: ServerFactory, store_url: str, wecom_options: dict[str, object], shown: bool
) -> None:
    members = [
        Member(userid="2021001", name="张三", department=[1], mobile=None),
        Member(userid="2021002", name="李四", department=[1], mobile=None),
    ]
    async with (
        running_world(aiohttp_server, store_url=store_url, members=members, contacts_sync=True,
                      wecom_options={**wecom_options, "departments": {1: "校", 2: "院"}}) as world,
        aiohttp.ClientSession() as http,
    ):
        await _bind(world, "2021001", P1)
        await _bind(world, "2021002", "13800000002")
        # An admin changes 张三's mobile in the console. An event server saved before 2022-08-15 hears
        # update_user naming the member only, and the service asks WeCom for the mobile, which an
        # assistant trusted then reads. Today's hears nothing of a mobile (document/path/90970: only a
        # department or a UserID changed is sent), so the binding stays as it is.
        async with http.post(world.wecom_url + "/_sandbox/console/members/2021001",
                             json={"mobile": "13800000011"}) as response:
            assert response.status == 200
        # And a move to another department, which both hear.
        async with http.post(world.wecom_url + "/_sandbox/console/members/2021001",
                             json={"department": [1, 2]}) as response:
            assert response.status == 200

        async def handled() -> bool | None:
            stats = await _store(world).inbox_stats()
            delivered = bool(world.wecom.pushes) and all(push.delivered for push in world.wecom.pushes)
            return True if delivered and stats.pending == stats.leased == 0 else None

        await eventually(handled)
        updates = [push for push in world.wecom.pushes if "update_user" in push.xml]
        assert len(updates) == (2 if shown else 1)
        binding = await _store(world).get_binding("2021001")
        assert binding is not None
        assert (binding.state, binding.phone) == (BindingState.BOUND, "13800000011" if shown else P1)
        assert (await _store(world).get_binding_by_phone(P1) is None) is shown
        # Before 2022-08-15 the first update_user carries the Mobile and the second is read; today the
        # one update_user is read by the assistant (48009), then by the app.
        assert world.wecom.calls.count("user/get") == (1 if shown else 2)
        # A read refused with 48009 is no configuration error: the assistant's writes work.
        async with http.get(world.service_url + "/ready") as response:
            assert (response.status, await response.json()) == (200, {"status": "ready", "store": "up", "wecom": "up"})
        async with http.delete(world.wecom_url + "/_sandbox/console/members/2021002") as response:
            assert response.status == 200

        async def deleted() -> bool | None:
            return True if await _store(world).get_binding("2021002") is None else None

        await eventually(deleted)  # a deletion needs no read
        assert await _store(world).get_binding_by_phone(Phone("13800000002")) is None
        contact_pushes = [push for push in world.wecom.pushes if push.event == "change_contact"]
        assert contact_pushes
        assert all(push.delivered for push in world.wecom.pushes)


async def test_ready_when_the_store_and_wecom_answer(aiohttp_server: ServerFactory, store_url: str) -> None:
    async with (
        running_world(aiohttp_server, store_url=store_url, members=[]) as world,
        aiohttp.ClientSession() as http,
        http.get(world.service_url + "/ready") as response,
    ):
        assert response.status == 200
        assert await response.json() == {"status": "ready", "store": "up", "wecom": "up"}


async def test_ready_names_a_configuration_error_and_asks_wecom_once_a_minute(
    aiohttp_server: ServerFactory, store_url: str
) -> None:
    wecom_app = wecom_sandbox(callback_url="http://127.0.0.1:9/wecom/callback", members=[])
    wecom_server = await aiohttp_server(wecom_app)
    settings = world_settings(
        wecom_api_base=str(wecom_server.make_url("")).rstrip("/"), store_url=store_url, app_secret="wrong-secret"
    )
    service = await aiohttp_server(create_app(settings))
    async with aiohttp.ClientSession() as http:
        bodies = []
        for _ in range(3):
            async with http.get(str(service.make_url("/ready"))) as response:
                assert response.status == 503
                bodies.append(await response.json())
    assert bodies[0]["store"] == "up"
    assert bodies[0]["wecom"].startswith("40001: the secret is wrong")
    assert "wrong-secret" not in str(bodies)
    assert bodies == [bodies[0]] * 3
    assert wecom_app[WECOM_SANDBOX_STATE].calls.count("gettoken") == 1
