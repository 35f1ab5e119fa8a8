"""`python -m sandbox` (or `wecom-bind-demo`): the demo, the service beside its WeCom and CAS emulators.

The service's own command (`wecom-bind demo`) forwards here without importing the emulators, which
are a distribution of their own and never ship with the service.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from callback_service.logs import configure_logging
from callback_service.ops.processes import run_app
from config import env_name
from handlers.usecases.contracts import StoreUnavailable
from sandbox.demo import create_demo_app
from sandbox.wecom_members import MembersFileError


def build_parser() -> argparse.ArgumentParser:
    """The demo's command line."""
    parser = argparse.ArgumentParser(prog="wecom-bind-demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-dir", default="data", help="where the demo's SQLite file lives")
    parser.add_argument("--wecom-members", metavar="FILE",
                        help="an existing organisation: CSV userid,name,department,mobile,status")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo until SIGINT or SIGTERM."""
    args = build_parser().parse_args(argv)
    # The demo makes up its own settings; only the log format comes from the environment.
    log_format = os.environ.get(env_name("log_format"), "text")
    if log_format not in ("json", "text"):
        print(f"wecom-bind-demo: {env_name('log_format')}: must be json or text", file=sys.stderr)
        return 2
    configure_logging("INFO", "json" if log_format == "json" else "text")
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    members = Path(args.wecom_members) if args.wecom_members else None
    try:
        app = create_demo_app(host=args.host, port=args.port, data_dir=data_dir, wecom_members=members)
    except MembersFileError as exc:
        print(f"wecom-bind-demo: --wecom-members: {exc}", file=sys.stderr)
        return 2
    try:
        run_app(app, host=args.host, port=args.port)
    except StoreUnavailable as exc:
        print(f"wecom-bind-demo: the store is unavailable: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
