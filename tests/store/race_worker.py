"""A separate process for the Redis race test: waits at a barrier, then races claims; prints JSON.

Run as `python -m tests.store.race_worker URL WORKER`. It claims the contested phone once for each
of its members, and for the shared member one phone of its own, all at once, then prints who won.
"""

from __future__ import annotations

import asyncio
import json
import sys

import redis.asyncio as aioredis

from callback_service.store import open_store
from handlers.core.binding import Actor, BindingError, Claim
from handlers.core.phone import Phone

CONTESTED = Phone("13900000000")
PER_WORKER = 50


async def main(url: str, worker: int) -> None:
    store = await open_store(url)
    barrier = aioredis.Redis.from_url(url.split("?")[0], decode_responses=True)
    prefix = url.split("prefix=")[1]
    actor = Actor(who=f"worker-{worker}", source="race")
    await barrier.rpush(f"{prefix}ready", str(worker))
    await barrier.blpop([f"{prefix}go:{worker}"], timeout=30)
    attempts = [
        store.claim_phone(f"w{worker}-m{n}", CONTESTED, lease=60, actor=actor) for n in range(PER_WORKER)
    ]
    attempts.append(store.claim_phone("shared", Phone(f"1391111{worker:04d}"), lease=60, actor=actor))
    results = await asyncio.gather(*attempts, return_exceptions=True)
    report: dict[str, list[str]] = {"won": [], "refused": [], "other": []}
    for result in results:
        if isinstance(result, Claim):
            report["won"].append(f"{result.member_id} {result.phone}")
        elif isinstance(result, BindingError):
            report["refused"].append(type(result).__name__)
        else:
            report["other"].append(repr(result))
    print(json.dumps(report), flush=True)
    await barrier.aclose()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
