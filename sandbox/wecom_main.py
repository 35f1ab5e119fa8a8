"""`python -m sandbox.wecom`: the WeCom emulator on its own port, playing an existing organisation.

A university rehearses its first morning against an export of its own organisation: the service
runs with its real settings except WECOM_BIND_WECOM_API_BASE, which points here, and the emulator
pushes its callbacks to the service's URL with the service's Token and EncodingAESKey.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from sandbox.wecom import create_wecom_sandbox
from sandbox.wecom_members import MembersFileError, read_members
from sandbox.wecom_push import CallbackTarget
from sandbox.wecom_state import APP, CONTACTS, LOOPBACK, Member


def parser() -> argparse.ArgumentParser:
    """The command line of the stand-alone emulator."""
    p = argparse.ArgumentParser(
        prog="python -m sandbox.wecom",
        description="The WeCom emulator on its own port (an existing organisation with --members).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--corp-id", required=True)
    p.add_argument("--agent-id", type=int, required=True)
    p.add_argument("--app-secret", required=True)
    p.add_argument("--contacts-secret", required=True)
    p.add_argument("--corp-name", default="上海工程技术大学")
    p.add_argument("--members", type=Path, help="CSV: userid,name,department,mobile,status")
    p.add_argument("--callback-url", help="the app's 接收消息 URL (the service's /wecom/callback)")
    p.add_argument("--token", help="the app's callback Token")
    p.add_argument("--encoding-aes-key", help="the app's callback EncodingAESKey")
    p.add_argument("--contacts-callback-url",
                   help="the contacts-sync event server (the service's /wecom/contacts-callback)")
    p.add_argument("--contacts-token")
    p.add_argument("--contacts-encoding-aes-key")
    p.add_argument("--visible", type=int, action="append", metavar="DEPARTMENT",
                   help="the app's visible range, one department id each (default: everyone)")
    p.add_argument("--trusted-ip", action="append", metavar="NETWORK",
                   help="企业可信IP of both secrets (default: the loopback only)")
    p.add_argument("--hidden-as-empty", action="store_true",
                   help='answer the fields an app may not see as "" instead of leaving them out')
    p.add_argument("--event-server-before-2022", action="store_true",
                   help="the contacts-sync event server hears every change (saved before 2022-08-15)")
    p.add_argument("--assistant-reads", action="store_true",
                   help="the contacts-sync assistant reads members (its address trusted before 2022-08-15)")
    return p


def _target(url: str | None, token: str | None, key: str | None, what: str) -> CallbackTarget | None:
    if url is None:
        return None
    if not token or not key:
        raise SystemExit(f"python -m sandbox.wecom: {what} needs its Token and EncodingAESKey too")
    return CallbackTarget(url=url, token=token, encoding_aes_key=key)


def build(args: argparse.Namespace) -> web.Application:
    """The emulator's application for parsed arguments; SystemExit naming what is wrong."""
    if args.app_secret == args.contacts_secret:
        raise SystemExit("python -m sandbox.wecom: the app's and the contacts-sync secrets must differ")
    members: tuple[Member, ...] = ()
    departments = {1: args.corp_name}
    if args.members is not None:
        try:
            organisation = read_members(args.members)
        except MembersFileError as exc:
            raise SystemExit(f"python -m sandbox.wecom: {exc}") from None
        members = organisation.members
        departments |= {d: f"部门{d}" for d in sorted(organisation.departments) if d != 1}
    for department in args.visible or ():
        if department not in departments:
            raise SystemExit(f"python -m sandbox.wecom: --visible {department}: no member is in it")
    trusted = tuple(args.trusted_ip) if args.trusted_ip else LOOPBACK
    return create_wecom_sandbox(
        corp_id=args.corp_id,
        secrets={args.app_secret: APP, args.contacts_secret: CONTACTS},
        agent_id=args.agent_id,
        callback=_target(args.callback_url, args.token, args.encoding_aes_key, "--callback-url"),
        contacts_callback=_target(
            args.contacts_callback_url, args.contacts_token, args.contacts_encoding_aes_key,
            "--contacts-callback-url",
        ),
        corp_name=args.corp_name,
        departments=departments,
        members=members,
        visible_departments=args.visible,
        contacts_trusted_ips=trusted,
        app_trusted_ips=trusted,
        contacts_reads_details=args.assistant_reads,
        hidden_as_empty=args.hidden_as_empty,
        contacts_event_server_since_2022=not args.event_server_before_2022,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and serve until interrupted."""
    args = parser().parse_args(argv)
    app = build(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
