"""Starting and stopping real `wecom-bind` processes on loopback, with bounded waits."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import IO

# The files each started process writes its stdout and stderr to, by pid, until `stop` reads them.
_OUTPUT: dict[int, tuple[IO[str], IO[str]]] = {}
# What every stopped process wrote, for the session's scan of the logs (tests/support/logscan.py).
_TRANSCRIPTS: list[str] = []


def _port_pool() -> range:
    """This process's ports: a block of its own below the kernel's ephemeral range.

    A port looked up by bind(0) is bound by the child process a moment later; meanwhile the kernel
    may hand it to any outgoing connection or bind(0) (another pytest-xdist worker's, say). Ports
    below the ephemeral range are handed out by nobody but us, each worker from its own block.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ranges:
            ephemeral = int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    low, high = 20000, max(ephemeral, 20000 + 1000)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % workers if worker.isdigit() else 0
    size = (high - low) // workers
    return range(low + index * size, low + (index + 1) * size)


_POOL = _port_pool()
# Where the walk through the pool starts: random, so that two runs at once (another checkout's)
# seldom walk the same ports; the bind below skips any port in use.
_next = random.SystemRandom().randrange(len(_POOL))
_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that no other call of this
    process (nor, under pytest-xdist, another worker) has handed out lately (see _port_pool)."""
    global _next
    with _lock:
        for _ in range(len(_POOL)):
            port = _POOL[_next % len(_POOL)]
            _next += 1
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue  # in use, or left in TIME_WAIT: the next one
                return port
    raise RuntimeError(f"no free port in {_POOL}")


def run_command(
    env: Mapping[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m callback_service ARGS` to its end with only the given WECOM_BIND_* variables."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("WECOM_BIND_")}
    return subprocess.run(
        [sys.executable, "-m", "callback_service", *args],
        env=clean | dict(env), input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )


def start_service(
    args: list[str], env: Mapping[str, str], *, command: Sequence[str] | None = None
) -> subprocess.Popen[str]:
    """Start `python -m callback_service ARGS` (or command ARGS) with only the given WECOM_BIND_* variables.

    Its output goes to temporary files rather than pipes, so that a chatty process never blocks
    on a full pipe; `stop` reads them back.
    """
    clean = {key: value for key, value in os.environ.items() if not key.startswith("WECOM_BIND_")}
    clean.update(env)
    stdout = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 - stop() closes it
    stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
    process = subprocess.Popen(
        [*(command or (sys.executable, "-m", "callback_service")), *args],
        env=clean, stdout=stdout, stderr=stderr, text=True,
    )
    _OUTPUT[process.pid] = (stdout, stderr)
    return process


def wait_healthy(base_url: str, process: subprocess.Popen[str], *, timeout: float = 20.0) -> None:
    """Poll /health until it answers 200; fail if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"service exited with {process.returncode}")
        try:
            with urllib.request.urlopen(base_url + "/health", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise AssertionError("service did not become healthy in time")


def stop(process: subprocess.Popen[str], *, timeout: float = 10.0) -> tuple[str, str]:
    """Terminate the process gracefully and return its stdout and stderr."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
    stdout, stderr = _OUTPUT.pop(process.pid, (None, None))
    output = _read_back(stdout), _read_back(stderr)
    _TRANSCRIPTS.extend(output)
    return output


def all_output() -> list[str]:
    """What every process started in this session wrote, stopped or not (for the scan of the logs)."""
    running = []
    for stdout, stderr in _OUTPUT.values():
        for stream in (stdout, stderr):
            stream.flush()
            stream.seek(0)
            running.append(stream.read())
    return [*_TRANSCRIPTS, *running]


def _read_back(stream: IO[str] | None) -> str:
    if stream is None:
        return ""
    stream.seek(0)
    text = stream.read()
    stream.close()
    return text
