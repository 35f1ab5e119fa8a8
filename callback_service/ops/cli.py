"""The `wecom-bind` command: argv, environment and logging live here; the app factory stays pure."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from callback_service.ops import admin, backup
from config import Settings, SettingsError, env_name, load_public_base_url, load_settings

# Each command imports what it runs, when it runs: a command that reads the store need not load the
# web app, and `demo` hands over to `python -m sandbox` before anything heavy is imported (the CLI's
# tests start dozens of processes; each import of the whole service costs about 0.6 s of CPU).
if TYPE_CHECKING:
    from aiohttp import web

    from handlers.usecases.contracts import Store


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"wecom-bind: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def _run(app: web.Application, args: argparse.Namespace) -> int:
    """Serve the app on --host and --port until SIGINT or SIGTERM, with the query-free access log."""
    from callback_service.ops.processes import run_app
    from handlers.usecases.contracts import StoreUnavailable

    try:
        run_app(app, host=args.host, port=args.port)
    except StoreUnavailable as exc:  # at start: unreachable, or a Redis that does not persist
        print(f"wecom-bind: the store is unavailable: {exc}", file=sys.stderr)
        return 3
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _serve(args: argparse.Namespace) -> int:
    from callback_service.logs import configure_logging
    from callback_service.ops import packages
    from callback_service.ops.processes import run_processes

    problems = packages.collisions()
    if problems:
        for problem in problems:
            print(f"wecom-bind: {problem}; refusing to start (uninstall the other)", file=sys.stderr)
        return 2
    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format or "json")
    if args.port is None:
        args.port = settings.port
    if args.processes == 1:
        return _run(_service_app(settings), args)
    return run_processes(lambda: _service_app(settings), host=args.host, port=args.port,
                         processes=args.processes)


def _service_app(settings: Settings) -> web.Application:
    # The console sits above the app factory (it uses the pages' sessions): mounted here, not by it.
    from callback_service.admin import setup_admin
    from callback_service.web.app import create_app

    app = create_app(settings)
    setup_admin(app)
    return app


def _demo(args: argparse.Namespace) -> int:
    # The emulators are a distribution of their own (sandbox/), never installed with the service:
    # the demo is theirs (`python -m sandbox`), and this command only hands over to it.
    if importlib.util.find_spec("sandbox") is None:
        print("wecom-bind: the demo needs the emulators: pip install -e ./sandbox (make demo does)",
              file=sys.stderr)
        return 2
    demo = [sys.executable, "-m", "sandbox", "--host", args.host, "--port", str(args.port),
            "--data-dir", args.data_dir]
    if args.wecom_members:
        demo += ["--wecom-members", args.wecom_members]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, demo)  # noqa: S606 - our own interpreter, arguments from argparse


StoreCommand: TypeAlias = "Callable[[Store, argparse.Namespace], Awaitable[int]]"


def _store_command(run: StoreCommand, *, creates: bool = False) -> Callable[[argparse.Namespace], int]:
    """Wrap an admin command: load the settings, open the store, run, close. Unless the command
    creates a store, a SQLite file that does not exist is refused rather than created empty."""

    def command(args: argparse.Namespace) -> int:
        import asyncio

        from callback_service import compose
        from callback_service.logs import configure_logging
        from handlers.usecases.contracts import StoreUnavailable

        settings = _settings(args)
        configure_logging("WARNING")
        url = settings.store_url.get_secret_value()
        if not creates and url.startswith(backup.SQLITE_PREFIX) and not backup.sqlite_path(url).is_file():
            # A SQLite URL holds no password: it may be shown.
            print(
                f"wecom-bind: no store at {url} ({env_name('store_url')}): the file does not exist;"
                " only serve, demo, directory import and sync create one",
                file=sys.stderr,
            )
            return 3

        async def main() -> int:
            store = await compose.open_settings_store(settings)
            try:
                return await run(store, args)
            finally:
                await store.close()

        try:
            return asyncio.run(main())
        except StoreUnavailable as exc:
            print(f"wecom-bind: the store is unavailable: {exc}", file=sys.stderr)
            return 3

    return command


def _add_admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    binding = commands.add_parser("binding", help="show or release a member's binding")
    binding_commands = binding.add_subparsers(dest="binding_command", required=True, metavar="ACTION")
    show = binding_commands.add_parser("show", help="a member's binding and its recent audit records")
    show.add_argument("member_id", metavar="ID", type=_member_id)
    show.set_defaults(run=_store_command(lambda store, a: admin.binding_show(store, a.member_id, print)))
    by_phone = binding_commands.add_parser("phone", help="the binding that holds a phone (shown masked)")
    by_phone.add_argument(
        "phone", metavar="PHONE", help="as a student types it; - reads it from stdin (kept out of history)"
    )
    by_phone.set_defaults(
        run=_store_command(lambda store, a: admin.binding_by_phone(store, _phone_arg(a.phone), print))
    )
    release = binding_commands.add_parser(
        "release", help="free a member's phone and binding (audited), and the phone in WeCom where it allows"
    )
    release.add_argument("member_id", metavar="ID", type=_member_id)
    release.add_argument("--reason", required=True, metavar="TEXT", type=_reason)
    release.set_defaults(run=_store_command(_binding_release))

    invite = commands.add_parser(
        "invite", help="invite members again on purpose (the flow invites each member once), audited"
    )
    invite.add_argument("member_ids", nargs="+", metavar="ID", type=_member_id)
    invite.add_argument("--reason", required=True, metavar="TEXT", type=_reason)
    invite.set_defaults(run=_store_command(_invite))

    audit = commands.add_parser("audit", help="the audit log, newest first; or prune it")
    audit.add_argument("--member", metavar="ID", type=_member_id)
    audit.add_argument("--limit", type=_positive_int, default=100)
    audit.set_defaults(run=_store_command(lambda store, a: admin.audit(store, a.member, a.limit, print)))
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    prune = audit_commands.add_parser(
        "prune", help="delete the records before DATE (UTC), never inside WECOM_BIND_AUDIT_RETENTION_DAYS"
    )
    prune.add_argument("--before", required=True, type=_date, metavar="YYYY-MM-DD")
    prune.set_defaults(run=_store_command(_audit_prune))

    student = commands.add_parser("student", help="a student's data request (PIPL): export or erase")
    student_commands = student.add_subparsers(dest="student_command", required=True, metavar="ACTION")
    export = student_commands.add_parser("export", help="print everything held about the student as JSON")
    export.add_argument("member_id", metavar="ID", type=_member_id)
    export.add_argument(
        "--reason", default="data request", metavar="TEXT", type=_reason, help="for the audit log"
    )
    export.set_defaults(run=_store_command(_student_export))
    erase = student_commands.add_parser(
        "erase",
        help="remove everything held about the student but the audit in retention; scrub the store's files",
    )
    erase.add_argument("member_id", metavar="ID", type=_member_id)
    erase.add_argument(
        "--reason", default="data request", metavar="TEXT", type=_reason, help="for the audit log"
    )
    erase.set_defaults(run=_store_command(_student_erase))

    inbox = commands.add_parser("inbox", help="the callback inbox")
    inbox_commands = inbox.add_subparsers(dest="inbox_command", required=True, metavar="ACTION")
    status = inbox_commands.add_parser("status", help="pending, leased and dead counts; the dead letters")
    status.set_defaults(run=_store_command(lambda store, a: admin.inbox_status(store, print)))
    retry = inbox_commands.add_parser("retry-dead", help="put every dead letter back in the inbox")
    retry.set_defaults(run=_store_command(lambda store, a: admin.inbox_retry_dead(store, print)))

    reconcile = commands.add_parser("reconcile", help="compare WeCom's members with the store")
    reconcile.add_argument("--fix", action="store_true", help="fix each drift from WeCom's truth, audited")
    reconcile.set_defaults(run=_store_command(_reconcile))
    sync = commands.add_parser(
        "sync", help="record every WeCom member's status (run it before publishing the QR code)"
    )
    sync.add_argument("--dry-run", action="store_true", help="read and report; record nothing")
    # sync may be the first command run on a new deployment, before serve: it creates the store.
    sync.set_defaults(run=_store_command(_sync, creates=True))


def _member_id(text: str) -> str:
    # An id or a reason goes into the audit log and onto the terminal: a newline in it would forge a line.
    if not text or not text.isprintable():
        raise argparse.ArgumentTypeError(f"not a member id: {text!r}")
    return text


def _reason(text: str) -> str:
    if not text.isprintable():
        raise argparse.ArgumentTypeError(f"must be one line of printable text: {text!r}")
    return text


def _phone_arg(text: str) -> str:
    return sys.stdin.readline().strip() if text == "-" else text


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


async def _audit_prune(store: Store, args: argparse.Namespace) -> int:
    from callback_service.ops import personal_data

    retention = _settings(args).audit_retention_days
    try:
        count = await personal_data.prune_audit(store, args.before, now=time.time(), retention_days=retention)
    except personal_data.RetentionError as exc:
        print(f"wecom-bind: {exc}", file=sys.stderr)
        return 2
    print(f"{count} audit record(s) before {args.before.isoformat()} deleted")
    return 0


def _unknown_student(member_id: str) -> int:
    print(f"wecom-bind: student {member_id}: the store holds nothing about this id", file=sys.stderr)
    return 1


async def _student_export(store: Store, args: argparse.Namespace) -> int:
    from callback_service.ops import personal_data

    try:
        data = await personal_data.export_student(
            store, args.member_id, now=time.time(), actor=admin.admin_actor(args.reason)
        )
    except personal_data.UnknownStudent:
        return _unknown_student(args.member_id)
    print(json.dumps(data, ensure_ascii=False, indent=2))
    return 0


async def _student_erase(store: Store, args: argparse.Namespace) -> int:
    from callback_service.ops import personal_data

    try:
        erasure = await personal_data.erase_student(
            store, args.member_id, now=time.time(), retention_days=_settings(args).audit_retention_days,
            actor=admin.admin_actor(args.reason),
        )
    except personal_data.UnknownStudent:
        return _unknown_student(args.member_id)
    print(
        f"student {args.member_id}: binding {'removed' if erasure.binding else 'none'}, directory entry "
        f"{'removed' if erasure.directory else 'none'}, {erasure.sessions} session(s) ended, "
        f"{erasure.dead_letters} dead letter(s) removed, "
        f"{erasure.audit_records} audit record(s) past retention deleted, WeCom status "
        f"{'removed' if erasure.member_seen else 'none'}, SMS counters of {erasure.sms_phones} phone(s) "
        f"and {erasure.kv_entries} other entr(ies) removed"
    )
    print(erasure.scrubbed)
    return 0


async def _binding_release(store: Store, args: argparse.Namespace) -> int:
    from callback_service.ops.release import release_command

    return await release_command(store, _settings(args), args.member_id, args.reason, print)


async def _invite(store: Store, args: argparse.Namespace) -> int:
    from callback_service.ops.release import invite_command

    return await invite_command(store, _settings(args), list(args.member_ids), args.reason, print)


async def _reconcile(store: Store, args: argparse.Namespace) -> int:
    from callback_service.ops.reconcile import reconcile_command

    return await reconcile_command(
        store, _settings(args), fix=args.fix, out=lambda line: print(admin.printable(line)),
        err=lambda line: print(admin.printable(line), file=sys.stderr),
    )


async def _sync(store: Store, args: argparse.Namespace) -> int:
    from callback_service.ops.sync import sync_command

    return await sync_command(
        store, _settings(args), dry_run=args.dry_run, out=print,
        err=lambda line: print(line, file=sys.stderr),
    )


def _qrcode(args: argparse.Namespace) -> int:
    from callback_service import qr

    # The poster needs the public URL only: an operator may draw it before the service is configured.
    try:
        url = qr.bind_url_under(load_public_base_url(args.config))
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"wecom-bind: {problem}", file=sys.stderr)
        return 2
    if args.out is None:
        print(qr.qr_text(url), end="")
        print(url)
        return 0
    try:
        qr.write_bind_qr(url, Path(args.out))
    except qr.UnknownQrFormat as exc:
        print(f"wecom-bind: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"wecom-bind: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{args.out}: {url}")
    return 0


def _directory_import(args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"wecom-bind: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2

    async def run(store: Store, a: argparse.Namespace) -> int:
        from callback_service import directory

        report = await directory.import_directory(
            store, data, dry_run=a.dry_run, allow_shared_phones=a.allow_shared_phones, encoding=a.encoding
        )
        for line in report.lines():
            print(line)
        return 0 if report.ok else 1

    return _store_command(run, creates=True)(args)


def _backup(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        source = backup.sqlite_path(settings.store_url.get_secret_value())
        size = backup.backup_sqlite(source, Path(args.path))
    except backup.BackupError as exc:
        print(f"wecom-bind: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"wecom-bind: backup failed: {exc}", file=sys.stderr)
        return 3
    print(f"{args.path}: {size} bytes, a consistent copy of {source}")
    return 0


def _add_page_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    qrcode = commands.add_parser("qrcode", help="the QR code of {public_base_url}/bind, for posters")
    qrcode.add_argument("--out", metavar="FILE", help="write a .png or .svg file instead of printing it")
    qrcode.set_defaults(run=_qrcode)

    dir_parser = commands.add_parser("directory", help="the school directory (学号, 姓名, 院系, 手机)")
    dir_commands = dir_parser.add_subparsers(dest="directory_command", required=True, metavar="ACTION")
    load = dir_commands.add_parser(
        "import", help="import a CSV (UTF-8 or GB18030), all rows or none; bad rows are listed"
    )
    load.add_argument("file", metavar="FILE.csv")
    load.add_argument("--dry-run", action="store_true", help="check the file and write nothing")
    load.add_argument(
        "--allow-shared-phones",
        action="store_true",
        help="import students who share a phone with another row (each is listed as a warning)",
    )
    load.add_argument(
        "--encoding",
        choices=("utf-8", "gb18030"),
        default="auto",
        help="gb18030: read a file that is not all UTF-8 as GB18030 (Excel's CSV on a Chinese Windows);"
        " utf-8: refuse any other. Unset: UTF-8, or GB18030 when no UTF-8 character is in the file",
    )
    load.set_defaults(run=_directory_import)


def build_parser() -> argparse.ArgumentParser:
    """The command line, with one subcommand per task."""
    parser = argparse.ArgumentParser(prog="wecom-bind", description=__doc__)
    parser.add_argument("--config", metavar="PATH", help="a TOML settings file (or set WECOM_BIND_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, help=f"default: the port setting, {env_name('port')} (8080)")
    serve.add_argument("--processes", type=_positive_int, default=1, metavar="N",
                       help="N worker processes on one port (SO_REUSEPORT), each its own store connection")
    serve.set_defaults(run=_serve)

    demo = commands.add_parser("demo", help="run the service beside the WeCom and CAS sandbox, seeded")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--data-dir", default="data", help="where the demo's SQLite file lives")
    demo.add_argument("--wecom-members", metavar="FILE",
                      help="an existing organisation: CSV userid,name,department,mobile,status")
    demo.set_defaults(run=_demo)

    backup_parser = commands.add_parser(
        "backup", help="copy the SQLite store to PATH while the service runs (SQLite's online backup)"
    )
    backup_parser.add_argument("path", metavar="PATH", help="a new file")
    backup_parser.set_defaults(run=_backup)

    _add_admin_commands(commands)
    _add_page_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in argv."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`wecom-bind student export ID | head`): end quietly, as a command that
        # SIGPIPE ends does, and keep Python's last flush at exit from failing again on the pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return result


if __name__ == "__main__":
    sys.exit(main())
