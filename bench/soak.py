"""A soak: whole-student flows for 60 s at 80% of the rate the service just sustained; memory and errors.

`python -m bench.soak` starts the service and the emulators as bench.binding does (each in a
process of its own, SQLite by default), drives unpaced flows to warm up, then more to measure the
rate the service sustains, then starts flows at 80% of that rate, evenly spaced, for 60 s. Every
flow is a student walking steps 1 to 4, and each pushes its `subscribe` callback (step 5) through
the inbox. It prints the service's resident memory after the warm-up and the measuring, every 10 s,
and at the end (VmRSS; within 10% of the first is flat), and the errors: failed flows, flows not
started, follows not recorded. Bounded: a fixed duration, a cap on flows in flight, a timeout per
request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
from yarl import URL

from bench.binding import (
    FlowFailed,
    Recorder,
    Student,
    await_follows,
    drive,
    start_servers,
    students,
    tree_memory_kib,
)
from bench.store import cpu_model
from sandbox.demo import DemoStudent
from testkit.redis import RedisServer, redis_server_binary

IN_FLIGHT_LIMIT = 128
"""Flows in flight at most (twice the measuring K): past it the service is not keeping up, and
starting more would only queue; a flow not started counts as an error."""


async def paced(
    base: URL, emulators: URL, walkers: Sequence[DemoStudent], wechats: dict[str, str], *,
    rate: float, seconds: float, sample: float, rss: Callable[[], int],
) -> tuple[Recorder, list[tuple[float, int]], int]:
    """Start flows at rate per second for seconds; the recorder, RSS samples and flows not started."""
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Task[None]] = set()
    samples: list[tuple[float, int]] = []
    skipped = 0

    async def walk(student: DemoStudent) -> None:
        try:
            await Student(base, emulators, student, wechats[student.wechat_phone], recorder).walk()
        except (FlowFailed, aiohttp.ClientError, TimeoutError) as exc:
            recorder.failures[str(exc) or type(exc).__name__] += 1

    started = loop.time()
    next_sample = started + sample
    total = min(len(walkers), int(rate * seconds))
    for n in range(total):
        due = started + n / rate
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        if loop.time() >= next_sample:
            samples.append((loop.time() - started, rss()))
            next_sample += sample
        if len(in_flight) >= IN_FLIGHT_LIMIT:
            skipped += 1
            continue
        task = asyncio.create_task(walk(walkers[n]))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)
    samples.append((loop.time() - started, rss()))
    return recorder, samples, skipped


def main() -> int:
    """Measure the sustained rate, soak at a fraction of it, and print memory and errors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="the soak's length (default 60)")
    parser.add_argument("--fraction", type=float, default=0.8, help="of the measured rate (default 0.8)")
    parser.add_argument("--warmup", type=int, default=200, help="unpaced flows to warm up, not measured")
    parser.add_argument("--measure-flows", type=int, default=600, help="unpaced flows that measure the rate")
    parser.add_argument("--concurrency", type=int, default=64, help="students at a time while measuring")
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--processes", type=int, default=1, help="the service's worker processes")
    parser.add_argument("--students", type=int, default=12_000, help="students seeded (bounds the flows)")
    args = parser.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; load average at start: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    data = Path("data")
    data.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data, prefix="bench-soak-") as tmp:
        directory = Path(tmp)
        redis: RedisServer | None = None
        store_url = f"sqlite:///{directory.resolve() / 'store.db'}"
        if args.store == "redis":
            binary = redis_server_binary()
            if binary is None:
                print("redis-server is not installed: `make system-deps` installs it")
                return 1
            (directory / "redis").mkdir()
            redis = RedisServer(binary, directory / "redis", aof=True, appendfsync="everysec")
            redis.start()
            store_url = f"{redis.url}?prefix=soak:"
        run_dir = directory / "run"
        run_dir.mkdir()
        try:
            return _soak(args, run_dir, store_url)
        finally:
            if redis is not None:
                redis.kill()


def _soak(args: argparse.Namespace, run_dir: Path, store_url: str) -> int:
    servers = start_servers(run_dir, store_url, count=args.students, processes=args.processes)
    everyone = students(args.students)
    try:
        def rss() -> int:
            return tree_memory_kib(servers.service.pid, "VmRSS")

        asyncio.run(drive(servers.base, servers.emulators, everyone[: args.warmup], servers.wechats,
                          args.concurrency))
        measuring = everyone[args.warmup : args.warmup + args.measure_flows]
        seconds, measured = asyncio.run(
            drive(servers.base, servers.emulators, measuring, servers.wechats, args.concurrency))
        rate = measured.flows / seconds
        after_warmup = rss()
        soak_rate = rate * args.fraction
        print(f"measured: {measured.flows} flows in {seconds:.1f} s at K={args.concurrency}: "
              f"{rate:.1f} flows/s ({sum(measured.failures.values())} failed)")
        print(f"soak: {args.seconds:g} s at {soak_rate:.1f} flows/s ({args.fraction:.0%}), "
              f"store {args.store}, {args.processes} service process(es)", flush=True)
        walkers = everyone[args.warmup + args.measure_flows :]
        if soak_rate * args.seconds > len(walkers):
            print(f"note: only {len(walkers)} students left for the soak; raise --students")
        started = time.time()
        recorder, samples, skipped = asyncio.run(paced(
            servers.base, servers.emulators, walkers, servers.wechats,
            rate=soak_rate, seconds=args.seconds, sample=10.0, rss=rss))
        elapsed = time.time() - started
        follows = asyncio.run(await_follows(run_dir, recorder.followed_at, time.time()))
        at_end = rss()
    finally:
        servers.stop()
    errors = sum(recorder.failures.values()) + skipped + follows.missing
    change = (at_end - after_warmup) / after_warmup
    print(f"flows: {recorder.flows} in {elapsed:.1f} s ({recorder.flows / elapsed:.1f}/s);"
          f" failed {sum(recorder.failures.values())}, not started (over {IN_FLIGHT_LIMIT} in flight)"
          f" {skipped}, follows not recorded {follows.missing}")
    for reason, count in recorder.failures.most_common(5):
        print(f"  {count} x {reason}")
    print(f"RSS after warm-up: {after_warmup / 1024:.1f} MiB")
    for at, kib in samples:
        print(f"RSS at {at:5.1f} s: {kib / 1024:.1f} MiB")
    print(f"RSS at the end: {at_end / 1024:.1f} MiB ({change:+.1%} from after warm-up)")
    flat = abs(change) <= 0.10
    print(f"memory {'flat' if flat else 'NOT flat'} (within 10%), errors: {errors}")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0 if flat and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
