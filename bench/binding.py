"""The binding flow: whole-student flows per second against the sandbox, page latency and memory.

`python -m bench.binding` starts, for each store (SQLite; Redis with AOF everysec when redis-server
is installed) and each concurrency, two processes of their own on free loopback ports: the service,
and the CAS and WeCom emulators (mounted as `wecom-bind demo` mounts them), so that the service's own
CPU and memory are measured apart from theirs. Both are seeded with generated students (each a CAS
account, a directory entry with a phone, and a simulated WeChat with that same phone). From this
process, K simulated students at a time, each with its own cookie jar, walk the guide:

1. GET /bind, the CAS login form, POST 学号 and password, /bind/cas?ticket= (validated server to server);
2. GET /bind/phone (its csrf and form_id fields), POST /bind/phone (the rules; at the WeCom emulator
   user/update, then user/create since no student is a member yet, and the invite), the result page
   and the follow QR image that it shows;
3. step 4: pick the student's simulated WeChat and 关注 (a direct follow: the phones match), which
   ends the student's flow at 关注成功.

Step 5 happens behind it: the emulator pushes `subscribe` to the callback endpoint, the inbox takes
it and a worker records the follow. Once the load is over, the bench reads the store until every
follow is recorded (for at most 30 s), and takes from each member's audit record how long after its
关注 that was: nothing polls the service during the load.

Every request is timed on its own (no redirect is followed automatically). It prints flows per
second, p50/p99 per page and overall, the service's and the emulators' CPU per flow, the lag of
step 5, and the service's resident memory when idle (after start) and at its peak (VmHWM, read after
step 5 has caught up). Bounded: a fixed number of flows per run, a timeout on every request and on
each run. As in bench.callbacks, access logs are off. The per-IP submit limit is lifted: every
simulated student is 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from yarl import URL

from bench.store import cpu_model, filesystem_of, redis_server_version
from callback_service import compose
from callback_service.logs import configure_logging
from callback_service.ops.processes import run_app, run_processes
from callback_service.web.app import create_app
from callback_service.web.pages.config import PAGES_CONFIG, PagesConfig
from config import Settings
from handlers.core.binding import AuditAction, BindingState
from sandbox.cas import create_cas_sandbox
from sandbox.demo import (
    CAS_MOUNT,
    DEMO_PASSWORD,
    DEMO_STUDENTS,
    WECOM_MOUNT,
    DemoStudent,
    cas_users,
    demo_departments,
    demo_settings,
    directory_seeder,
    wecom_sandbox,
)
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from testkit.processes import free_port, wait_healthy
from testkit.redis import RedisServer, redis_server_binary

DEPARTMENTS: Final = sorted({student.department for student in DEMO_STUDENTS})
WECHATS_FILE: Final = "wechats.json"
REQUEST_TIMEOUT: Final = aiohttp.ClientTimeout(total=30)
RUN_LIMIT: Final = 120.0
"""The longest one run's flows may take before the rest are abandoned."""
FOLLOW_WAIT_LIMIT: Final = 30.0
"""The longest the bench waits, after the load, for every follow to be recorded."""

PAGES: Final = (
    ("bind", "GET /bind"),
    ("cas-form", "GET CAS login form"),
    ("cas-login", "POST CAS login"),
    ("bind-cas", "GET /bind/cas?ticket="),
    ("phone-form", "GET /bind/phone"),
    ("phone-submit", "POST /bind/phone"),
    ("result", "GET /bind/result/{form}"),
    ("follow-qr", "GET /bind/follow-qr.png"),
    ("wechat-use", "POST wechat/use (pick)"),
    ("follow-page", "GET /follow"),
    ("follow", "POST /follow (关注)"),
)
"""Each page kind of a flow, in its order, and how the table names it."""
SERVICE_PAGES: Final = frozenset({"bind", "bind-cas", "phone-form", "phone-submit", "result", "follow-qr"})
"""The kinds that the service answers; the others are the emulators' (CAS, WeCom)."""


