"""Callback throughput: wecom-bind's full acknowledgement path against a bare aiohttp handler.

`python -m bench.callbacks` starts each server in a process of its own on a free loopback port, one
at a time, and drives it for a few seconds with wrk (Debian's `wrk`, when installed; else with a
Python generator of its own, which saturates before a fast server does) at 32 and at 128
connections. Every request is a distinct enter_agent event, encrypted and signed beforehand with the
test keys (bench/callbacks.lua walks the file of them), so that no two events share a dedup key:

- bare: an aiohttp handler that answers `success` and does nothing else;
- wechatpy: wechatpy's WeChatCrypto and parse_message, with no store, for reference;
- wecom-bind: the real app (signature, timestamp window, decryption, XML parsing with entities off,
  and the durable inbox write to SQLite with synchronous=FULL), workers off so that only the
  acknowledgement is measured;
- wecom-bind-redis: the same on a redis-server of its own with AOF on (appendfsync everysec).

Each (server, connections) run gets a fresh server and a fresh store. It prints requests per second,
the ratio to bare in the same run (DESIGN.md's target: 0.6 or more), p50 and p99 latency, the
server's peak RSS (VmHWM, summed over its processes), the errors (any answer but 200 counts), and
the server's CPU per request with its ratio to bare's: on a machine shared with other work the
requests per second move with the neighbours' load, the CPU per request much less.
Then the scaling of `serve --processes N` from 1 to the machine's cores. `--rounds N` measures
the servers in turn N times and prints each one's median too: on a shared machine a single round
moves with the neighbours.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.binding import tree_cpu_seconds, tree_memory_kib
from bench.store import cpu_model
from callback_service.ops.processes import run_app, run_processes
from callback_service.web.app import create_app
from crypto import WeComCrypto
from testkit.callbacks import AES_KEY, CORP_ID, TOKEN, envelope, event_xml
from testkit.processes import free_port, wait_healthy
from testkit.redis import RedisServer, redis_server_binary
from testkit.settings import world_settings

KINDS = ("bare", "wechatpy", "wecom-bind", "wecom-bind-redis")
LUA = Path(__file__).with_name("callbacks.lua")
_WRK_RESULT = re.compile(r"WRK_RESULT (.*)")


@dataclass(frozen=True)
class Figures:
    """One server's throughput and latency in one run."""

    kind: str
    connections: int
    processes: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    peak_rss_mib: float
    cpu_seconds: float
    """The server's CPU time (all its processes) during the measured run."""

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float:
        """The server's CPU per request, in microseconds: what the ratio would be on a quiet core."""
        return self.cpu_seconds / max(1, self.requests) * 1e6


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


def serve(kind: str, port: int, store_url: str, processes: int) -> None:
    """Run one server (of `processes` processes) until it is terminated."""

    def make_app() -> web.Application:
        if kind == "bare":
            return _bare_app()
        if kind == "wechatpy":
            return _wechatpy_app()
        settings = world_settings(port=port, wecom_api_base="http://127.0.0.1:9", store_url=store_url)
        return create_app(settings, run_workers=False)

    if processes == 1 and os.environ.get("PROFILE"):
        import cProfile
        with cProfile.Profile() as profile:
            run_app(make_app(), host="127.0.0.1", port=port, access_log=False)
        profile.dump_stats(os.environ["PROFILE"])
    elif processes == 1:
        run_app(make_app(), host="127.0.0.1", port=port, access_log=False)
    else:
        run_processes(make_app, host="127.0.0.1", port=port, processes=processes, access_log=False)


def write_requests(path: Path, count: int, *, tag: str) -> None:
    """Write count distinct, encrypted and signed enter_agent callbacks, one `query<TAB>body` a line."""
    crypto = WeComCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=CORP_ID)
    now = int(time.time())
    timestamp = str(now)
    with path.open("w", encoding="ascii") as out:
        for n in range(count):
            message = event_xml("enter_agent", f"{tag}{n}", create_time=now,
                                extra="<EventKey><![CDATA[]]></EventKey>")
            encrypted = crypto.encrypt(message.encode("utf-8"))
            nonce = str(n)
            signature = crypto.sign(timestamp, nonce, encrypted)
            query = f"msg_signature={signature}&timestamp={timestamp}&nonce={nonce}"
            out.write(f"{query}\t{envelope(encrypted).decode('ascii')}\n")


def _wrk(base: str, *, requests_file: Path, connections: int, seconds: float, threads: int) -> dict[str, int]:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
         "-s", str(LUA), base, "--", str(requests_file)],
        capture_output=True, text=True, check=True,
    ).stdout
    found = _WRK_RESULT.search(out)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    return {key: int(value) for key, value in (pair.split("=") for pair in found.group(1).split())}


