"""Two `wecom-bind serve` instances on one Redis (AOF on) behind Debian's nginx, one killed mid-run.

Students log in through the CAS emulator and bind through nginx, several of them racing for the
same phone; WeCom's callbacks arrive through nginx twice each (a retry), and one instance gets a
SIGKILL while all of it is under way. Afterwards the rules held (no phone bound twice), every
event was handled once, and nothing acknowledged was lost, Redis restarts included.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Final

import aiohttp
import pytest
from yarl import URL

from callback_service.store import open_store
from handlers.core.binding import BindingState, DirectoryEntry
from handlers.core.phone import Phone
from sandbox.cas import CasUser, create_cas_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_state import Member
from tests.cas._support import post_login, ticket_of
from tests.pages.support import PhoneForm
from tests.store.support import RedisServer, require_redis_server
from tests.support.callbacks import encrypt_callback, event_xml
from tests.support.nginx import Nginx, require_nginx
from tests.support.processes import free_port, start_service, stop, wait_healthy
from tests.support.world import ServerFactory, service_env, wecom_sandbox

pytestmark = pytest.mark.slow

PASSWORD: Final = "cluster-password"
# Students 2024001..2024016: the first eight race in pairs for four phones, the rest have their own.
STUDENTS: Final = [f"2024{n:03d}" for n in range(1, 17)]
PHONES: Final = {
    student: (f"1390000{n // 2:04d}" if n < 8 else f"1390001{n:04d}") for n, student in enumerate(STUDENTS)
}
# Members who already follow in WeCom: their subscribe callbacks come through nginx, twice each.
FOLLOWERS: Final = [f"2025{n:03d}" for n in range(1, 13)]
TRIES: Final = 3  # WeCom's retries; a student who meets a 502 tries again too


async def _bind(http: aiohttp.ClientSession, base: str, cas_login: URL, student: str) -> int:
    """Walk one student through CAS and the phone page; the last status (200: a result page)."""
    async with http.get(base + "/bind", allow_redirects=False) as started:
        if started.status != 302:
            return started.status
        service = URL(started.headers["Location"]).query["service"]
    response = await post_login(http, cas_login, username=student, password=PASSWORD, service=service)
    assert response.status == 302
    ticket_of(response.headers["Location"], service)
    async with http.get(response.headers["Location"], allow_redirects=False) as cas_back:
        if cas_back.status != 302:
            return cas_back.status
    async with http.get(base + "/bind/phone", allow_redirects=False) as page:
        if page.status != 200:
            return page.status
        form = PhoneForm.read(await page.text())
    data = {"csrf": form.csrf, "form_id": form.form_id, "phone": form.phone}
    async with http.post(base + "/bind/phone", data=data) as result:
        await result.read()
        return result.status


async def test_two_instances_behind_nginx_survive_a_sigkill(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    nginx_binary = require_nginx()
    redis = RedisServer(require_redis_server(), tmp_path / "redis", aof=True)
    redis.directory.mkdir()
    redis.start()
    nginx: Nginx | None = None
    processes: list[subprocess.Popen[str]] = []
    outputs: list[str] = []
    try:
        members = [Member(userid=s, name=f"学生{s}", department=[1]) for s in STUDENTS] + [
            Member(userid=f, name=f"成员{f}", department=[1], mobile=f"1370000{f[-4:]}") for f in FOLLOWERS
        ]
        wecom_app = wecom_sandbox(callback_url="http://127.0.0.1:9/unused", members=members)
        state = wecom_app[WECOM_SANDBOX_STATE]
        for follower in FOLLOWERS:
            state.follow(follower, state.add_wechat(f"{follower}的微信", f"1370000{follower[-4:]}"))
        wecom_server = await aiohttp_server(wecom_app)
        cas_server = await aiohttp_server(create_cas_sandbox(
            users={s: CasUser(member_id=s, password=PASSWORD, name=f"学生{s}") for s in STUDENTS}
        ))
        store_url = redis.url
        store = await open_store(store_url)
        try:
            await store.directory_upsert(
                [DirectoryEntry(s, f"学生{s}", "管理学院", Phone(PHONES[s])) for s in STUDENTS]
            )
        finally:
            await store.close()

        nginx_port = free_port()
        ports = [free_port(), free_port()]
        env = service_env(nginx_port, wecom_api_base=str(wecom_server.make_url("")).rstrip("/"),
                          store_url=store_url)
        env |= {
            "WECOM_BIND_CAS_BASE_URL": str(cas_server.make_url("")).rstrip("/"),
            "WECOM_BIND_INBOX_LEASE": "2",
            "WECOM_BIND_LOG_FORMAT": "json",
            # nginx, on loopback, is the trusted proxy: its X-Forwarded-For and X-Request-Id count.
            "WECOM_BIND_TRUSTED_PROXIES": "127.0.0.1,::1",
        }

        def launch() -> None:
            for port in ports:
                processes.append(start_service(["serve", "--host", "127.0.0.1", "--port", str(port)], env))
            for port, process in zip(ports, processes, strict=True):
                wait_healthy(f"http://127.0.0.1:{port}", process)

        await asyncio.to_thread(launch)
        nginx = Nginx(nginx_binary, tmp_path / "nginx", upstreams=ports, port=nginx_port)
        await asyncio.to_thread(nginx.start)
        base = nginx.url
        cas_login = cas_server.make_url("/login")

        done = 0
        total = len(STUDENTS) + 2 * len(FOLLOWERS)
        a_third_done = asyncio.Event()
        killed = asyncio.Event()

        def finished() -> None:
            nonlocal done
            done += 1
            if done >= total // 3:
                a_third_done.set()
        gate = asyncio.Semaphore(8)
        acknowledged: set[str] = set()
        results: dict[str, int] = {}

        async def student(name: str) -> None:
            async with gate:
                for _ in range(TRIES):
                    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                        results[name] = await _bind(http, base, cas_login, name)
                    if results[name] == 200:
                        break
            finished()

        now = int(time.time())
        signed = {f: encrypt_callback(event_xml("subscribe", f, create_time=now), timestamp=now)
                  for f in FOLLOWERS}

        async def callback(follower: str) -> None:
            async with gate, aiohttp.ClientSession() as http:
                for _ in range(TRIES):
                    message = signed[follower]
                    async with http.post(base + "/wecom/callback", params=message.query,
                                         data=message.body) as response:
                        if response.status == 200:
                            acknowledged.add(follower)
                            break
                    await asyncio.sleep(0.2)
            finished()

        async def killer() -> None:
            await a_third_done.wait()
            os.kill(processes[0].pid, signal.SIGKILL)
            killed.set()

        # Each callback is delivered twice, at once: a retry of WeCom's racing its first try.
        work = [student(s) for s in STUDENTS] + [callback(f) for f in FOLLOWERS for _ in range(2)]
        await asyncio.gather(killer(), *work)
        assert killed.is_set()
        assert set(acknowledged) == set(FOLLOWERS)

        store = await open_store(store_url)
        try:
            for _ in range(300):  # bounded: the survivor takes the dead one's leases after 2 s
                stats = await store.inbox_stats()
                if stats.pending == stats.leased == 0:
                    break
                await asyncio.sleep(0.1)
            assert (stats.pending, stats.leased, stats.dead) == (0, 0, 0)

            bindings = {binding.member_id: binding for binding in await store.list_bindings()}
            # I1: no phone held twice; the store is consistent with itself.
            held = [b.phone for b in bindings.values() if b.phone]
            assert len(held) == len(set(held))
            assert await store.integrity_problems() == []
            # Of each pair racing for a phone, one at most holds it; the students on their own all bound.
            for n in range(0, 8, 2):
                first, second = STUDENTS[n], STUDENTS[n + 1]
                holders = [s for s in (first, second) if s in bindings and bindings[s].phone == PHONES[s]]
                assert len(holders) <= 1
            for own in STUDENTS[8:]:
                if results.get(own) == 200:
                    assert bindings[own].phone == PHONES[own]
            # WeCom agrees: no mobile on two members.
            mobiles = [m.mobile for m in state.members.values() if m.mobile]
            assert len(mobiles) == len(set(mobiles))
            # Nothing acknowledged was lost: every follower is followed as its own openid.
            for follower in FOLLOWERS:
                assert bindings[follower].state is BindingState.FOLLOWED
                assert bindings[follower].openid == state.openid_of(follower)
            snapshot = {member: (b.phone, b.state, b.openid) for member, b in bindings.items()}
        finally:
            await store.close()

        # Redis with AOF: killed and restarted, it still holds every binding.
        redis.kill()
        redis.start()
        store = await open_store(store_url)
        try:
            again = {b.member_id: (b.phone, b.state, b.openid) for b in await store.list_bindings()}
        finally:
            await store.close()
        assert again == snapshot
    finally:
        if nginx is not None:
            nginx.stop()
        for process in processes:
            outputs.append(stop(process)[1])
        redis.kill()

    # Each event was handled once, across both instances (the killed one's log is kept in its file).
    handled: Counter[str] = Counter()
    for output in outputs:
        for line in output.splitlines():
            record = json.loads(line)
            if record.get("event") == "subscribe" and "handled" in record["message"]:
                handled[record["member"]] += 1
                # nginx's $request_id, carried from the callback's request to the worker's line.
                assert re.fullmatch(r"[0-9a-f]{32}", record["request_id"]), record
    assert handled == Counter(dict.fromkeys(FOLLOWERS, 1))