def students(count: int) -> list[DemoStudent]:
    """count generated students, the same on both sides of the bench: each its own phone."""
    return [
        DemoStudent(
            member_id=f"30{n:06d}",
            name=f"学生{n:04d}",
            department=DEPARTMENTS[n % len(DEPARTMENTS)],
            directory_phone=f"139{n:08d}",
            cas_mobile=None,
            wechat_phone=f"139{n:08d}",
            walks="bench",
        )
        for n in range(count)
    ]


# the server


SETTINGS_FILE: Final = "settings.json"


def write_settings(directory: Path, *, port: int, emulator_port: int, store_url: str) -> None:
    """The settings both processes read: the demo's, with the emulators on a port of their own."""
    settings = demo_settings(host="127.0.0.1", port=port, data_dir=directory)
    emulators = f"http://127.0.0.1:{emulator_port}"
    # JSON's own forms (a set of administrators as a list, a path as text), the secrets in clear.
    values = settings.model_dump(mode="json") | {
        name: v.get_secret_value() for name, v in settings if isinstance(v, SecretStr)
    }
    values |= {
        "store_url": store_url,
        "cas_base_url": emulators + CAS_MOUNT,
        "wecom_api_base": emulators + WECOM_MOUNT,
        "follow_url": emulators + WECOM_MOUNT + "/follow",
        "log_level": "WARNING",
    }
    (directory / SETTINGS_FILE).write_text(json.dumps(values))


def read_settings(directory: Path) -> Settings:
    """The settings write_settings wrote."""
    return Settings.model_validate(json.loads((directory / SETTINGS_FILE).read_text()))


def serve(*, port: int, directory: Path, count: int, processes: int = 1) -> None:
    """Run the service for count students until terminated: the demo's wiring, emulators elsewhere."""
    seeded = students(count)
    settings = read_settings(directory)
    configure_logging(settings.log_level)

    def make_app() -> web.Application:
        app = create_app(settings)
        # Everyone comes from 127.0.0.1: the per-IP limit (a campus NAT's) would stop the bench at 200.
        app[PAGES_CONFIG] = PagesConfig(departments=demo_departments(seeded), submits_per_ip=10 * count)
        app.cleanup_ctx.append(directory_seeder(seeded))
        return app

    if processes == 1:
        run_app(make_app(), host="127.0.0.1", port=port, access_log=False)
    else:
        run_processes(make_app, host="127.0.0.1", port=port, processes=processes, access_log=False)


def serve_emulators(*, port: int, directory: Path, count: int) -> None:
    """Run the CAS and WeCom emulators for count students until terminated.

    The ids of the simulated WeChats go to a file for the driver.
    """
    seeded = students(count)
    settings = read_settings(directory)

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    app.add_subapp(CAS_MOUNT, create_cas_sandbox(users=cas_users(seeded)))
    wecom = wecom_sandbox(settings, seeded)
    app.add_subapp(WECOM_MOUNT, wecom)
    wechats = {w.phone: w.wechat_id for w in wecom[WECOM_SANDBOX_STATE].wechats.values()}
    written = directory / (WECHATS_FILE + ".tmp")
    written.write_text(json.dumps(wechats))
    written.rename(directory / WECHATS_FILE)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=lambda _: None)


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time a process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak resident set) of a process, in KiB, from /proc/<pid>/status."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


# the students


class FlowFailed(Exception):
    """A page answered other than a student walking the guide expects."""


@dataclass
class Recorder:
    """The latency of every request, by page kind, and when each student's 关注 succeeded."""

    pages: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    followed_at: dict[str, float] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def flows(self) -> int:
        return len(self.followed_at)


_HIDDEN: Final = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)"')
_PHONE: Final = re.compile(r'name="phone" value="([^"]*)"')


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden inputs of a page's forms."""
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


