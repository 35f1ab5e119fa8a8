"""What a session stores: its JSON round-trips, a session stored before the rename still loads, and
a login opens its session in one step with the login's own changes."""

from __future__ import annotations

import json

from aiohttp import web

from callback_service.web.pages.session import COOKIE, Session, SessionStore, sessions_of
from handlers.usecases.contracts import Store
from tests.store.support import FakeClock


def test_a_session_round_trips_through_its_json() -> None:
    session = Session(sid="s1", member_id="2021001", csrf="token", expires_at=100.0, draft_phone="13800000001")
    assert Session.from_json("s1", session.to_json()) == session


def test_a_session_stored_under_the_old_key_still_loads() -> None:
    stored = json.dumps({"student_id": "2021001", "csrf": "token", "expires_at": 100.0})
    loaded = Session.from_json("s1", stored)
    assert loaded is not None
    assert loaded.member_id == "2021001"


def test_a_value_that_is_no_session_is_refused() -> None:
    assert Session.from_json("s1", json.dumps({"csrf": "token"})) is None
    assert Session.from_json("s1", "not json") is None


async def test_a_login_opens_its_session_with_the_callers_changes_or_not_at_all(
    store: Store, clock: FakeClock
) -> None:
    sessions = SessionStore(kv=store, secret="s" * 40, secure=False, ttl=1800, clock=clock)
    first = web.Response()
    previous = await sessions.start(first, previous=None, member_id="2021001", name="张三", cas_mobile=None)
    assert previous is not None
    await store.kv_set("cas-login:n", "1", ttl=60)
    await store.kv_set("cas-ticket:spent", "1", ttl=60)
    # The ticket was marked spent meanwhile: nothing changes, and no cookie is sent.
    refused = web.Response()
    opened = await sessions.start(
        refused, previous=previous, member_id="2021001", name="张三", cas_mobile=None, ticket="ST-1",
        sets={"cas-ticket:spent": ("1", 60)}, deletes=["cas-login:n"], if_absent=["cas-ticket:spent"],
    )
    assert opened is None
    assert COOKIE not in refused.cookies
    assert await store.kv_get("cas-login:n") == "1"
    assert [s.csrf for s in await sessions_of(store, "2021001")] == [previous.csrf]
    # Once it is free, all of it happens at once: the previous session ends, the new one opens.
    await store.kv_delete("cas-ticket:spent")
    second = web.Response()
    opened = await sessions.start(
        second, previous=previous, member_id="2021001", name="张三", cas_mobile=None, ticket="ST-1",
        sets={"cas-ticket:spent": ("1", 60)}, deletes=["cas-login:n"], if_absent=["cas-ticket:spent"],
    )
    assert opened is not None
    assert COOKIE in second.cookies
    assert await store.kv_get_many(["cas-login:n", "cas-ticket:spent"]) == [None, "1"]
    assert [s.csrf for s in await sessions_of(store, "2021001")] == [opened.csrf]
    assert opened.former_csrf == previous.csrf
    assert await sessions.end_by_ticket("ST-1")
    assert await sessions_of(store, "2021001") == []
