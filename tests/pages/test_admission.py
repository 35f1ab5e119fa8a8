"""The admission page of second verification (二次验证), end to end over loopback HTTP.

The service runs beside the WeCom emulator, whose follow sends a verified WeChat to the service's
/wecom/admit with an OAuth code; the emulator completes the follow and pushes `subscribe` only
when the page calls user/authsucc. Every test runs on both store backends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from callback_service.web.keys import BINDING_FLOW, METRICS, STORE
from handlers.core.binding import Actor, AuditAction, Binding, BindingState
from handlers.core.phone import Phone
from handlers.usecases.binding_flow import Bound
from handlers.usecases.conflicts import CONFLICTS
from handlers.usecases.contracts import Store
from sandbox.wecom_state import Member
from tests.support.world import ServerFactory, World, eventually, running_world, store_url_for
from tests.wecom._support import browser, new_wechat

P1 = Phone("13800000001")
P2 = Phone("13800000002")
STUDENT = Actor(who="2021001", source="bind-page 127.0.0.1")


@pytest.fixture
async def world(aiohttp_server: ServerFactory, store_url: str) -> AsyncIterator[World]:
    """The service with second verification on (authsucc, the older API), and the emulator sending
    joining members to it."""
    async with running_world(
        aiohttp_server, store_url=store_url, members=_members(), second_verification=True,
        tfa_mode="authsucc",
    ) as running:
        yield running


def _members() -> list[Member]:
    return [
        Member(userid="2021001", name="张三", department=[1]),
        # An admin put 李四's mobile into WeCom by hand: 李四 never bound through our pages.
        Member(userid="2021002", name="李四", department=[1], mobile=P2),
    ]


def _store(world: World) -> Store:
    return world.service.app[STORE]


async def _bind(world: World, member: str, phone: str) -> None:
    """The guide's step 3, by the same rules the binding page runs."""
    result = await world.service.app[BINDING_FLOW].bind(member, Phone(phone), actor=STUDENT)
    assert isinstance(result, Bound), result


async def _follow(http: aiohttp.ClientSession, world: World, phone: str) -> str:
    """Follow as a new simulated WeChat with this phone (step 4); return where WeCom sends it."""
    await new_wechat(http, world.wecom_url, "微信", phone)
    async with http.post(world.wecom_url + "/follow", allow_redirects=False) as response:
        assert response.status == 302, await response.text()
        location = response.headers["Location"]
    assert location.startswith(world.service_url + "/wecom/admit?code=")
    assert phone not in location
    return location


async def _open(http: aiohttp.ClientSession, location: str) -> tuple[int, str]:
    async with http.get(location, allow_redirects=False) as response:
        return response.status, await response.text()


async def _followed(world: World, member: str) -> Binding:
    async def probe() -> Binding | None:
        binding = await _store(world).get_binding(member)
        return binding if binding is not None and binding.state is BindingState.FOLLOWED else None

    return await eventually(probe)


async def _quiet(world: World) -> None:
    """Wait until every push was delivered and the service's inbox has handled it."""

    async def probe() -> bool | None:
        if not all(push.delivered for push in world.wecom.pushes):
            return None
        stats = await _store(world).inbox_stats()
        return True if stats.pending == 0 and stats.leased == 0 else None

    await eventually(probe)


async def test_a_bound_student_is_admitted_and_followed(world: World) -> None:
    await _bind(world, "2021001", P1)
    async with browser() as http:
        location = await _follow(http, world, P1)
        # WeCom holds the follow until the service admits the member.
        assert world.wecom.follower("2021001") is None
        status, page = await _open(http, location)
    assert status == 200, page
    assert 'data-outcome="admitted"' in page
    assert "验证通过" in page
    assert "138****0001" in page
    assert P1 not in page
    assert world.wecom.authsucc == ["2021001"]
    follower = world.wecom.follower("2021001")
    assert follower is not None
    # authsucc completed the follow; its subscribe push reached the store through the inbox.
    binding = await _followed(world, "2021001")
    assert binding.openid == follower.openid
    assert binding.phone == P1
    assert not [r for r in await _store(world).audit_list() if r.action is AuditAction.CONFLICT]


@pytest.fixture
async def tfa_world(aiohttp_server: ServerFactory, store_url: str) -> AsyncIterator[World]:
    """The same, with the newer 二次验证 API: auth/get_tfa_info, then user/tfa_succ."""
    async with running_world(
        aiohttp_server, store_url=store_url, members=_members(), second_verification=True, tfa_mode="tfa"
    ) as running:
        yield running