class Student:
    """One simulated student on their phone: a cookie jar of their own, every request timed."""

    def __init__(self, base: URL, emulators: URL, student: DemoStudent, wechat_id: str,
                 recorder: Recorder) -> None:
        self.base = base
        self.emulators = emulators
        self.student = student
        self.wechat_id = wechat_id
        self.recorder = recorder

    async def request(
        self,
        http: aiohttp.ClientSession,
        kind: str,
        method: str,
        url: URL,
        *,
        expect: int,
        data: dict[str, str] | None = None,
    ) -> tuple[bytes, URL]:
        """One timed request; its body and where it points next (its Location, else its own URL)."""
        started = time.perf_counter()
        async with http.request(method, url, data=data, allow_redirects=False) as response:
            body = await response.read()
            location = response.headers.get("Location")
        self.recorder.pages[kind].append(time.perf_counter() - started)
        if response.status != expect:
            raise FlowFailed(f"{kind}: HTTP {response.status}")
        return body, url.join(URL(location)) if location else url

    async def walk(self) -> None:
        """The guide's steps 1 to 4, as one student's phone walks them."""
        jar = aiohttp.CookieJar(unsafe=True)  # the service is at an IP address: 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar, timeout=REQUEST_TIMEOUT) as http:
            # steps 1 and 2: the QR code's /bind, the unified identity login, the ticket
            _, login = await self.request(http, "bind", "GET", self.base / "bind", expect=302)
            form, _ = await self.request(http, "cas-form", "GET", login, expect=200)
            fields = hidden_fields(form.decode())
            credentials = {"username": self.student.member_id, "password": DEMO_PASSWORD}
            _, ticket = await self.request(
                http, "cas-login", "POST", login, data=fields | credentials, expect=302
            )
            _, phone_page = await self.request(http, "bind-cas", "GET", ticket, expect=302)
            # step 3: the phone, pre-filled from the directory, confirmed
            body, _ = await self.request(http, "phone-form", "GET", phone_page, expect=200)
            page = body.decode()
            prefilled = _PHONE.search(page)
            if prefilled is None or prefilled.group(1) != self.student.directory_phone:
                raise FlowFailed("phone-form: the directory's phone is not pre-filled")
            form_fields = hidden_fields(page) | {"phone": prefilled.group(1)}
            _, result = await self.request(
                http, "phone-submit", "POST", phone_page, data=form_fields, expect=303
            )
            body, _ = await self.request(http, "result", "GET", result, expect=200)
            if b'data-outcome="bound"' not in body:
                raise FlowFailed("result: not bound")
            await self.request(http, "follow-qr", "GET", self.base / "bind/follow-qr.png", expect=200)
            # step 4: the student's own WeChat follows
            wecom = self.emulators / WECOM_MOUNT.strip("/")
            use = {"wechat": self.wechat_id, "next": f"{WECOM_MOUNT}/follow"}
            _, follow = await self.request(
                http, "wechat-use", "POST", wecom / "wechat/use", data=use, expect=303
            )
            await self.request(http, "follow-page", "GET", follow, expect=200)
            tapped = time.time()
            body, _ = await self.request(http, "follow", "POST", follow, expect=200)
            if "关注成功" not in body.decode():
                raise FlowFailed("follow: not followed")
        self.recorder.followed_at[self.student.member_id] = tapped


async def drive(
    base: URL, emulators: URL, walkers: Sequence[DemoStudent], wechats: dict[str, str], concurrency: int
) -> tuple[float, Recorder]:
    """Walk every student's flow, concurrency at a time; the seconds it took and what was recorded."""
    recorder = Recorder()
    pending: Iterator[DemoStudent] = iter(walkers)

    async def phone() -> None:
        for student in pending:
            try:
                await Student(base, emulators, student, wechats[student.wechat_phone], recorder).walk()
            except (FlowFailed, aiohttp.ClientError, TimeoutError) as exc:
                recorder.failures[str(exc) or type(exc).__name__] += 1

    started = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(phone() for _ in range(concurrency))), RUN_LIMIT)
    except TimeoutError:
        recorder.failures[f"the run passed {RUN_LIMIT:g} s"] += 1
    return time.perf_counter() - started, recorder


