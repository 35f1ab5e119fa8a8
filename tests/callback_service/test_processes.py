"""`wecom-bind serve --processes 2`: two workers on one port take callbacks, and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
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


def _port_free(port: int) -> bool:
    """Nothing listens on the port and it can be bound again (without SO_REUSEPORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if probe.connect_ex(("127.0.0.1", port)) != errno.ECONNREFUSED:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a listener
        try:
            listener.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_workers_end_when_the_parent_is_killed(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    process = start_service(["serve", "--host", "127.0.0.1", "--port", str(port), "--processes", "2"],
                            service_env(port, store_url=store_url))
    workers: list[int] = []
    try:
        await asyncio.to_thread(wait_healthy, base, process)

        async def both_started() -> list[int] | None:
            found = _children(process.pid)
            return found if len(found) == 2 else None

        workers = await eventually(both_started)
        process.send_signal(signal.SIGKILL)  # no word to the workers: they must notice on their own
        process.wait(10)

        async def workers_gone() -> bool | None:
            return True if not any(_alive(pid) for pid in workers) else None

        await eventually(workers_gone, within=10)
        assert await eventually(lambda: asyncio.to_thread(lambda: _port_free(port) or None), within=10)
    finally:
        for pid in workers:  # what the test started ends with it, whatever happened above
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        stop(process)


_WATCHED_CHILD = """
import os, sys, threading, time
from callback_service.ops import processes

parent = os.getpid()
child = os.fork()
if child == 0:
    # The portable watch alone, as where prctl is missing: it must send the SIGTERM itself.
    threading.Thread(target=processes._parent_gone, args=(parent, False), daemon=True).start()
    while True:
        time.sleep(1)
print(child, flush=True)
time.sleep(60)
"""


def test_without_prctl_the_watch_on_the_parent_ends_the_worker() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _WATCHED_CHILD], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
        parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()


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
