"""`serve --processes N`: N worker processes on one port (SO_REUSEPORT), each with its own app and store.

The parent forks the workers before it opens anything, forwards SIGTERM and SIGINT to them, and
exits when they have all exited. A worker that dies on its own takes the others down with it
(exit status 1), so that a supervisor restarts the whole service rather than half of it. A parent
that dies without a word (SIGKILL, the OOM killer) takes its workers with it too: on Linux the
kernel sends each one SIGTERM (PR_SET_PDEATHSIG), elsewhere a watch on the parent's pid does, and
a worker still running PARENT_GONE_GRACE seconds later exits at once. Orphans would go on serving
the old code beside the next start's workers on the same port.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from aiohttp import web
from aiohttp.log import access_logger, web_logger

from callback_service.logs import PathOnlyAccessLogger

AppFactory = Callable[[], web.Application]

# How long the parent waits for the workers' graceful shutdown after forwarding a signal.
STOP_GRACE = 30.0
# How long a worker whose parent died may take over its graceful shutdown before it exits at once
# (an event it was handling keeps its lease and runs again; what it acknowledged is in the store).
PARENT_GONE_GRACE = 2.0
_PARENT_POLL = 0.2
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def run_app(app: web.Application, *, host: str, port: int, reuse_port: bool = False,
            access_log: bool = True) -> None:
    """Serve one app until SIGINT or SIGTERM, with the query-free access log."""
    web.run_app(
        app,
        host=host,
        port=port,
        reuse_port=reuse_port or None,
        access_log_class=PathOnlyAccessLogger,
        access_log=access_logger if access_log else None,
        print=_log_banner,
    )


def _ask_for_sigterm_when_parent_dies() -> bool:
    """Have the kernel send this process SIGTERM when its parent dies (Linux); False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _parent_gone(parent: int, signalled: bool) -> None:
    """Stop this worker once its parent is gone: SIGTERM, unless the kernel sent it already, then
    an immediate exit PARENT_GONE_GRACE seconds later if the graceful stop has not finished."""
    while os.getppid() == parent:  # an orphan is adopted by init or a subreaper
        time.sleep(_PARENT_POLL)
    print("wecom-bind: the parent process is gone; this worker stops", file=sys.stderr, flush=True)
    if not signalled:
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(PARENT_GONE_GRACE)
    os._exit(1)


def watch_parent(parent: int) -> None:
    """End this worker process, within PARENT_GONE_GRACE seconds or so, when the process parent dies."""
    signalled = _ask_for_sigterm_when_parent_dies()
    if os.getppid() != parent:  # it died before the kernel was asked
        os.kill(os.getpid(), signal.SIGTERM)
        signalled = True
    threading.Thread(target=_parent_gone, args=(parent, signalled), name="parent-watch", daemon=True).start()


def _worker(make_app: AppFactory, host: str, port: int, access_log: bool, parent: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):  # the parent's forwarding handler is not ours
        signal.signal(sig, signal.SIG_DFL)
    # Its own process group: a terminal's Ctrl-C reaches the parent only, which forwards it once.
    os.setpgid(0, 0)
    watch_parent(parent)
    run_app(make_app(), host=host, port=port, reuse_port=True, access_log=access_log)


def run_processes(make_app: AppFactory, *, host: str, port: int, processes: int,
                  access_log: bool = True) -> int:
    """Run `processes` workers serving make_app() on host:port; return the exit status."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    # Fork, not spawn: make_app may be a closure, and the parent has opened nothing yet.
    context = multiprocessing.get_context("fork")
    workers: list[BaseProcess] = [
        context.Process(
            target=_worker, args=(make_app, host, port, access_log, os.getpid()), name=f"wecom-bind-{n}"
        )
        for n in range(processes)
    ]
    stopping: list[int] = []  # the signals received

    def forward(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)
        stop_workers(signum)

    def stop_workers(signum: int) -> None:
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        while not stopping and all(worker.exitcode is None for worker in workers):
            time.sleep(0.2)
        if not stopping:  # a worker died on its own: stop the others
            print("wecom-bind: a worker process exited; stopping the others", file=sys.stderr, flush=True)
            stop_workers(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker.exitcode is None:
                worker.kill()
                worker.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    clean = all(worker.exitcode == 0 for worker in workers)
    return 0 if stopping and clean else 1


def _log_banner(text: str) -> None:
    """aiohttp's `======== Running on URL ========` banner as a log line instead of text on stdout,
    so that a JSON log holds nothing but JSON lines."""
    first_line = text.splitlines()[0] if text else text
    web_logger.info("serving on %s", first_line.strip("= ").removeprefix("Running on "))