# step 5, behind the load


@dataclass(frozen=True)
class FollowsRecorded:
    """Step 5 for the flows of a run: how long each follow took to be recorded after its 关注."""

    lags: list[float]
    missing: int
    drain: float
    """Seconds from the end of the load until the last follow was recorded."""


async def await_follows(directory: Path, followed_at: dict[str, float], load_ended: float) -> FollowsRecorded:
    """Read the store until every follow is recorded (bounded); each lag from the member's audit."""
    store = await compose.open_settings_store(read_settings(directory))
    try:
        waiting = set(followed_at)
        deadline = time.monotonic() + FOLLOW_WAIT_LIMIT
        while waiting and time.monotonic() < deadline:
            for member_id in sorted(waiting):
                binding = await store.get_binding(member_id)
                if binding is not None and binding.state is BindingState.FOLLOWED:
                    waiting.discard(member_id)
            if waiting:
                await asyncio.sleep(0.1)
        recorded = []
        for member_id, tapped in followed_at.items():
            if member_id not in waiting:
                audit = await store.audit_list(member_id=member_id, limit=20)
                at = min(r.at for r in audit if r.action is AuditAction.FOLLOW)
                recorded.append((at, at - tapped))
    finally:
        await store.close()
    last = max((at for at, _ in recorded), default=load_ended)
    return FollowsRecorded([lag for _, lag in recorded], len(waiting), max(0.0, last - load_ended))


# one run: a server, a warm-up, the load


@dataclass(frozen=True)
class Run:
    """One server's figures under one load."""

    store: str
    concurrency: int
    seconds: float
    recorder: Recorder
    follows: FollowsRecorded
    cpu: float
    """The service's CPU seconds during the load (all its processes)."""
    emulator_cpu: float
    """The emulators' CPU seconds during the load."""
    idle_kib: int
    peak_kib: int
    processes: int = 1

    @property
    def flows_per_second(self) -> float:
        return self.recorder.flows / self.seconds

    @property
    def cpu_ms_per_flow(self) -> float:
        return self.cpu / max(1, self.recorder.flows) * 1000

    @property
    def emulator_cpu_ms_per_flow(self) -> float:
        return self.emulator_cpu / max(1, self.recorder.flows) * 1000


def process_tree(pid: int) -> list[int]:
    """A process and its children (the workers of `serve --processes N`)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds over a process and its children."""
    return sum(cpu_seconds(each) for each in process_tree(pid))


def tree_memory_kib(pid: int, name: str) -> int:
    """VmRSS or VmHWM summed over the workers (the parent alone when it has none)."""
    tree = process_tree(pid)
    return sum(memory_kib(each)[name] for each in (tree[1:] or tree))


@dataclass
class Servers:
    """The service and the emulators, each in its own process, for one run."""

    base: URL
    emulators: URL
    service: subprocess.Popen[str]
    emulator: subprocess.Popen[str]
    output: IO[str]
    wechats: dict[str, str]

    def stop(self) -> None:
        """Terminate both and show what the service wrote."""
        for process in (self.service, self.emulator):
            process.terminate()
        for process in (self.service, self.emulator):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        _show_errors(self.output)