async def _python_drive(base: str, lines: list[tuple[str, bytes]], *, connections: int,
                        seconds: float) -> tuple[int, float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    position = 0
    headers = {"Content-Type": "text/xml"}

    async def worker(http: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal position, errors
        while time.perf_counter() < deadline:
            query, body = lines[position % len(lines)]
            position += 1
            started = time.perf_counter()
            async with http.post(f"{base}/wecom/callback?{query}", data=body, headers=headers) as r:
                await r.read()
                errors += r.status != 200
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(worker(http, deadline) for _ in range(connections)))
        return len(latencies), time.perf_counter() - started, latencies, errors


def _read_lines(path: Path) -> list[tuple[str, bytes]]:
    lines = []
    for line in path.read_text(encoding="ascii").splitlines():
        query, body = line.split("\t", 1)
        lines.append((query, body.encode("ascii")))
    return lines


@dataclass(frozen=True)
class Load:
    """How each server is driven."""

    seconds: float
    warmup_seconds: float
    requests_file: Path
    warmup_file: Path
    use_wrk: bool
    wrk_threads: int


def measure(kind: str, *, connections: int, processes: int, store_url: str, load: Load) -> Figures:
    """Start one server of this kind in a child process, warm it up, drive it, and stop it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.callbacks", "--serve", kind, "--port", str(port),
         "--store-url", store_url, "--processes", str(processes)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        if processes > 1:
            time.sleep(1.0)  # /health answered from one worker; let the others bind too
        if load.use_wrk:
            _wrk(base, requests_file=load.warmup_file, connections=connections,
                 seconds=load.warmup_seconds, threads=load.wrk_threads)
            cpu_before = tree_cpu_seconds(process.pid)
            result = _wrk(base, requests_file=load.requests_file, connections=connections,
                          seconds=load.seconds, threads=load.wrk_threads)
            requests, seconds = result["requests"], result["duration_us"] / 1e6
            p50, p99 = result["p50_us"] / 1000, result["p99_us"] / 1000
            errors = sum(result[key] for key in ("connect", "read", "write", "status", "timeout"))
        else:
            asyncio.run(_python_drive(base, _read_lines(load.warmup_file), connections=connections,
                                      seconds=load.warmup_seconds))
            cpu_before = tree_cpu_seconds(process.pid)
            requests, seconds, latencies, errors = asyncio.run(_python_drive(
                base, _read_lines(load.requests_file), connections=connections, seconds=load.seconds))
            latencies.sort()
            p50 = statistics.median(latencies) * 1000
            p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000
        cpu = tree_cpu_seconds(process.pid) - cpu_before
        rss = tree_memory_kib(process.pid, "VmHWM") / 1024
    finally:
        process.terminate()
        process.wait(timeout=30)
    return Figures(kind=kind, connections=connections, processes=processes, requests=requests,
                   seconds=seconds, p50_ms=p50, p99_ms=p99, errors=errors, peak_rss_mib=rss,
                   cpu_seconds=cpu)


def print_table(title: str, results: list[Figures]) -> None:
    """One table: each server's figures with its ratio to the bare server of the same table."""
    bare = next((f for f in results if f.kind == "bare"), None)
    print(title)
    print(f"  {'server':<17} {'procs':>5} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7}"
          f" {'RSS MiB':>8} {'errors':>6} {'CPU us/req':>10} {'CPU ratio':>9}")
    for f in results:
        ratio = f.per_second / bare.per_second if bare else float("nan")
        cpu_ratio = bare.cpu_us / f.cpu_us if bare and f.cpu_us else float("nan")
        print(f"  {f.kind:<17} {f.processes:>5} {f.per_second:>8.0f} {ratio:>6.2f} {f.p50_ms:>7.1f}"
              f" {f.p99_ms:>7.1f} {f.peak_rss_mib:>8.1f} {f.errors:>6} {f.cpu_us:>10.0f} {cpu_ratio:>9.2f}",
              flush=True)


def print_medians(title: str, tables: list[list[Figures]]) -> None:
    """Each server's median over rounds, its ratios taken to the bare server of each round first:
    on a shared machine one round's neighbours move both servers of that round alike."""
    print(title)
    print(f"  {'server':<17} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'RSS MiB':>8}"
          f" {'errors':>6} {'CPU us/req':>10} {'CPU ratio':>9}")
    for position, kind in enumerate(f.kind for f in tables[0]):
        runs = [table[position] for table in tables]
        bares = [next(f for f in table if f.kind == "bare") for table in tables]
        ratio = statistics.median(f.per_second / b.per_second for f, b in zip(runs, bares, strict=True))
        cpu_ratio = statistics.median(b.cpu_us / f.cpu_us for f, b in zip(runs, bares, strict=True))
        print(f"  {kind:<17} {statistics.median(f.per_second for f in runs):>8.0f} {ratio:>6.2f}"
              f" {statistics.median(f.p50_ms for f in runs):>7.1f}"
              f" {statistics.median(f.p99_ms for f in runs):>7.1f} {max(f.peak_rss_mib for f in runs):>8.1f}"
              f" {sum(f.errors for f in runs):>6} {statistics.median(f.cpu_us for f in runs):>10.0f}"
              f" {cpu_ratio:>9.2f}", flush=True)


def main() -> int:
    """Measure each server at each connection count, then the scaling with processes; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per server (default 5)")
    parser.add_argument("--connections", default="32,128", help="comma-separated (default 32,128)")
    parser.add_argument("--events", type=int, default=80_000, help="distinct events in the request file")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="comma-separated servers (bare is always measured: the ratios need it)")
    parser.add_argument("--scaling", default="bare,wecom-bind,wecom-bind-redis",
                        help="servers whose scaling with processes is printed ('' for none)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the servers in turn, then print each one's median (default 1)")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.store_url, args.processes)
        return 0
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk") is not None)
    if args.generator == "wrk" and shutil.which("wrk") is None:
        print("wrk is not installed: `make bench` installs it (scripts/bench-deps.sh)")
        return 1
    binary = redis_server_binary()
    if binary is None:
        print("redis-server is not installed: `make system-deps` installs it")
        return 1
    kinds = ["bare", *(kind for kind in KINDS[1:] if kind in args.kinds.split(","))]
    connection_counts = [int(c) for c in args.connections.split(",")]
    cores = os.cpu_count() or 1
    print(f"machine: {cpu_model()}, {cores} cores, Python {platform.python_version()}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    generator = f"wrk, {args.wrk_threads} thread(s)" if use_wrk else "the Python generator (no wrk)"
    print(f"generator: {generator}; {args.seconds:g} s per server after a 1 s warm-up; "
          f"distinct enter_agent events ({args.events} in the file), loopback", flush=True)
    Path("data").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir="data") as temp:
        directory = Path(temp)
        load = Load(seconds=args.seconds, warmup_seconds=1.0, requests_file=directory / "requests.txt",
                    warmup_file=directory / "warmup.txt", use_wrk=use_wrk, wrk_threads=args.wrk_threads)
        write_requests(load.requests_file, args.events, tag="m")
        write_requests(load.warmup_file, 5000, tag="w")
        redis = RedisServer(binary, directory, aof=True, appendfsync="everysec")
        redis.start()
        runs = 0

        def store_for(kind: str) -> str:
            nonlocal runs
            runs += 1
            if kind == "wecom-bind-redis":
                return f"{redis.url}?prefix=bench{runs}:"
            return f"sqlite:///{directory / f'bench{runs}.db'}"

        try:
            rounds: dict[int, list[list[Figures]]] = {connections: [] for connections in connection_counts}
            for round_number in range(1, args.rounds + 1):
                if round_number > 1:  # fresh timestamps: the service refuses those older than its window
                    write_requests(load.requests_file, args.events, tag=f"m{round_number}-")
                    write_requests(load.warmup_file, 5000, tag=f"w{round_number}-")
                for connections in connection_counts:
                    results = [measure(kind, connections=connections, processes=1,
                                       store_url=store_for(kind), load=load) for kind in kinds]
                    label = f", round {round_number} of {args.rounds}" if args.rounds > 1 else ""
                    print_table(f"{connections} connections, 1 process{label}:", results)
                    rounds[connections].append(results)
                    for f in results:
                        if f.kind.startswith("wecom-bind") and f.requests > args.events:
                            print(f"  note: {f.kind} took more requests than distinct events; raise --events")
            if args.rounds > 1:
                for connections, tables in rounds.items():
                    print_medians(f"{connections} connections, the median of {args.rounds} rounds:", tables)
            scaling = [kind for kind in args.scaling.split(",") if kind]
            if scaling and cores > 1:
                write_requests(load.requests_file, args.events, tag="s")
                write_requests(load.warmup_file, 5000, tag="sw")
                connections = max(connection_counts)
                for processes in range(1, cores + 1):
                    results = [measure(kind, connections=connections, processes=processes,
                                       store_url=store_for(kind), load=load)
                               for kind in ["bare", *(k for k in scaling if k != "bare")]]
                    print_table(f"serve --processes {processes}, {connections} connections:", results)
        finally:
            redis.kill()
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
