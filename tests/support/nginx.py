"""Debian's nginx on loopback, balancing over service instances, run by a test from a temporary directory.

Nothing under /etc/nginx or /var/log/nginx is read or written: the prefix, the configuration, the
pid file, the logs and the temporary files all live in the test's directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.processes import free_port


def require_nginx() -> str:
    """Return nginx's path; fail under CI=true, skip elsewhere, when it is missing."""
    binary = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
    )
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (CI=true: scripts/system-deps.sh installs it)")
        pytest.skip("nginx is not installed")
    return binary


def nginx_config(directory: Path, *, port: int, upstreams: list[int]) -> str:
    """A configuration like the runbook's (docs/deploy.md), on plain HTTP and loopback."""
    servers = "\n".join(
        f"        server 127.0.0.1:{upstream} max_fails=1 fail_timeout=30s;" for upstream in upstreams
    )
    # As root, nginx's workers would otherwise switch to nobody, who cannot use the test's directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream wecom_bind {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://wecom_bind;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;
            # A refused connection (an instance gone) is retried on the other, POSTs too: nothing
            # was sent. A request that reached an instance is never sent twice.
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    """An nginx master process in the foreground, its files in directory."""

    binary: str
    directory: Path
    upstreams: list[int]
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Where clients reach the balanced service."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Write the configuration, start nginx and wait until its port accepts connections."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self.directory / "nginx.conf"
        config.write_text(nginx_config(self.directory, port=self.port, upstreams=self.upstreams))
        # -e: the error log before the configuration is read (else the compiled-in /var/log/nginx).
        self.process = subprocess.Popen(
            [self.binary, "-p", str(self.directory), "-c", str(config), "-e", str(self.directory / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited: {self.error_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not listen in time")

    def stop(self) -> None:
        """Stop nginx (SIGQUIT lets it finish its requests), then kill it if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def error_log(self) -> str:
        """nginx's error log so far."""
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""