def start_servers(run_dir: Path, store_url: str, *, count: int, processes: int = 1) -> Servers:
    """Start the emulators and the service for count students; return once both answer."""
    port, emulator_port = free_port(), free_port()
    write_settings(run_dir, port=port, emulator_port=emulator_port, store_url=store_url)
    output = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 - closed by stop()
    common = ["--dir", str(run_dir), "--students", str(count)]
    emulator = subprocess.Popen(
        [sys.executable, "-m", "bench.binding", "--serve-emulators", "--port", str(emulator_port), *common],
        stdout=subprocess.DEVNULL, stderr=output, text=True,
    )
    service = subprocess.Popen(
        [sys.executable, "-m", "bench.binding", "--serve", "--port", str(port), *common,
         "--processes", str(processes)],
        stdout=subprocess.DEVNULL, stderr=output, text=True,
    )
    servers = Servers(URL(f"http://127.0.0.1:{port}"), URL(f"http://127.0.0.1:{emulator_port}"),
                      service, emulator, output, {})
    try:
        wait_healthy(str(servers.emulators), emulator)
        wait_healthy(str(servers.base), service)
        if processes > 1:
            time.sleep(1.0)  # /health answered from one worker; let the others bind too
        servers.wechats = json.loads((run_dir / WECHATS_FILE).read_text())
    except BaseException:
        servers.stop()
        raise
    return servers


def measure(
    store: str, store_url: str, *, flows: int, warmup: int, concurrency: int, directory: Path,
    processes: int = 1,
) -> Run:
    """Start the servers for warmup + flows students, warm them up, and drive the flows."""
    count = warmup + flows
    run_dir = directory / f"{store.split()[0]}-{concurrency}-{processes}"
    run_dir.mkdir()
    store_url = store_url or f"sqlite:///{run_dir.resolve() / 'store.db'}"
    servers = start_servers(run_dir, store_url, count=count, processes=processes)
    try:
        idle = tree_memory_kib(servers.service.pid, "VmRSS")
        everyone = students(count)
        asyncio.run(drive(servers.base, servers.emulators, everyone[:warmup], servers.wechats,
                          min(concurrency, warmup)))
        cpu_before = tree_cpu_seconds(servers.service.pid)
        emulator_before = cpu_seconds(servers.emulator.pid)
        seconds, recorder = asyncio.run(
            drive(servers.base, servers.emulators, everyone[warmup:], servers.wechats, concurrency))
        cpu = tree_cpu_seconds(servers.service.pid) - cpu_before
        emulator_cpu = cpu_seconds(servers.emulator.pid) - emulator_before
        follows = asyncio.run(await_follows(run_dir, recorder.followed_at, time.time()))
        peak = tree_memory_kib(servers.service.pid, "VmHWM")
    finally:
        servers.stop()
    return Run(store, concurrency, seconds, recorder, follows, cpu, emulator_cpu, idle, peak, processes)


def _show_errors(output: IO[str]) -> None:
    output.seek(0)
    lines = output.read().splitlines()
    output.close()
    if lines:
        print(f"  server output ({len(lines)} lines), the last:", *lines[-5:], sep="\n    ")


# the figures


