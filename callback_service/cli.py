"""The `wecom-bind` command: argv, environment and logging live here; the app factory stays pure."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from callback_service.app import create_app
from callback_service.logs import PathOnlyAccessLogger, configure_logging
from config import Settings, SettingsError, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"wecom-bind: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.log_level)
    web.run_app(
        create_app(settings),
        host=args.host,
        port=args.port,
        access_log_class=PathOnlyAccessLogger,
        print=lambda line: print(line, flush=True),
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from callback_service.demo import create_demo_app

    configure_logging("INFO")
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    web.run_app(
        create_demo_app(host=args.host, port=args.port, data_dir=data_dir),
        host=args.host,
        port=args.port,
        access_log_class=PathOnlyAccessLogger,
        print=lambda line: print(line, flush=True),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line, with one subcommand per task."""
    parser = argparse.ArgumentParser(prog="wecom-bind", description=__doc__)
    parser.add_argument("--config", metavar="PATH", help="a TOML settings file (or set WECOM_BIND_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(run=_serve)

    demo = commands.add_parser("demo", help="run the service beside the WeCom and CAS sandbox, seeded")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--data-dir", default="data", help="where the demo's SQLite file lives")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in argv."""
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
