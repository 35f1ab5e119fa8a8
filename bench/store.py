"""Store throughput: claims per second and inbox appends per second, on SQLite and on Redis.

`python -m bench.store` runs each measurement for a few seconds with concurrent callers, on a
SQLite file (WAL, synchronous=FULL) in a temporary directory under data/, and on a redis-server of
its own on a free loopback port with AOF on, once with appendfsync everysec (the usual production
setting) and once with appendfsync always (acknowledged means on disk, as with SQLite). It prints
the machine's details first, so that figures from different machines are not compared blindly.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from callback_service.store import open_store
from handlers.core.binding import Actor
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from tests.store.support import RedisServer, redis_server_binary

ACTOR = Actor(who="bench", source="bench")


@dataclass(frozen=True)
class Result:
    """One backend's figures."""

    backend: str
    claims_per_second: float
    appends_per_second: float


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def filesystem_of(path: Path) -> str:
    """The filesystem type holding path (fsync cost depends on it)."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    except OSError:
        pass
    return kind


def redis_server_version(binary: str) -> str:
    """The redis-server version, as it reports itself."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    return out.split("v=")[1].split()[0] if "v=" in out else out.strip()


async def rate(op: Callable[[int], Awaitable[object]], *, seconds: float, concurrency: int) -> float:
    """Operations per second of op(n) with concurrency callers, for about seconds."""
    counter = itertools.count()
    done = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await op(next(counter))
            done += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def measure(name: str, store: Store, *, seconds: float, concurrency: int) -> Result:
    """Claims of distinct phones by distinct members, then inbox appends of distinct events."""
    run = f"{time.time_ns()}"

    async def claim(n: int) -> object:
        return await store.claim_phone(f"{run}-m{n}", Phone(f"13{n:09d}"), lease=60, actor=ACTOR)

    async def append(n: int) -> object:
        return await store.inbox_append(f"{run}-{n}", "subscribe", "<xml>" + "x" * 400 + "</xml>")

    claims = await rate(claim, seconds=seconds, concurrency=concurrency)
    appends = await rate(append, seconds=seconds, concurrency=concurrency)
    return Result(name, claims, appends)


async def measure_url(name: str, url: str, *, seconds: float, concurrency: int) -> Result:
    """Open the store at url, measure it, close it."""
    store = await open_store(url)
    try:
        return await measure(name, store, seconds=seconds, concurrency=concurrency)
    finally:
        await store.close()


def main(seconds: float, concurrency: int) -> None:
    """Run every measurement and print the table."""
    binary = redis_server_binary()
    data = Path("data")
    data.mkdir(exist_ok=True)
    print(f"cpu:        {cpu_model()}")
    print(f"cores:      {os.cpu_count()}")
    print(f"os:         {platform.platform()}")
    print(f"python:     {platform.python_version()} ({platform.python_implementation()})")
    print(f"sqlite:     {sqlite3.sqlite_version} (file on {filesystem_of(data)})")
    server_version = redis_server_version(binary) if binary else "not installed"
    print(f"redis:      server {server_version}, redis-py {redis.__version__}")
    print(f"load:       {concurrency} concurrent callers, {seconds:g} s per figure")
    print(flush=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(dir=data, prefix="bench-") as tmp:
        url = f"sqlite:///{Path(tmp).resolve()}/store.db"
        results.append(
            asyncio.run(measure_url("sqlite (WAL, FULL)", url, seconds=seconds, concurrency=concurrency))
        )
        for fsync in ("everysec", "always"):
            if binary is None:
                break
            directory = Path(tmp) / f"redis-{fsync}"
            directory.mkdir()
            server = RedisServer(binary, directory, aof=True, appendfsync=fsync)
            server.start()
            try:
                name = f"redis (AOF {fsync})"
                results.append(
                    asyncio.run(measure_url(name, server.url, seconds=seconds, concurrency=concurrency))
                )
            finally:
                server.kill()
    print(f"{'backend':<22} {'claims/s':>10} {'inbox appends/s':>16}")
    for result in results:
        print(f"{result.backend:<22} {result.claims_per_second:>10.0f} {result.appends_per_second:>16.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each figure")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent callers")
    args = parser.parse_args()
    main(args.seconds, args.concurrency)
