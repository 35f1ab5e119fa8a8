"""The callback handlers on a real SQLite store and the WeCom emulator over loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from callback_service.clients.wecom import WeComClient
from callback_service.metrics import Metrics
from handlers.core.binding import Actor, AuditAction, BindingState
from handlers.core.events import ChangeType, ContactChange, Subscribe, Unsubscribe
from handlers.core.member import MemberStatus
from handlers.core.phone import Phone
from handlers.usecases.callbacks import CallbackHandlers
from handlers.usecases.conflicts import CONFLICTS
from handlers.usecases.contacts import ContactsThenApp
from handlers.usecases.contracts import Store
from sandbox.wecom import create_wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_state import APP, CONTACTS, Member, WeComSandboxState
from tests.store.support import FakeClock
from tests.support.world import eventually

CORP_ID = "wwhandlers000000"
APP_SECRET = "app-secret"
CONTACTS_SECRET = "contacts-secret"
STUDENT = Actor(who="student", source="127.0.0.1")


@dataclass
class World:
    store: Store
    wecom: WeComSandboxState
    handlers: CallbackHandlers
    metrics: Metrics
    wecom_base: str
    app_client: WeComClient


@pytest.fixture
async def world(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]], memory_store: Store, clock: FakeClock
) -> AsyncIterator[World]:
    """The handlers over the in-memory store (the backends run the same contract) and the emulated WeCom."""
    sandbox = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
        agent_id=1000002,
        callback=None,
        members=[
            Member(userid="zhangsan", name="张三", department=[1], mobile="13800000001"),
            Member(userid="lisi", name="李四", department=[1], mobile="13800000002"),
        ],
    )
    server = await aiohttp_server(sandbox)
    store = memory_store
    metrics = Metrics()
    async with aiohttp.ClientSession() as session:
        client = WeComClient(
            session=session, api_base=str(server.make_url("")).rstrip("/"), corp_id=CORP_ID,
            secret=APP_SECRET, store=store, clock=clock,
        )
        contacts = WeComClient(
            session=session, api_base=str(server.make_url("")).rstrip("/"), corp_id=CORP_ID,
            contacts=True, secret=CONTACTS_SECRET, store=store, clock=clock,
        )
        # Wired as the app wires them: the mobile read with the contacts-sync secret where it may.
        handlers = CallbackHandlers(
            store=store, wecom=client, counters=metrics, agent_id=1000002,
            members=ContactsThenApp(contacts, client), clock=clock,
        )
        yield World(store=store, wecom=sandbox[WECOM_SANDBOX_STATE], handlers=handlers, metrics=metrics,
                    wecom_base=str(server.make_url("")).rstrip("/"), app_client=client)


def _event(kind: type[Subscribe] | type[Unsubscribe], user: str) -> Subscribe | Unsubscribe:
    return kind(corp_id=CORP_ID, member_id=user, create_time=1, agent_id="1000002", raw="<xml/>")


def _change(change_type: str, user: str, **fields: str) -> ContactChange:
    return ContactChange(
        corp_id=CORP_ID, member_id=user, create_time=1, agent_id=None, raw="<xml/>",
        change_type=ChangeType(change_type), **fields,  # type: ignore[arg-type]
    )


async def _bind(store: Store, member: str, phone: str) -> None:
    await store.commit_claim(await store.claim_phone(member, Phone(phone), lease=60, actor=STUDENT))


async def test_subscribe_follows_and_welcomes_once(world: World) -> None:
    await _bind(world.store, "zhangsan", "13800000001")
    world.wecom.follow("zhangsan", world.wecom.add_wechat("张三的微信", "13800000001"))
    dispatch = world.handlers.dispatcher().dispatch
    await dispatch(_event(Subscribe, "zhangsan"))
    await dispatch(_event(Subscribe, "zhangsan"))  # a retried event
    binding = await world.store.get_binding("zhangsan")
    assert binding is not None
    assert binding.state is BindingState.FOLLOWED
    assert binding.openid == world.wecom.openid_of("zhangsan")
    assert len(world.wecom.messages) == 1


async def test_a_member_welcomed_once_is_not_welcomed_again_after_an_unfollow(world: World) -> None:
    await _bind(world.store, "zhangsan", "13800000001")
    wechat = world.wecom.add_wechat("张三的微信", "13800000001")
    world.wecom.follow("zhangsan", wechat)
    dispatch = world.handlers.dispatcher().dispatch
    await dispatch(_event(Subscribe, "zhangsan"))
    world.wecom.unfollow(wechat)
    await dispatch(_event(Unsubscribe, "zhangsan"))
    world.wecom.follow("zhangsan", wechat)
    await dispatch(_event(Subscribe, "zhangsan"))
    assert len(world.wecom.messages) == 1


async def test_a_subscribe_of_a_member_who_never_bound_here_is_a_join_without_a_welcome(world: World) -> None:
    # The app's visible range now holds a member who followed the WeChat plugin before the service.
    world.wecom.follow("zhangsan", world.wecom.add_wechat("张三的微信", "13800000001"))
    await world.handlers.dispatcher().dispatch(_event(Subscribe, "zhangsan"))
    assert world.wecom.messages == []
    seen = await world.store.member_seen("zhangsan")
    assert seen is not None
    assert (seen.status, seen.source) == (MemberStatus.ACTIVATED, "subscribe")
    binding = await world.store.get_binding("zhangsan")
    assert binding is not None
    assert binding.openid == world.wecom.openid_of("zhangsan")  # I4 still kept


async def test_a_member_who_joined_through_the_wecom_app_only_is_recorded_not_failed(world: World) -> None:
    world.wecom.set_uses_wecom_app("lisi", True)  # activated, but no WeChat to convert (41054)
    await world.handlers.dispatcher().dispatch(_event(Subscribe, "lisi"))  # raises nothing
    seen = await world.store.member_seen("lisi")
    assert seen is not None
    assert seen.status is MemberStatus.ACTIVATED
    assert await world.store.get_binding("lisi") is None
    assert world.wecom.messages == []


async def test_a_bound_member_who_joined_through_the_wecom_app_gets_no_welcome_and_no_failure(world: World) -> None:
    await _bind(world.store, "lisi", "13800000002")
    world.wecom.set_uses_wecom_app("lisi", True)
    await world.handlers.dispatcher().dispatch(_event(Subscribe, "lisi"))
    binding = await world.store.get_binding("lisi")
    assert binding is not None
    assert binding.state is BindingState.BOUND  # no WeChat follows: nothing to record as a follow
    assert world.wecom.messages == []


async def test_unsubscribe_of_a_disabled_member_records_it_disabled_and_keeps_its_binding(world: World) -> None:
    await _bind(world.store, "zhangsan", "13800000001")
    await world.store.follow("zhangsan", "openid-z", actor=STUDENT)
    world.wecom.set_enabled("zhangsan", False)
    await world.handlers.dispatcher().dispatch(_event(Unsubscribe, "zhangsan"))
    seen = await world.store.member_seen("zhangsan")
    assert seen is not None
    assert (seen.status, seen.source) == (MemberStatus.DISABLED, "unsubscribe")
    binding = await world.store.get_binding("zhangsan")
    assert binding is not None
    assert binding.state is BindingState.FOLLOWED  # not free to rebind: WeCom disabled the member


async def test_a_second_member_for_one_openid_is_refused_and_counted(world: World) -> None:
    world.wecom.follow("zhangsan", world.wecom.add_wechat("张三的微信", "13800000001"))
    openid = world.wecom.openid_of("zhangsan")
    await world.store.follow("lisi", openid, actor=STUDENT)  # the store already gives it to lisi
    await world.handlers.dispatcher().dispatch(_event(Subscribe, "zhangsan"))
    assert world.metrics.value(CONFLICTS, rule="I4") == 1
    assert await world.store.get_binding("zhangsan") is None
    [record] = await world.store.audit_list(member_id="zhangsan")
    assert record.action is AuditAction.CONFLICT
    assert record.detail.startswith("I4: ")
    assert world.wecom.messages == []


async def test_unsubscribe_frees_the_member_to_bind_another_phone(world: World) -> None:
    await _bind(world.store, "zhangsan", "13800000001")
    await world.store.follow("zhangsan", "openid-z", actor=STUDENT)
    dispatch = world.handlers.dispatcher().dispatch
    await dispatch(_event(Unsubscribe, "zhangsan"))
    binding = await world.store.get_binding("zhangsan")
    assert binding is not None
    assert binding.state is BindingState.BOUND
    seen = await world.store.member_seen("zhangsan")
    assert seen is not None
    assert seen.status is MemberStatus.NOT_ACTIVATED
    await _bind(world.store, "zhangsan", "13800000009")  # 2.2's remedy: the rebind now succeeds


async def test_update_user_with_a_clashing_mobile_is_a_conflict(world: World) -> None:
    await _bind(world.store, "zhangsan", "13800000001")
    await _bind(world.store, "lisi", "13800000002")
    await world.handlers.dispatcher().dispatch(_change("update_user", "lisi", mobile="13800000001"))
    assert world.metrics.value(CONFLICTS, rule="I1") == 1
    [record, *_] = await world.store.audit_list(member_id="lisi")
    assert record.action is AuditAction.CONFLICT
    assert record.phone_masked == "138****0001"
    owner = await world.store.get_binding_by_phone(Phone("13800000001"))
    assert owner is not None
    assert owner.member_id == "zhangsan"


async def test_update_user_moves_the_phone_and_the_user_id(world: World) -> None:
    await _bind(world.store, "lisi", "13800000002")
    change = _change("update_user", "lisi", new_user_id="lisi2", mobile="+86 138 0000 0022")
    await world.handlers.dispatcher().dispatch(change)
    assert await world.store.get_binding("lisi") is None
    binding = await world.store.get_binding("lisi2")
    assert binding is not None
    assert binding.phone == "13800000022"
    assert await world.store.get_binding_by_phone(Phone("13800000002")) is None


async def test_update_user_with_one_full_width_digit_is_the_same_phone(world: World) -> None:
    await _bind(world.store, "zhangsan", "13800000001")
    await _bind(world.store, "lisi", "13800000002")
    await world.handlers.dispatcher().dispatch(_change("update_user", "lisi", mobile="13８00000001"))
    assert world.metrics.value(CONFLICTS, rule="I1") == 1
    lisi = await world.store.get_binding("lisi")
    assert lisi is not None
    assert lisi.phone == "13800000002"
    await world.handlers.dispatcher().dispatch(_change("update_user", "lisi", mobile="１３８００００００２２"))
    lisi = await world.store.get_binding("lisi")
    assert lisi is not None
    assert lisi.phone == "13800000022"


async def test_update_user_with_another_scripts_digits_is_refused(world: World) -> None:
    await _bind(world.store, "lisi", "13800000002")
    await world.handlers.dispatcher().dispatch(_change("update_user", "lisi", mobile="13800000٠٠1"))
    assert world.metrics.value(CONFLICTS, rule="phone") == 1
    lisi = await world.store.get_binding("lisi")
    assert lisi is not None
    assert lisi.phone == "13800000002"
    assert [b.phone for b in await world.store.list_bindings()] == ["13800000002"]


async def test_delete_user_frees_the_phone(world: World) -> None:
    await _bind(world.store, "lisi", "13800000002")
    await world.handlers.dispatcher().dispatch(_change("delete_user", "lisi"))
    assert await world.store.get_binding("lisi") is None
    seen = await world.store.member_seen("lisi")
    assert seen is not None
    assert (seen.status, seen.source) == (None, "change_contact")  # WeCom has no such member now
    await _bind(world.store, "zhangsan", "13800000002")


async def test_a_contacts_sync_update_user_with_only_a_user_id_fetches_the_mobile(world: World) -> None:
    world.wecom.contacts_reads_details = True  # an assistant trusted before 2022-08-15 reads the mobile
    await _bind(world.store, "lisi", "13800000002")
    # An administrator changed the mobile in the console; today's event names the member only.
    world.wecom.members["lisi"].mobile = "13800000022"
    await world.handlers.dispatcher().dispatch(_change("update_user", "lisi"))
    binding = await world.store.get_binding("lisi")
    assert binding is not None
    assert (binding.state, binding.phone) == (BindingState.BOUND, "13800000022")
    assert await world.store.get_binding_by_phone(Phone("13800000002")) is None


async def test_an_update_user_for_a_member_wecom_shows_unchanged_changes_nothing(world: World) -> None:
    world.wecom.contacts_reads_details = True  # an assistant trusted before 2022-08-15 shows the mobile
    await _bind(world.store, "lisi", "13800000002")
    before = await world.store.audit_list(member_id="lisi")
    await world.handlers.dispatcher().dispatch(_change("update_user", "lisi"))
    assert await world.store.audit_list(member_id="lisi") == before


async def test_an_update_user_leaves_a_claim_at_wecom_to_its_binding(world: World) -> None:
    await world.store.claim_phone("lisi", Phone("13800000029"), lease=60, actor=STUDENT)
    await world.handlers.dispatcher().dispatch(_change("update_user", "lisi"))
    assert "user/get" not in world.wecom.calls
    binding = await world.store.get_binding("lisi")
    assert binding is not None
    assert binding.state is BindingState.PENDING


async def test_an_update_user_of_a_member_gone_meanwhile_changes_nothing(world: World) -> None:
    await _bind(world.store, "lisi", "13800000002")
    world.wecom.delete_member("lisi")
    await world.handlers.dispatcher().dispatch(_change("update_user", "lisi"))
    binding = await world.store.get_binding("lisi")
    assert binding is not None
    assert binding.phone == "13800000002"


async def test_a_welcome_retried_after_a_lost_answer_greets_once(world: World) -> None:
    await _bind(world.store, "zhangsan", "13800000001")
    world.wecom.follow("zhangsan", world.wecom.add_wechat("张三的微信", "13800000001"))
    # WeCom delivers the welcome, but its answer comes after the client gave up: the client sends
    # it again, and WeCom's duplicate check drops the repeat.
    world.wecom.faults.delay(0.6, api="message/send")
    async with aiohttp.ClientSession() as session:
        impatient = WeComClient(
            session=session, api_base=world.wecom_base, corp_id=CORP_ID, secret=APP_SECRET,
            store=world.store, timeout=0.3, max_attempts=3, base_delay=0.5, max_delay=0.5, jitter=lambda: 1.0,
        )
        handlers = CallbackHandlers(store=world.store, wecom=impatient, counters=world.metrics, agent_id=1000002)
        await handlers.dispatcher().dispatch(_event(Subscribe, "zhangsan"))
    sends = world.wecom.calls.count("message/send")
    assert sends >= 2

    async def all_answered() -> bool | None:
        # The late first send may still be on its way when the retry has been answered.
        return True if len(world.wecom.messages) + len(world.wecom.duplicates) == sends else None

    await eventually(all_answered)
    assert [m.touser for m in world.wecom.messages] == [("zhangsan",)]
    assert len(world.wecom.duplicates) == sends - 1


@pytest.mark.parametrize("hidden_as_empty", [False, True], ids=["hidden-absent", "hidden-empty"])
async def test_an_update_user_whose_mobile_wecom_hides_changes_nothing(world: World, hidden_as_empty: bool) -> None:
    world.wecom.hidden_as_empty = hidden_as_empty
    await _bind(world.store, "lisi", "13800000002")
    world.wecom.members["lisi"].mobile = "13800000022"
    # Read with the app's secret, as an app created after 2022-06-20: the mobile is not shown.
    handlers = CallbackHandlers(
        store=world.store, wecom=world.app_client, counters=world.metrics, agent_id=1000002,
        members=world.app_client,
    )
    await handlers.dispatcher().dispatch(_change("update_user", "lisi"))
    binding = await world.store.get_binding("lisi")
    assert binding is not None
    assert binding.phone == "13800000002"


@pytest.mark.parametrize("hidden_as_empty", [False, True], ids=["hidden-absent", "hidden-empty"])
async def test_an_update_user_that_wecom_will_not_let_us_read_changes_nothing(
    world: World, hidden_as_empty: bool
) -> None:
    world.wecom.hidden_as_empty = hidden_as_empty
    await _bind(world.store, "lisi", "13800000002")
    world.wecom.members["lisi"].mobile = "13800000022"
    # Today's WeCom, the emulator's default: the assistant's address was trusted after 2022-08-15,
    # its user/get answers 48009, and the app's shows no mobile.
    assert not world.wecom.contacts_reads_details
    await world.handlers.dispatcher().dispatch(_change("update_user", "lisi"))
    binding = await world.store.get_binding("lisi")
    assert binding is not None
    assert binding.phone == "13800000002"


@dataclass(frozen=True)
class _Member:
    userid: str
    mobile: str | None
    mobile_shown: bool = True
    status: int = 1
    department: tuple[int, ...] = (1,)


class _ClaimWhileAsked:
    """WeCom's user/get, during which the binding flow claims a new phone for the member."""

    def __init__(self, store: Store, phone: Phone) -> None:
        self.store, self.phone = store, phone

    async def user_get(self, userid: str) -> _Member:
        self.claim = await self.store.claim_phone(userid, self.phone, lease=60, actor=STUDENT)
        return _Member(userid, "13800000002")  # WeCom's mobile as it was before the flow's write


async def test_a_claim_made_while_wecom_is_asked_is_left_to_its_binding(world: World, clock: FakeClock) -> None:
    await _bind(world.store, "lisi", "13800000002")
    members = _ClaimWhileAsked(world.store, Phone("13800000029"))
    handlers = CallbackHandlers(
        store=world.store, wecom=world.app_client, counters=world.metrics, agent_id=1000002,
        members=members, clock=clock,
    )
    await handlers.dispatcher().dispatch(_change("update_user", "lisi"))
    binding = await world.store.get_binding("lisi")
    assert binding is not None
    assert (binding.state, binding.phone) == (BindingState.PENDING, "13800000029")
    committed = await world.store.commit_claim(members.claim)
    assert (committed.state, committed.phone) == (BindingState.BOUND, "13800000029")
