"""A process that streams inbox appends and bindings, printing each write once it is acknowledged.

Run as `python -m tests.store.durability_worker URL`; the durability test kills it (and, for
Redis, the server) with SIGKILL mid-stream, then checks that every printed write survived.
"""

from __future__ import annotations

import asyncio
import sys

from callback_service.store import open_store
from handlers.core.binding import Actor
from handlers.core.phone import Phone
from handlers.usecases.contracts import StoreUnavailable

ACTOR = Actor(who="durability", source="test")


async def main(url: str) -> None:
    store = await open_store(url)
    n = 0
    try:
        while True:
            await store.inbox_append(f"ev-{n}", "subscribe", f"<xml><n>{n}</n></xml>")
            print(f"inbox ev-{n}", flush=True)
            phone = Phone(f"1370000{n:04d}")
            claim = await store.claim_phone(f"m{n}", phone, lease=60, actor=ACTOR)
            await store.commit_claim(claim)
            print(f"bind m{n} {phone}", flush=True)
            if n % 3 == 0:
                await store.follow(f"m{n}", f"openid-{n}", actor=ACTOR)
                print(f"follow m{n} openid-{n}", flush=True)
            n += 1
    except StoreUnavailable:
        sys.exit(3)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
