"""`wecom-bind serve --processes 2`: two workers on one port take callbacks, and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from callback_service.ops.processes import run_processes
from callback_service.store import open_store
from tests.support.callbacks import encrypt_callback, event_xml
from tests.support.processes import free_port, start_service, stop, wait_healthy
from tests.support.world import eventually, service_env

EVENTS = 40


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


async def test_two_processes_share_the_port_handle_every_callback_and_stop_on_sigterm(store_url: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_service(["serve", "--host", "127.0.0.1", "--port", str(port), "--processes", "2"],
                            service_env(port, store_url=store_url))
    try:
        await asyncio.to_thread(wait_healthy, base, process)

        async def both_started() -> list[int] | None:
            workers = _children(process.pid)
            return workers if len(workers) == 2 else None

        workers = await eventually(both_started)
        now = int(time.time())
        # A new connection per request, so that the kernel spreads them over both workers.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for n in range(EVENTS):
                signed = encrypt_callback(event_xml("enter_agent", f"m{n}", create_time=now),
                                          timestamp=now, nonce=str(n))
                async with http.post(base + "/wecom/callback", params=signed.query, data=signed.body) as r:
                    assert r.status == 200
        assert all(_alive(pid) for pid in workers)  # neither worker failed to bind the shared port

        store = await open_store(store_url)
        try:
            async def drained() -> bool | None:
                stats = await store.inbox_stats()
                return True if stats.pending == stats.leased == stats.dead == 0 else None

            await eventually(drained, within=20)
        finally:
            await store.close()

        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
        assert not any(_alive(pid) for pid in workers)
    finally:
        stdout, stderr = stop(process)
    assert stdout == ""  # aiohttp's banner is a log line on stderr
    assert stderr.count("serving on http://127.0.0.1:") == 2  # both workers bound the one port
    handled = [line for line in stderr.splitlines() if "handled: enter_agent for member" in line]
    assert len(handled) == EVENTS
    assert "Traceback" not in stderr


def test_a_worker_that_dies_stops_the_others() -> None:
    def make_app() -> web.Application:
        raise SystemExit(3)  # a worker that cannot start, as when its store is refused

    assert run_processes(make_app, host="127.0.0.1", port=free_port(), processes=2) == 1


@pytest.mark.parametrize("processes", [0, -1])
def test_processes_must_be_positive(processes: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callback_service", "serve", "--processes", str(processes)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "--processes" in result.stderr
