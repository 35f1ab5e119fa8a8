"""The app's visible range set to everyone on an existing organisation: a burst of `subscribe`.

`python -m bench.visible_range [--members 30000] [--per-minute 10000] [--concurrency 32]` starts the
service (`wecom-bind serve`, its real settings, a SQLite store, 4 inbox workers) in a process of its
own and the WeCom emulator in this one, with an organisation of activated members: half follow the
WeChat plugin (convert_to_openid gives an openid), half joined through the WeCom app only (41054).
None bound through the service. Then WeCom's pushes are played: one encrypted, signed `subscribe`
per member (document/path/90376: "管理员添加成员到应用可见范围"), `--concurrency` at a time (WeCom's
own is not documented), each to be acknowledged within WeCom's 5 seconds.

It prints the acknowledgements' latency (p50, p99, max, and how many took 5 s or more), how long the
handling took (first push to an empty inbox), the peak inbox depth (pending and leased, polled
every 0.2 s), the dead letters and the welcomes (both must be 0), the calls of convert_to_openid the
emulator answered and the most of them in any 60 s (the budget's pacing: at most --per-minute), and
the calls any 60 s (WeCom counts per API and per organisation, document/path/90312).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from callback_service.store import open_store
from crypto import WeComCrypto
from sandbox.wecom import APP, CONTACTS, create_wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_state import STATUS_ACTIVE, Member, WeComSandboxState
from tests.support.callbacks import AES_KEY, CORP_ID, TOKEN, envelope, event_xml
from tests.support.processes import free_port, start_service, stop, wait_healthy
from tests.support.world import APP_SECRET, CONTACTS_SECRET, service_env

Push = tuple[dict[str, str], bytes]
ACK_LIMIT = 5.0
"""WeCom waits 5 s for an acknowledgement, then retries."""


def organisation(size: int) -> list[Member]:
    """Activated members, half of whom use the WeCom app only (no WeChat to convert)."""
    return [
        Member(userid=f"s{n:06d}", name="学生", department=[2], status=STATUS_ACTIVE,
               uses_wecom_app=n % 2 == 1)
        for n in range(size)
    ]


def _calls_log(times: list[float]) -> Middleware:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.endswith("/user/convert_to_openid"):
            times.append(time.monotonic())
        return await handler(request)

    return record


def most_in_a_minute(times: list[float]) -> int:
    """The most calls within any 60 s window."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + 60) - i for i, t in enumerate(ordered)), default=0)


async def run(members: int, per_minute: int, concurrency: int) -> int:
    convert_times: list[float] = []
    wecom = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
        agent_id=1000002,
        callback=None,
        departments={1: "校", 2: "学院"},
        members=organisation(members),
        visible_departments=[],
    )
    wecom.middlewares.append(_calls_log(convert_times))
    state: WeComSandboxState = wecom[WECOM_SANDBOX_STATE]
    for member in list(state.members.values()):
        if not member.uses_wecom_app:
            state.follow(member.userid, state.add_wechat("微信", f"139{int(member.userid[1:]):08d}"))
    state.visible_departments = None  # the administrator's change; its pushes are played below
    runner = web.AppRunner(wecom, access_log=None)
    await runner.setup()
    wecom_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", wecom_port).start()

    data = Path(tempfile.mkdtemp(prefix="bench-visible-"))
    store_url = f"sqlite:///{data / 'store.db'}"
    port = free_port()
    env = service_env(port, wecom_api_base=f"http://127.0.0.1:{wecom_port}", store_url=store_url)
    env["WECOM_BIND_WECOM_CALLS_PER_MINUTE"] = str(per_minute)
    env["WECOM_BIND_LOG_LEVEL"] = "WARNING"
    process = start_service(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    try:
        await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{port}", process)
        crypto = WeComCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=CORP_ID)
        now = int(time.time())
        pushes: list[Push] = []
        for member in state.members.values():
            encrypted = crypto.encrypt(event_xml("subscribe", member.userid, create_time=now).encode())
            nonce = f"{len(pushes):010d}"
            signature = crypto.sign(str(now), nonce, encrypted)
            query = {"msg_signature": signature, "timestamp": str(now), "nonce": nonce}
            pushes.append((query, envelope(encrypted)))
        store = await open_store(store_url)
        latencies: list[float] = []
        failures = 0
        peak = 0
        done = asyncio.Event()

        async def watch() -> None:
            nonlocal peak
            while not done.is_set():
                stats = await store.inbox_stats()
                peak = max(peak, stats.pending + stats.leased)
                await asyncio.sleep(0.2)

        url = f"http://127.0.0.1:{port}/wecom/callback"

        async def push(http: aiohttp.ClientSession, queue: asyncio.Queue[Push]) -> None:
            nonlocal failures
            while not queue.empty():
                query, body = queue.get_nowait()
                started = time.monotonic()
                async with http.post(url, params=query, data=body) as answer:
                    await answer.read()
                    if answer.status != 200:
                        failures += 1
                latencies.append(time.monotonic() - started)

        watcher = asyncio.create_task(watch())
        queue: asyncio.Queue[Push] = asyncio.Queue()
        for item in pushes:
            queue.put_nowait(item)
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=ACK_LIMIT * 2)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            await asyncio.gather(*(push(http, queue) for _ in range(concurrency)))
        pushed = time.monotonic() - started
        deadline = started + members * 60 / per_minute * 3 + 120
        while time.monotonic() < deadline:
            stats = await store.inbox_stats()
            peak = max(peak, stats.pending + stats.leased)
            if stats.pending == stats.leased == 0:
                break
            await asyncio.sleep(0.2)
        handled = time.monotonic() - started
        done.set()
        await watcher
        stats = await store.inbox_stats()
        joined = sum(1 for r in await store.list_members_seen() if r.status is not None and r.status == 1)
        followed = len([b for b in await store.list_bindings() if b.openid])
        await store.close()
    finally:
        stop(process)
        await runner.cleanup()
    ordered = sorted(latencies)
    late = sum(1 for x in ordered if x >= ACK_LIMIT)
    busiest = most_in_a_minute(convert_times)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    print(f"members {members}, budget {per_minute} calls/min per API, {concurrency} pushes at a time")
    print(f"acknowledged: {len(latencies) - failures}/{members} in {pushed:.1f} s; latency p50 "
          f"{statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms,"
          f" max {ordered[-1] * 1000:.1f} ms; {late} took {ACK_LIMIT:.0f} s or more")
    print(f"handled: all in {handled:.1f} s (first push to an empty inbox); peak inbox depth {peak}")
    print(f"dead letters {stats.dead}, welcomes {len(state.messages)}, recorded joined {joined},"
          f" follows {followed}")
    print(f"convert_to_openid: {len(convert_times)} calls, at most {busiest} in any 60 s"
          f" (budget {per_minute})")
    ok = (failures == 0 and stats.dead == 0 and not state.messages and joined == members
          and late == 0 and busiest <= per_minute)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    """Parse the arguments and run the scenario."""
    parser = argparse.ArgumentParser(prog="python -m bench.visible_range", description=__doc__)
    parser.add_argument("--members", type=int, default=30_000)
    parser.add_argument("--per-minute", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    return asyncio.run(run(args.members, args.per_minute, args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
