"""WeCom's refusals as typed errors: configuration errors name their remedy, and /ready's probe
asks for a token at most once a minute while it fails."""

from __future__ import annotations

import pytest

from callback_service.clients.wecom import (
    ApiForbidden,
    AppUntrustedIp,
    ConfigurationError,
    ContactsUntrustedAddress,
    ContactsUntrustedIp,
    InvalidCorpId,
    InvalidSecret,
    OutsideVisibleRange,
    TokenProbe,
    WrongAgent,
)
from handlers.core.wecom_errors import error_for
from tests.store.support import FakeClock
from tests.wecom._support import APP_SECRET
from tests.wecom.conftest import ClientFactory, Sandbox, SandboxFactory


@pytest.mark.parametrize(
    ("errcode", "kind", "remedy"),
    [
        (40001, InvalidSecret, "WECOM_BIND_CONTACTS_SECRET"),
        (40013, InvalidCorpId, "WECOM_BIND_CORP_ID"),
        (48002, ApiForbidden, "通讯录同步"),
        (48009, ContactsUntrustedIp, "通讯录同步 → 企业可信IP"),
        (60020, ContactsUntrustedAddress, "管理工具 → 通讯录同步 → 企业可信IP (the contacts-sync assistant's own"),
        (60011, OutsideVisibleRange, "可见范围"),
        (301002, WrongAgent, "WECOM_BIND_AGENT_ID"),
    ],
)
async def test_configuration_errors_are_typed_and_name_their_remedy(
    sandbox: Sandbox, make_client: ClientFactory, errcode: int, kind: type[ConfigurationError], remedy: str
) -> None:
    client = make_client()
    await client.access_token()
    sandbox.faults.errcode(errcode, count=5, api="user/get")
    with pytest.raises(kind) as raised:
        await client.user_get("2021001")
    assert raised.value.errcode == errcode
    assert remedy in str(raised.value)
    assert sandbox.state.calls.count("user/get") == 1


async def test_60020_on_an_app_call_names_the_apps_trusted_ips(sandbox: Sandbox, make_client: ClientFactory) -> None:
    client = make_client(APP_SECRET)
    sandbox.faults.errcode(60020, count=5, api="user/get")
    with pytest.raises(AppUntrustedIp) as raised:
        await client.user_get("2021001")
    assert "应用管理 → the app → 企业可信IP" in str(raised.value)
    assert "通讯录同步" not in str(raised.value)


def test_an_untrusted_ip_names_the_address_wecom_saw() -> None:
    error = error_for(48009, "not allow to access from your ip, hint: [1], from ip: 203.0.113.7, more info")
    assert isinstance(error, ContactsUntrustedIp)
    assert "add 203.0.113.7 to 管理工具 → 通讯录同步 → 企业可信IP" in str(error)


async def test_readiness_asks_for_a_token_at_most_once_a_minute_while_it_fails(
    sandbox: Sandbox, make_client: ClientFactory, clock: FakeClock
) -> None:
    probe = TokenProbe(make_client("not-the-secret"), clock=clock)
    first = await probe.problem(within=2.0)
    assert first is not None
    assert first.startswith("40001: ")
    assert "not-the-secret" not in first
    clock.advance(30)
    assert await probe.problem(within=2.0) == first
    assert sandbox.state.calls.count("gettoken") == 1
    clock.advance(31)
    assert await probe.problem(within=2.0) == first
    assert sandbox.state.calls.count("gettoken") == 2


async def test_readiness_is_quiet_once_wecom_gives_a_token(
    sandbox: Sandbox, make_client: ClientFactory, clock: FakeClock
) -> None:
    probe = TokenProbe(make_client(), clock=clock)
    sandbox.faults.status(502, count=10, api="gettoken")
    assert await probe.problem(within=2.0) == "down"
    sandbox.faults.clear()
    clock.advance(61)
    assert await probe.problem(within=2.0) is None


async def test_readiness_shows_a_secret_whose_calls_wecom_refuses(
    start_sandbox: SandboxFactory, make_client: ClientFactory, clock: FakeClock
) -> None:
    # The contacts-sync secret from an address outside its 企业可信IP: its token comes, its calls do not.
    sandbox = await start_sandbox(contacts_trusted_ips=["203.0.113.0/24"])
    contacts = make_client(api_base=sandbox.base)
    probe = TokenProbe(make_client(APP_SECRET, api_base=sandbox.base), clock=clock, watched=(contacts,))
    assert await probe.problem(within=2.0) is None
    with pytest.raises(ContactsUntrustedAddress):
        await contacts.user_update("2021002", name="改")
    problem = await probe.problem(within=2.0)
    assert problem is not None
    # 60020 on the contacts-sync secret's call names the assistant's own list, not the app's.
    assert problem.startswith("60020: add 127.0.0.1 to 管理工具 → 通讯录同步 → 企业可信IP")
    clock.advance(61)  # not seen again within a minute: forgotten until the next refused call
    assert await probe.problem(within=2.0) is None


async def test_a_contacts_address_that_writes_but_may_not_read_does_not_make_the_service_unready(
    sandbox: Sandbox, make_client: ClientFactory, clock: FakeClock
) -> None:
    # Today's WeCom: an address trusted after 2022-08-15 gets 48009 from user/get while its writes
    # work (developer.work.weixin.qq.com/document/path/90196); the service then reads with the app's.
    contacts = make_client()
    probe = TokenProbe(make_client(APP_SECRET), clock=clock, watched=(contacts,))
    with pytest.raises(ContactsUntrustedIp):
        await contacts.user_get("2021001")
    assert await probe.problem(within=2.0) is None
    await contacts.user_update("2021002", name="改")
    assert sandbox.state.members["2021002"].name == "改"
    assert await probe.problem(within=2.0) is None


async def test_one_member_outside_the_visible_range_does_not_make_the_service_unready(
    sandbox: Sandbox, make_client: ClientFactory, clock: FakeClock
) -> None:
    client = make_client()
    probe = TokenProbe(client, clock=clock)
    sandbox.faults.errcode(60011, api="user/get")
    with pytest.raises(OutsideVisibleRange):
        await client.user_get("2021001")
    assert await probe.problem(within=2.0) is None
