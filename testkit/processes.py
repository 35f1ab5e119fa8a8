"""Starting and stopping real `wecom-bind` processes on loopback, with bounded waits."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import IO

# The files each started process writes its stdout and stderr to, by pid, until `stop` reads them.
_OUTPUT: dict[int, tuple[IO[str], IO[str]]] = {}
# What every stopped process wrote, for the session's scan of the logs (tests/support/logscan.py).
_TRANSCRIPTS: list[str] = []


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
