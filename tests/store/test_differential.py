"""Both backends, fed the same random sequences of rule operations, answer and end up alike.

A seeded generator drives claims, commits, releases, follows, phones set from WeCom, deletes, renames and clock
moves over a few members and phones, so that collisions are frequent. After every step the two
stores must agree on the result and on every binding, and hold every invariant.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import astuple
from pathlib import Path

from callback_service.store import open_store
from handlers.core.binding import Actor, Binding, Claim
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from tests.store.support import FakeClock, RedisServer

MEMBERS = ("m1", "m2", "m3", "m4")
PHONES = ("13800000001", "13800000002", "13800000003", "13800000004")
OPENIDS = ("o1", "o2", "o3")
ACTOR = Actor(who="fuzz", source="test")
SEQUENCES = 12
STEPS = 60


def outcome(result: object) -> object:
    """What a step answered, comparable across backends (claim tokens differ by design)."""
    if isinstance(result, Claim):
        return ("claim", result.member_id, result.phone, result.previous_phone, result.already_bound)
    if isinstance(result, Binding):
        return astuple(result)
    if isinstance(result, BaseException):
        return type(result).__name__
    return result


class Twin:
    """One backend, its clock, and the last claim of each member."""

    def __init__(self, store: Store, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.claims: dict[str, Claim] = {}

    async def step(self, op: tuple[str, ...]) -> object:
        s = self.store
        kind, member, arg = op[0], op[1], op[2] if len(op) > 2 else ""
        try:
            if kind == "claim":
                claim = await s.claim_phone(member, Phone(arg), lease=60, actor=ACTOR)
                self.claims[member] = claim
                return claim
            if kind in ("commit", "release"):
                held = self.claims.get(member)
                if held is None:
                    return None
                if kind == "commit":
                    return await s.commit_claim(held)
                return await s.release_claim(held)
            if kind == "follow":
                return await s.follow(member, arg, actor=ACTOR)
            if kind == "unfollow":
                return await s.unfollow(member, actor=ACTOR)
            if kind == "set_phone":
                phone = Phone(arg) if arg else None
                return await s.set_member_phone(member, phone, take=op[3] == "take", actor=ACTOR)
            if kind == "delete":
                return await s.delete_member(member, actor=ACTOR)
            if kind == "rename":
                return await s.rename_member(member, arg, actor=ACTOR)
            if kind == "advance":
                self.clock.advance(float(arg))
                return None
        except Exception as exc:
            return exc
        raise AssertionError(kind)


def random_op(rng: random.Random) -> tuple[str, ...]:
    member = rng.choice(MEMBERS)
    kind = rng.choice(
        ["claim"] * 5
        + ["commit"] * 3
        + ["release", "follow", "follow", "unfollow", "set_phone", "delete", "rename", "advance"]
    )
    if kind == "claim":
        return (kind, member, rng.choice(PHONES))
    if kind == "follow":
        return (kind, member, rng.choice(OPENIDS))
    if kind == "set_phone":
        return (kind, member, rng.choice((*PHONES, "")), rng.choice(("take", "keep")))
    if kind == "rename":
        return (kind, member, rng.choice(MEMBERS))
    if kind == "advance":
        return (kind, member, rng.choice(("1", "30", "61")))
    return (kind, member)


async def test_sqlite_and_redis_agree(tmp_path: Path, redis_server: RedisServer) -> None:
    for seed in range(SEQUENCES):
        rng = random.Random(seed)
        clocks = FakeClock(), FakeClock()
        sqlite = await open_store(f"sqlite:///{tmp_path}/fuzz-{seed}.db", clock=clocks[0])
        redis = await open_store(f"{redis_server.url}?prefix=f{uuid.uuid4().hex[:8]}:", clock=clocks[1])
        twins = Twin(sqlite, clocks[0]), Twin(redis, clocks[1])
        try:
            for n in range(STEPS):
                op = random_op(rng)
                results = [outcome(await twin.step(op)) for twin in twins]
                where = f"seed {seed} step {n} {op}"
                assert results[0] == results[1], where
                listed = [await twin.store.list_bindings() for twin in twins]
                assert listed[0] == listed[1], where
                for twin in twins:
                    assert await twin.store.integrity_problems() == [], where
            audits = [
                [
                    (r.action, r.member_id, r.phone_masked, r.detail, r.at)
                    for r in await t.store.audit_list(limit=1000)
                ]
                for t in twins
            ]
            assert audits[0] == audits[1], f"seed {seed}"
        finally:
            for twin in twins:
                await twin.store.close()