def percentile(values: list[float], fraction: float) -> float:
    """The value at fraction of the sorted values (nearest rank), in milliseconds."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))] * 1000


def report(runs: list[Run]) -> None:
    """Print one line per run, then p50/p99 per page kind with one column per run."""
    print(
        f"{'store':<20} {'K':>3} {'procs':>5} {'flows':>5} {'failed':>6} {'flows/s':>7} {'p50 ms':>6}"
        f" {'p99 ms':>6} {'CPU ms/flow':>11} {'CPU %':>5} {'emu ms/flow':>11} {'step 5 p50/p99 s':>16}"
        f" {'drain s':>7} {'idle MiB':>8} {'peak MiB':>8}"
    )
    for run in runs:
        everything = [t for times in run.recorder.pages.values() for t in times]
        lags = run.follows.lags or [0.0]
        step5 = f"{percentile(lags, 0.5) / 1000:.2f} / {percentile(lags, 0.99) / 1000:.2f}"
        print(
            f"{run.store:<20} {run.concurrency:>3} {run.processes:>5} {run.recorder.flows:>5}"
            f" {sum(run.recorder.failures.values()):>6} {run.flows_per_second:>7.1f}"
            f" {percentile(everything, 0.5):>6.1f} {percentile(everything, 0.99):>6.0f}"
            f" {run.cpu_ms_per_flow:>11.1f} {run.cpu / run.seconds * 100:>5.0f}"
            f" {run.emulator_cpu_ms_per_flow:>11.1f} {step5:>16}"
            f" {run.follows.drain:>7.1f} {run.idle_kib / 1024:>8.1f} {run.peak_kib / 1024:>8.1f}"
        )
    for run in runs:
        for reason, count in run.recorder.failures.most_common(5):
            print(f"  {run.store}, K={run.concurrency}: {count} x {reason}")
        if run.follows.missing:
            print(f"  {run.store}, K={run.concurrency}: {run.follows.missing} follows not recorded in time")
    print()
    heads = [f"{run.store.split()[0]} K={run.concurrency}" for run in runs]
    print(f"{'page (p50 / p99 ms)':<28}" + "".join(f" {head:>17}" for head in heads))
    for kind, label in PAGES:
        cells = []
        for run in runs:
            times = run.recorder.pages.get(kind)
            cells.append(f"{percentile(times, 0.5):7.1f} / {percentile(times, 0.99):6.1f}" if times else "-")
        mark = "" if kind in SERVICE_PAGES else " *"
        print(f"{label + mark:<28}" + "".join(f" {cell:>17}" for cell in cells))
    print("* answered by the emulators (CAS, WeCom), in a process of their own")
    print("CPU: the service's processes', during the load (% of one core); emu: the emulators' process;"
          " memory: the service's resident set (summed over its workers)")
    print("step 5: from the tap on 关注 until the store held the follow (the emulator's push, the inbox,"
          " a worker)")


def main() -> int:
    """Run each store at each concurrency and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-emulators", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--students", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help="the service's worker processes")
    parser.add_argument("--flows", type=int, default=600, help="whole-student flows per run")
    parser.add_argument("--warmup", type=int, default=16, help="flows before each run, not counted")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[16, 64], help="concurrent students, one run each"
    )
    parser.add_argument("--no-redis", action="store_true", help="SQLite only")
    args = parser.parse_args()
    if args.serve:
        serve(port=args.port, directory=Path(args.dir), count=args.students, processes=args.processes)
        return 0
    if args.serve_emulators:
        serve_emulators(port=args.port, directory=Path(args.dir), count=args.students)
        return 0
    data = Path("data")
    data.mkdir(exist_ok=True)
    binary = None if args.no_redis else redis_server_binary()
    print(f"cpu:        {cpu_model()}")
    print(f"cores:      {os.cpu_count()} (the students, the emulators and the service share them)")
    print(f"os:         {platform.platform()}")
    print(f"loadavg:    {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min, at the start)")
    print(f"python:     {platform.python_version()} ({platform.python_implementation()})")
    print(f"aiohttp:    {aiohttp.__version__}")
    print(f"sqlite:     {sqlite3.sqlite_version} (file on {filesystem_of(data)})")
    print(f"redis:      {redis_server_version(binary) if binary else 'not run'}")
    print(
        f"load:       {args.flows} whole-student flows per run (after {args.warmup} to warm up),"
        f" K = {', '.join(map(str, args.concurrency))} concurrent students, loopback"
    )
    print(flush=True)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(dir=data, prefix="bench-binding-") as tmp:
        directory = Path(tmp)
        stores = [("sqlite (WAL, FULL)", "")]
        redis: RedisServer | None = None
        if binary is not None:
            (directory / "redis").mkdir()
            redis = RedisServer(binary, directory / "redis", aof=True, appendfsync="everysec")
            redis.start()
            stores.append(("redis (AOF everysec)", redis.url))
        try:
            for store, url in stores:
                for concurrency in args.concurrency:
                    store_url = f"{url}?prefix=bench-{concurrency}-{args.processes}:" if url else ""
                    runs.append(
                        measure(store, store_url, flows=args.flows, warmup=args.warmup,
                                concurrency=concurrency, directory=directory, processes=args.processes)
                    )
        finally:
            if redis is not None:
                redis.kill()
    report(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
