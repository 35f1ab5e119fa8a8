"""The access token: cached in the shared store, refreshed once, recovered on 40014/42001, 40001 at once.

Members are read with the app's secret, as the service reads them: today's contacts-sync assistant
may not read members (48009, developer.work.weixin.qq.com/document/path/90196).
"""

from __future__ import annotations

import asyncio

import pytest

from callback_service.clients.wecom import InvalidSecret, WeComError
from handlers.usecases.contracts import Store
from tests.store.support import FakeClock
from tests.wecom._support import APP_SECRET, CONTACTS_SECRET
from tests.wecom.conftest import ClientFactory, Sandbox


def gettokens(sandbox: Sandbox) -> int:
    return sandbox.state.calls.count("gettoken")


async def test_one_gettoken_serves_many_calls(sandbox: Sandbox, make_client: ClientFactory) -> None:
    client = make_client(APP_SECRET)
    for _ in range(5):
        member = await client.user_get("2021001")
        assert member.name == "张三"
    assert gettokens(sandbox) == 1


async def test_concurrent_calls_fetch_the_token_once(sandbox: Sandbox, make_client: ClientFactory) -> None:
    client = make_client(APP_SECRET)
    await asyncio.gather(*(client.user_get("2021001") for _ in range(10)))
    assert gettokens(sandbox) == 1


async def test_two_instances_on_one_store_fetch_once(sandbox: Sandbox, make_client: ClientFactory) -> None:
    first, second = make_client(APP_SECRET), make_client(APP_SECRET)
    await asyncio.gather(
        *(first.user_get("2021001") for _ in range(5)), *(second.user_get("2021002") for _ in range(5))
    )
    assert gettokens(sandbox) == 1


async def test_a_token_held_is_not_read_from_the_store_at_every_call(
    sandbox: Sandbox, make_client: ClientFactory, sqlite_store: Store
) -> None:
    client = make_client(APP_SECRET)
    await client.user_get("2021001")
    token = await client.access_token()
    # Gone from the store behind the client's back: the client still holds it until its refresh time.
    await sqlite_store.kv_delete(client.cache_key)
    for _ in range(3):
        await client.user_get("2021001")
    assert await client.access_token() == token
    assert gettokens(sandbox) == 1
    assert await sqlite_store.kv_get(client.cache_key) is None


async def test_a_held_token_that_another_instance_replaced_is_given_up_for_the_stores(
    sandbox: Sandbox, make_client: ClientFactory
) -> None:
    first, second = make_client(APP_SECRET), make_client(APP_SECRET)
    await first.user_get("2021001")
    old = await first.access_token()
    sandbox.state.revoke_tokens()
    await second.user_get("2021001")  # 40014: dropped, fetched again, stored
    new = await second.access_token()
    assert new != old
    # The first still holds the revoked token: WeCom refuses it once, and the store's new one serves.
    await first.user_get("2021002")
    assert await first.access_token() == new
    assert gettokens(sandbox) == 2
    assert sandbox.state.calls.count("user/get") == 5


async def test_instances_share_the_token_on_either_backend(
    sandbox: Sandbox, make_client: ClientFactory, store: Store
) -> None:
    clients = [make_client(APP_SECRET, store=store) for _ in range(3)]
    await asyncio.gather(*(c.user_get("2021001") for c in clients for _ in range(3)))
    assert gettokens(sandbox) == 1
    assert len({await c.access_token() for c in clients}) == 1


async def test_each_secret_has_its_own_token(
    sandbox: Sandbox, make_client: ClientFactory, sqlite_store: Store
) -> None:
    app, contacts = make_client(APP_SECRET), make_client(CONTACTS_SECRET)
    assert app.cache_key != contacts.cache_key
    await app.user_get("2021001")
    assert [row async for row in contacts.user_list_id()]  # a read the assistant may still make
    assert gettokens(sandbox) == 2
    for client, secret in ((app, APP_SECRET), (contacts, CONTACTS_SECRET)):
        assert secret not in client.cache_key
        assert secret not in repr(client)
        cached = await sqlite_store.kv_get(client.cache_key)
        assert cached is not None
        assert secret not in cached


async def test_token_expiry_in_the_middle_of_a_run(
    make_client: ClientFactory, clock: FakeClock, sandbox: Sandbox
) -> None:
    # The default sandbox lives 7200 s; this one's tokens live 10 s.
    sandbox.state.token_ttl = 10
    client = make_client(APP_SECRET, refresh_margin=2)
    await client.user_get("2021001")
    first = await client.access_token()
    clock.advance(5)
    await client.user_get("2021001")
    assert await client.access_token() == first
    assert gettokens(sandbox) == 1
    # Inside the refresh margin: refreshed before it expires; WeCom hands back the same live token.
    clock.advance(4)
    await client.user_get("2021001")
    assert gettokens(sandbox) == 2
    assert await client.access_token() == first
    # Past expiry: a new token, and the calls carry on without an error.
    clock.advance(2)
    for _ in range(3):
        await client.user_get("2021002")
    assert await client.access_token() != first
    assert gettokens(sandbox) == 3
    assert sandbox.state.calls.count("user/get") == 6


async def test_expired_token_42001_is_dropped_and_the_call_retried(
    sandbox: Sandbox, make_client: ClientFactory
) -> None:
    client = make_client(APP_SECRET)
    await client.user_get("2021001")
    # WeCom's clock runs ahead of ours: it says the token we still trust has expired.
    sandbox.state.clock = lambda: 1_800_000_000.0
    member = await client.user_get("2021002")
    assert member.userid == "2021002"
    assert gettokens(sandbox) == 2
    assert sandbox.state.calls.count("user/get") == 3


async def test_revoked_token_40014_is_dropped_and_the_call_retried(
    sandbox: Sandbox, make_client: ClientFactory
) -> None:
    client = make_client(APP_SECRET)
    await client.user_get("2021001")
    old = await client.access_token()
    sandbox.state.revoke_tokens()
    await client.user_get("2021001")
    assert await client.access_token() != old
    assert gettokens(sandbox) == 2


async def test_token_errors_are_retried_once_only(sandbox: Sandbox, make_client: ClientFactory) -> None:
    client = make_client(APP_SECRET)
    await client.user_get("2021001")
    sandbox.faults.errcode(40014, count=5, api="user/get")
    with pytest.raises(WeComError) as raised:
        await client.user_get("2021001")
    assert raised.value.errcode == 40014
    assert sandbox.state.calls.count("user/get") == 3


async def test_wrong_secret_fails_at_once(sandbox: Sandbox, make_client: ClientFactory) -> None:
    client = make_client("not-the-secret")
    with pytest.raises(InvalidSecret) as raised:
        await client.user_get("2021001")
    assert raised.value.errcode == 40001
    assert gettokens(sandbox) == 1
    assert "not-the-secret" not in str(raised.value)
