"""The rules under concurrency: one winner per phone, one claim per member, across processes too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis

from callback_service.store import open_store
from handlers.core.binding import (
    AccountFollowed,
    Actor,
    BindingState,
    Claim,
    ClaimInProgress,
    ClaimLost,
    PhoneTaken,
)
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from tests.store.support import FakeClock, RedisServer

ACTOR = Actor(who="race", source="test")
PHONE = Phone("13800138000")
REPO = Path(__file__).resolve().parents[2]


def winners(results: list[Claim | BaseException]) -> list[Claim]:
    """The claims that succeeded; every other result must be a refusal by the rules."""
    won = [r for r in results if isinstance(r, Claim)]
    for r in results:
        assert isinstance(r, Claim | PhoneTaken | ClaimInProgress), r
    return won


async def test_200_claims_of_one_phone_have_one_winner(store: Store) -> None:
    results = await asyncio.gather(
        *(store.claim_phone(f"m{n}", PHONE, lease=60, actor=ACTOR) for n in range(200)),
        return_exceptions=True,
    )
    (won,) = winners(results)
    assert Counter(type(r).__name__ for r in results) == {"Claim": 1, "PhoneTaken": 199}
    holder = await store.get_binding_by_phone(PHONE)
    assert holder is not None
    assert holder.member_id == won.member_id
    assert len(await store.list_bindings()) == 1
    assert await store.integrity_problems() == []


async def test_200_claims_over_four_sqlite_connections(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    stores = [await open_store(url, clock=clock) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(stores[n % 4].claim_phone(f"m{n}", PHONE, lease=60, actor=ACTOR) for n in range(200)),
            return_exceptions=True,
        )
        assert len(winners(results)) == 1
        assert await stores[0].integrity_problems() == []
    finally:
        for store in stores:
            await store.close()


async def test_a_members_concurrent_claims_of_several_phones_leave_one(store: Store) -> None:
    for member in range(20):
        phones = [Phone(f"1380013{member:02d}{n:02d}") for n in range(10)]
        results = await asyncio.gather(
            *(store.claim_phone(f"m{member}", p, lease=60, actor=ACTOR) for p in phones),
            return_exceptions=True,
        )
        (won,) = winners(results)
        binding = await store.get_binding(f"m{member}")
        assert binding is not None
        assert binding.phone == won.phone
        for phone in phones:
            holder = await store.get_binding_by_phone(phone)
            assert (holder is not None) == (phone == won.phone)
    assert await store.integrity_problems() == []


async def test_claims_and_commits_interleaved_keep_one_phone_per_member(store: Store) -> None:
    async def rebind(member: str, phone: str) -> None:
        try:
            claim = await store.claim_phone(member, Phone(phone), lease=60, actor=ACTOR)
        except (PhoneTaken, ClaimInProgress):
            return
        await asyncio.sleep(0)
        # An already-bound claim loses when another claim of the member is pending meanwhile.
        with contextlib.suppress(ClaimLost):
            await store.commit_claim(claim)

    await asyncio.gather(
        *(rebind(f"m{n % 10}", f"138001380{n % 25:02d}") for n in range(200)),
    )
    phones = [b.phone for b in await store.list_bindings()]
    assert len(phones) == len(set(phones))
    assert await store.integrity_problems() == []


async def test_a_followed_member_is_refused_while_others_race(store: Store) -> None:
    await store.commit_claim(await store.claim_phone("m0", PHONE, lease=60, actor=ACTOR))
    await store.follow("m0", "openid-0", actor=ACTOR)
    results = await asyncio.gather(
        *(store.claim_phone("m0", Phone(f"1380013{n:04d}"), lease=60, actor=ACTOR) for n in range(1, 50)),
        return_exceptions=True,
    )
    assert all(isinstance(r, AccountFollowed) for r in results)
    binding = await store.get_binding("m0")
    assert binding is not None
    assert (binding.state, binding.phone) == (BindingState.FOLLOWED, PHONE)


async def test_an_expired_lease_is_free_again_for_exactly_one(store: Store, clock: FakeClock) -> None:
    stale = await store.claim_phone("m0", PHONE, lease=60, actor=ACTOR)
    clock.advance(60)
    results = await asyncio.gather(
        *(store.claim_phone(f"m{n}", PHONE, lease=60, actor=ACTOR) for n in range(1, 100)),
        store.commit_claim(stale),
        return_exceptions=True,
    )
    # The stale claim either commits first (then everybody else is refused) or is overtaken.
    claims = [r for r in results if isinstance(r, Claim)]
    committed = not isinstance(results[-1], BaseException)
    assert len(claims) == (0 if committed else 1)
    holder = await store.get_binding_by_phone(PHONE)
    assert holder is not None
    assert holder.member_id == ("m0" if committed else claims[0].member_id)
    assert await store.integrity_problems() == []


async def test_four_processes_on_one_redis(redis_server: RedisServer) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}:"
    url = f"{redis_server.url}?prefix={prefix}"
    workers = [
        subprocess.Popen(  # noqa: ASYNC220 - starting four processes; nothing to await meanwhile
            [sys.executable, "-m", "tests.store.race_worker", url, str(n)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        deadline = time.monotonic() + 30
        while await client.llen(f"{prefix}ready") < 4:
            assert time.monotonic() < deadline, "the workers did not start"
            assert all(w.poll() is None for w in workers)
            await asyncio.sleep(0.05)
        for n in range(4):
            await client.rpush(f"{prefix}go:{n}", "go")
        reports = []
        for worker in workers:
            out, _ = await asyncio.to_thread(worker.communicate, timeout=60)
            assert worker.returncode == 0
            reports.append(json.loads(out))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        await client.aclose()
    won = [w for report in reports for w in report["won"]]
    assert all(not report["other"] for report in reports)
    assert len([w for w in won if w.endswith("13900000000")]) == 1
    assert len([w for w in won if w.startswith("shared ")]) == 1
    assert len(won) == 2
    refused = Counter(r for report in reports for r in report["refused"])
    assert refused == {"PhoneTaken": 199, "ClaimInProgress": 3}
    store = await open_store(url)
    try:
        assert len(await store.list_bindings()) == 2
        assert await store.integrity_problems() == []
    finally:
        await store.close()
