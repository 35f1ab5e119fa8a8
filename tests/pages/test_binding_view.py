"""How /me and the phone page show a binding: a claim whose lease ran out shows what it leaves behind."""

from __future__ import annotations

from callback_service.web.pages.views import ViewState, _binding_view
from handlers.core.binding import Actor, Binding, BindingState
from handlers.core.phone import Phone
from tests.cas._support import FakeClock
from tests.pages.conftest import MakeEnv

NOW = 1_750_000_000.0
OLD, NEW = Phone("13800000001"), Phone("13800000002")


def _pending(previous: Phone | None, lease: float) -> Binding:
    return Binding("2021001", NEW, BindingState.PENDING, None, lease, previous, NOW - 10)


def test_a_live_claim_shows_pending_with_its_phone_masked() -> None:
    view = _binding_view(_pending(OLD, NOW + 60), NOW)
    assert view.state is ViewState.PENDING
    assert view.phone_masked == "138****0002"


def test_an_expired_claim_shows_the_phone_it_leaves_bound_or_none() -> None:
    kept = _binding_view(_pending(OLD, NOW - 1), NOW)
    assert kept.state is ViewState.BOUND
    assert kept.phone_masked == "138****0001"
    nothing = _binding_view(_pending(None, NOW - 1), NOW)
    assert nothing.state is ViewState.NONE
    assert nothing.phone_masked is None


def test_a_bound_binding_whose_stored_phone_could_not_be_read_shows_none() -> None:
    # The store reads a phone it cannot parse (old data) as no phone: nothing bound to show.
    unreadable = Binding("2021001", None, BindingState.BOUND, None, None, None, NOW - 10)
    assert _binding_view(unreadable, NOW).state is ViewState.NONE
    followed = Binding("2021001", None, BindingState.FOLLOWED, "o1", None, None, NOW - 10)
    assert _binding_view(followed, NOW).state is ViewState.FOLLOWED


# the same through the pages, on the store's own claim and the app's clock

STUDENT = Actor(who="2021001", source="test")


async def test_me_and_the_phone_page_show_the_phone_an_expired_claim_leaves_bound(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(clock=clock)
    assert "绑定成功" in await env.bind("2021001", "13800000001")
    await env.store.claim_phone("2021001", Phone("13800000011"), lease=60, actor=STUDENT)
    live = await (await env.client.get("/me")).text()
    assert "绑定处理中" in live
    assert "138****0011" in live
    clock.advance(61)
    me = await (await env.client.get("/me")).text()
    assert "已绑定，未关注" in me
    assert "138****0001" in me
    assert "138****0011" not in me
    form = await (await env.client.get("/bind/phone")).text()
    assert "您当前绑定的手机号为 138****0001" in form
    assert "请求正在处理中" not in form


async def test_me_shows_no_binding_once_a_first_claim_has_expired(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(clock=clock)
    assert (await env.login("2021003")).status == 302
    await env.store.claim_phone("2021003", Phone("13800000013"), lease=60, actor=STUDENT)
    assert "绑定处理中" in await (await env.client.get("/me")).text()
    clock.advance(61)
    me = await (await env.client.get("/me")).text()
    assert "未绑定" in me
    assert "138****0013" not in me
    form = await (await env.client.get("/bind/phone")).text()
    assert 'data-source="none"' in form


async def test_the_phone_page_of_a_member_followed_without_a_phone_names_no_phone(make_env: MakeEnv) -> None:
    # A follow the store heard of before any binding (a member who joined through WeCom itself).
    env = await make_env()
    assert (await env.login("2021003")).status == 302
    await env.store.follow("2021003", "o-2021003", actor=STUDENT)
    form = await (await env.client.get("/bind/phone")).text()
    assert "您已关注企业号" in form
    assert "None" not in form