async def test_the_tfa_flow_admits_a_bound_student_through_tfa_succ(tfa_world: World) -> None:
    world = tfa_world
    await _bind(world, "2021001", P1)
    async with browser() as http:
        location = await _follow(http, world, P1)
        status, page = await _open(http, location)
    assert status == 200, page
    assert 'data-outcome="admitted"' in page
    assert "auth/get_tfa_info" in world.wecom.calls
    assert "user/tfa_succ" in world.wecom.calls
    assert "user/authsucc" not in world.wecom.calls
    assert "auth/getuserinfo" not in world.wecom.calls
    follower = world.wecom.follower("2021001")
    assert follower is not None
    binding = await _followed(world, "2021001")
    assert binding.openid == follower.openid


async def test_the_tfa_flow_refuses_a_member_without_a_binding(tfa_world: World) -> None:
    world = tfa_world
    async with browser() as http:
        location = await _follow(http, world, P2)  # 李四: a mobile in WeCom, never bound here
        status, page = await _open(http, location)
        again, _ = await _open(http, location)
    assert status == 403
    assert 'data-outcome="admitted"' not in page
    assert "user/tfa_succ" not in world.wecom.calls
    assert world.wecom.follower("2021002") is None
    assert again == 400  # the code was used up by get_tfa_info


@pytest.mark.parametrize(
    ("errcode", "title", "status"),
    [(40208, "无需在此验证", 403), (40209, "验证页面配置有误", 502), (40210, "验证页面尚未配置", 502)],
)
async def test_the_tfa_flows_own_errcodes_say_what_happened(
    tfa_world: World, errcode: int, title: str, status: int
) -> None:
    world = tfa_world
    await _bind(world, "2021001", P1)
    async with browser() as http:
        location = await _follow(http, world, P1)
        world.wecom.faults.errcode(errcode, api="auth/get_tfa_info")
        answer, page = await _open(http, location)
    assert answer == status
    assert title in page
    assert "出错了" not in page
    assert "user/tfa_succ" not in world.wecom.calls


async def test_a_replayed_code_shows_the_link_spent_page(world: World) -> None:
    await _bind(world, "2021001", P1)
    async with browser() as http:
        location = await _follow(http, world, P1)
        first, _ = await _open(http, location)
        again, page = await _open(http, location)
    assert first == 200
    assert again == 400
    assert "链接已失效" in page
    assert 'data-outcome="admitted"' not in page
    assert world.wecom.authsucc == ["2021001"]


async def test_a_code_admits_once_even_if_wecom_resolved_it_again(world: World) -> None:
    await _bind(world, "2021001", P1)
    async with browser() as http:
        location = await _follow(http, world, P1)
        code = location.split("code=", 1)[1].split("&", 1)[0]
        grant = world.wecom.oauth_codes[code]
        assert (await _open(http, location))[0] == 200
        # A WeCom that forgot the code was used: the service remembers it.
        world.wecom.oauth_codes[code] = grant
        status, page = await _open(http, location)
    assert status == 400
    assert "链接已失效" in page
    assert world.wecom.authsucc == ["2021001"]


async def test_a_student_who_never_bound_is_refused(world: World) -> None:
    async with browser() as http:
        location = await _follow(http, world, P2)
        status, page = await _open(http, location)
    assert status == 403, page
    assert 'data-outcome="not_bound"' in page
    assert "尚未完成认证绑定" in page
    # The guide's 2.3 (not yet a member: steps 2 and 3 first), and the way to /bind.
    assert 'id="PHONE_NOT_IN_CONTACTS"' in page
    assert "步骤2和步骤3" in page
    assert 'href="/bind"' in page
    assert world.wecom.authsucc == []
    assert world.wecom.follower("2021002") is None
    assert await _store(world).get_binding("2021002") is None
    assert world.wecom.pushes == []


async def test_the_remedy_bind_first_then_follow_again_is_admitted(world: World) -> None:
    async with browser() as http:
        status, _ = await _open(http, await _follow(http, world, P2))
        assert status == 403
        await _bind(world, "2021002", P2)
        # The same WeChat scans the follow QR again.
        async with http.post(world.wecom_url + "/follow", allow_redirects=False) as response:
            assert response.status == 302
            location = response.headers["Location"]
        status, page = await _open(http, location)
    assert status == 200, page
    assert world.wecom.authsucc == ["2021002"]
    assert (await _followed(world, "2021002")).phone == P2


