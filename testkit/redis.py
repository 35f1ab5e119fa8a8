"""A real redis-server process on a loopback port, for the tests and the benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from testkit.processes import free_port


def redis_server_binary() -> str | None:
    """Return the path of redis-server, or None when it is not installed."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            # -NOAUTH: a server started with --requirepass answers too.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@dataclass
class RedisServer:
    """A redis-server child process with its own directory; AOF on (fsync always) unless aof=False.

    The service refuses a Redis that does not persist: aof=False (with no save points) is for the
    tests of that refusal. extra: more redis-server arguments (save points, renamed commands).
    """

    binary: str
    directory: Path
    aof: bool = True
    appendfsync: str = "always"
    save: str = ""
    extra: tuple[str, ...] = ()
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (on the same port when restarting) and wait until it answers PING."""
        for _ in range(5):
            self.port = self.port or free_port()
            args = [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory.resolve()),
                "--save",
                self.save,
                "--daemonize",
                "no",
                "--logfile",
                str(self.directory.resolve() / "redis.log"),
            ]
            if self.aof:
                args += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
            else:
                args += ["--appendonly", "no"]
            args += list(self.extra)
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break  # most likely the port was taken meanwhile: try another
                if _answers_ping(self.port):
                    return
                time.sleep(0.02)
            else:
                self.kill()
                raise RuntimeError("redis-server did not answer in time")
            self.port = 0
        raise RuntimeError("redis-server would not start")

    def kill(self) -> None:
        """kill -9 the server and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a paused server."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
