"""Callback throughput: wecom-bind's full acknowledgement path against a bare aiohttp handler.

`python -m bench.callbacks` starts three servers, one at a time, each in its own process on a
free loopback port, and drives each with the same pre-encrypted, distinct subscribe callbacks
from this process:

- bare: an aiohttp handler that answers `success` and does nothing else;
- wecom-bind: the real app (signature, timestamp window, decryption, XML parsing with entities off,
  and the durable inbox write to SQLite with synchronous=FULL), workers off so that only the
  acknowledgement is measured;
- wecom-bind-redis: the same on a redis-server of its own with AOF on (appendfsync everysec);
- wechatpy: a handler built on wechatpy's WeChatCrypto and parse_message, for reference.

It prints requests per second and the ratio to bare (DESIGN.md's target: 0.6 or more), with p50
and p99 latency. Bounded: a fixed number of requests per server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.store import cpu_model
from callback_service.web.app import create_app
from tests.store.support import RedisServer, redis_server_binary
from tests.support.callbacks import AES_KEY, CORP_ID, TOKEN, encrypt_callback, event_xml
from tests.support.processes import free_port, wait_healthy
from tests.support.world import world_settings

KINDS = ("bare", "wecom-bind", "wecom-bind-redis", "wechatpy")


@dataclass(frozen=True)
class Figures:
    """One server's throughput and latency."""

    kind: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def _bare_app() -> web.Application:
    async def success(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="success")

    app = web.Application()
    app.router.add_get("/health", success)
    app.router.add_post("/wecom/callback", success)
    return app


def _wechatpy_app() -> web.Application:
    from wechatpy.enterprise import parse_message
    from wechatpy.enterprise.crypto import WeChatCrypto

    crypto = WeChatCrypto(TOKEN, AES_KEY, CORP_ID)

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        query = request.query
        plaintext = crypto.decrypt_message(body, query["msg_signature"], query["timestamp"], query["nonce"])
        parse_message(plaintext)
        return web.Response(text="success")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/wecom/callback", receive)
    return app


def serve(kind: str, port: int, directory: Path, store_url: str) -> None:
    """Run one server in this process until it is terminated."""
    if kind == "bare":
        app = _bare_app()
    elif kind == "wechatpy":
        app = _wechatpy_app()
    else:
        settings = world_settings(
            port=port,
            wecom_api_base="http://127.0.0.1:9",
            store_url=store_url or f"sqlite:///{directory / 'bench.db'}",
        )
        app = create_app(settings, run_workers=False)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=lambda _: None)


async def _drive(base: str, requests: int, concurrency: int, offset: int) -> tuple[float, list[float]]:
    now = int(time.time())
    signed = [
        encrypt_callback(
            event_xml("subscribe", f"s{offset + n}", create_time=now), timestamp=now, nonce=str(n)
        )
        for n in range(requests)
    ]
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n)

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            started = time.perf_counter()
            async with http.post(base + "/wecom/callback", params=signed[n].query, data=signed[n].body) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}")
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def measure(kind: str, *, requests: int, concurrency: int, directory: Path, store_url: str = "") -> Figures:
    """Start the server of this kind in a child process, warm it up, and drive it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.callbacks", "--serve", kind, "--port", str(port),
         "--dir", str(directory), "--store-url", store_url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        asyncio.run(_drive(base, min(200, requests), concurrency, offset=10_000_000))  # warm-up
        seconds, latencies = asyncio.run(_drive(base, requests, concurrency, offset=0))
    finally:
        process.terminate()
        process.wait(timeout=10)
    latencies.sort()
    return Figures(
        kind=kind,
        requests=requests,
        seconds=seconds,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
    )


def main() -> int:
    """Measure each kind and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--store-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--kinds", default=",".join(KINDS),
        help="comma-separated servers to measure (bare is always measured: the ratios need it)",
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, Path(args.dir), args.store_url)
        return 0
    kinds = ["bare", *(kind for kind in KINDS[1:] if kind in args.kinds.split(","))]
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load: {args.requests} distinct subscribe callbacks, {args.concurrency} concurrent, loopback")
    Path("data").mkdir(exist_ok=True)
    results = []
    binary = redis_server_binary()
    if binary is None:
        print("redis-server is not installed: `make system-deps` installs it")
        return 1
    with tempfile.TemporaryDirectory(dir="data") as directory:
        redis = RedisServer(binary, Path(directory), aof=True, appendfsync="everysec")
        redis.start()
        try:
            for kind in kinds:
                store_url = f"{redis.url}?prefix=bench:" if kind == "wecom-bind-redis" else ""
                results.append(measure(kind, requests=args.requests, concurrency=args.concurrency,
                                       directory=Path(directory), store_url=store_url))
        finally:
            redis.kill()
    bare = results[0].per_second
    print(f"{'server':<17} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7}")
    for figures in results:
        print(
            f"{figures.kind:<17} {figures.per_second:>8.0f} {figures.per_second / bare:>6.2f}"
            f" {figures.p50_ms:>7.1f} {figures.p99_ms:>7.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
