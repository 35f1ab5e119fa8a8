"""kill -9 in the middle of a stream of writes: every acknowledged write survives, none is half done.

The worker process prints each write once the store acknowledged it. On SQLite the worker is
killed; on Redis (AOF on, appendfsync always) the server is killed too, then restarted on its
own directory. The store is then reopened and checked against what was printed.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from callback_service.store import open_store
from handlers.core.binding import BindingState
from tests.store.support import RedisServer, require_redis_server

REPO = Path(__file__).resolve().parents[2]
WRITES_BEFORE_KILL = 90


class Worker:
    """The durability worker, with its acknowledged lines collected by a reader thread."""

    def __init__(self, url: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.store.durability_worker", url],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.endswith("\n"):  # a line cut short by the kill was never acknowledged
                self.lines.append(line.strip())

    def wait_for(self, count: int, timeout: float = 30) -> None:
        """Wait until the worker acknowledged count writes."""
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            assert self.process.poll() is None, "the worker died early"
            assert time.monotonic() < deadline, "the worker is too slow"
            time.sleep(0.005)
        time.sleep(random.uniform(0, 0.02))  # so the kill lands at a different step each run

    def kill(self) -> list[str]:
        """kill -9 the worker; return every line it acknowledged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return list(self.lines)


async def check(url: str, acknowledged: list[str]) -> None:
    """Every acknowledged write is in the store, and the store is consistent."""
    store = await open_store(url)
    try:
        assert await store.integrity_problems() == []
        items = await store.inbox_take(100_000, lease=60)
        keys = {item.dedup_key for item in items}
        inbox = [line.split()[1] for line in acknowledged if line.startswith("inbox ")]
        assert set(inbox) <= keys
        assert len(keys) <= len(inbox) + 1  # at most the one write in flight
        for line in acknowledged:
            kind, member, *rest = line.split()
            value = rest[0] if rest else ""
            if kind == "bind":
                binding = await store.get_binding(member)
                assert binding is not None, line
                assert binding.phone == value
                assert binding.state in (BindingState.BOUND, BindingState.FOLLOWED)
                assert await store.audit_list(member_id=member)
            elif kind == "follow":
                binding = await store.get_binding(member)
                assert binding is not None, line
                assert (binding.state, binding.openid) == (BindingState.FOLLOWED, value)
    finally:
        await store.close()


async def test_sqlite_survives_kill_9(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    worker = Worker(url)
    worker.wait_for(WRITES_BEFORE_KILL)
    acknowledged = worker.kill()
    assert len(acknowledged) >= WRITES_BEFORE_KILL
    await check(url, acknowledged)


async def test_redis_with_aof_survives_kill_9_of_server_and_worker(tmp_path: Path) -> None:
    server = RedisServer(require_redis_server(), tmp_path, aof=True)
    server.start()
    try:
        url = f"{server.url}?prefix=d{uuid.uuid4().hex[:8]}:"
        worker = Worker(url)
        worker.wait_for(WRITES_BEFORE_KILL)
        server.kill()
        acknowledged = worker.kill()
        assert len(acknowledged) >= WRITES_BEFORE_KILL
        server.start()
        await check(url, acknowledged)
    finally:
        server.kill()