async def test_a_pending_claim_is_not_a_completed_binding(world: World) -> None:
    # 李四 submitted the form a moment ago: the phone is claimed, not yet bound.
    await _store(world).claim_phone("2021002", P2, lease=60, actor=STUDENT)
    async with browser() as http:
        status, page = await _open(http, await _follow(http, world, P2))
    assert status == 403, page
    assert 'data-outcome="not_bound"' in page
    assert world.wecom.authsucc == []


async def test_an_i4_conflict_is_refused_and_audited(world: World) -> None:
    await _bind(world, "2021001", P1)
    # The store holds 张三 as followed by another WeChat (WeCom's unfollow never reached us).
    await _store(world).follow("2021001", "o-another-wechat", actor=STUDENT)
    async with browser() as http:
        status, page = await _open(http, await _follow(http, world, P1))
    assert status == 403, page
    assert 'data-outcome="member_followed_by_other"' in page
    assert 'id="PHONE_VERIFIED_BY_OTHER"' in page
    assert "一对一关系" in page
    assert "取消关注" in page
    assert P1 not in page
    assert world.wecom.authsucc == []
    assert world.wecom.follower("2021001") is None
    conflicts = [
        r for r in await _store(world).audit_list(member_id="2021001") if r.action is AuditAction.CONFLICT
    ]
    assert len(conflicts) == 1
    assert conflicts[0].detail.startswith("I4: admission refused")
    assert conflicts[0].source.startswith("admission-page ")
    assert conflicts[0].phone_masked == "138****0001"
    assert world.service.app[METRICS].value(CONFLICTS, rule="I4") == 1
    binding = await _store(world).get_binding("2021001")
    assert binding is not None
    assert binding.openid == "o-another-wechat"


async def test_wecom_down_shows_503_and_the_link_still_works_after(world: World) -> None:
    await _bind(world, "2021001", P1)
    async with browser() as http:
        location = await _follow(http, world, P1)
        world.wecom.faults.status(503, count=20, api="auth/getuserinfo")
        status, page = await _open(http, location)
        assert status == 503, page
        assert "服务暂时不可用" in page
        assert world.wecom.authsucc == []
        # The code was never resolved: once WeCom is back, the same link admits.
        world.wecom.faults.clear()
        status, page = await _open(http, location)
    assert status == 200, page
    assert world.wecom.authsucc == ["2021001"]


async def test_authsucc_down_shows_503_and_admits_nobody(world: World) -> None:
    await _bind(world, "2021001", P1)
    async with browser() as http:
        location = await _follow(http, world, P1)
        world.wecom.faults.status(503, count=20, api="user/authsucc")
        status, page = await _open(http, location)
    assert status == 503, page
    assert world.wecom.authsucc == []
    assert world.wecom.follower("2021001") is None
    assert "subscribe" not in [push.event for push in world.wecom.pushes]
    binding = await _store(world).get_binding("2021001")
    assert binding is not None
    assert binding.state is BindingState.BOUND


async def test_a_store_outage_shows_503_and_admits_nobody(world: World) -> None:
    await _bind(world, "2021001", P1)
    async with browser() as http:
        location = await _follow(http, world, P1)
        # The binding's change_contact push is handled first: the outage is the page's alone.
        await _quiet(world)
        await _store(world).close()
        status, page = await _open(http, location)
    assert status == 503, page
    assert "服务暂时不可用" in page
    assert "StoreUnavailable" not in page
    assert world.wecom.authsucc == []


async def test_the_route_is_absent_without_second_verification(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    store_url = store_url_for("sqlite", tmp_path, None)
    async with running_world(aiohttp_server, store_url=store_url, members=_members()) as world:
        async with aiohttp.ClientSession() as http:
            status, _ = await _open(http, world.service_url + "/wecom/admit?code=abc&state=")
        assert status == 404
        assert world.wecom.calls == []


@pytest.mark.parametrize("query", ["", "?code=", "?code=a%20b", "?code=" + "x" * 513])
async def test_a_missing_or_malformed_code_never_reaches_wecom(world: World, query: str) -> None:
    async with aiohttp.ClientSession() as http:
        status, page = await _open(http, world.service_url + "/wecom/admit" + query)
    assert status == 400
    assert "链接已失效" in page
    assert world.wecom.calls == []
