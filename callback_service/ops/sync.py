"""`wecom-bind sync [--dry-run]`: record what WeCom says about every member (handlers.usecases.sync)
and print the organisation's statuses, in WeCom's words, overall and by 院系.

Run it once on an existing organisation before the QR code is published (docs/wecom-setup.md, "the
first morning on an existing organisation"), and again whenever the administrators changed members
in the console: it is idempotent, and a run that was interrupted resumes where it stopped.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final, TextIO

import aiohttp

from callback_service.clients.budget import CallBudget
from callback_service.clients.wecom import ConfigurationError, WeComClient, WeComError, WeComUnavailable
from callback_service.ops.reconcile import EXIT_WECOM
from config import Settings
from handlers.core.member import MemberStatus
from handlers.usecases.contracts import Store
from handlers.usecases.sync import SyncReport, sync_organisation

Print = Callable[[str], None]

SHOWN_IDS: Final = 20
"""How many ids of each list the report prints; the rest are counted."""


def status_counts(counts: Counter[MemberStatus]) -> str:
    """Counts in WeCom's own words, in its order: 已激活 n, 已禁用 n, 未激活 n, 退出企业 n."""
    return ", ".join(f"{status.label} {counts.get(status, 0)}" for status in MemberStatus)


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:SHOWN_IDS])
    return shown + (f" … and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")


def print_report(report: SyncReport, out: Print) -> None:
    """The report, as `wecom-bind sync` prints it."""
    if report.resumed_from is not None:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.resumed_from))
        out(f"resumed the run started at {started} ({report.skipped} members already read)")
    out(f"WeCom: {report.members} members: {status_counts(report.totals)}")
    if report.unreadable:
        out(f"status unknown for {len(report.unreadable)} (outside the app's 可见范围: widen it to the whole"
            f" organisation, 应用管理 → the app): {_ids(report.unreadable)}")
    if report.gone:
        out(f"no longer in WeCom: {len(report.gone)}: {_ids(report.gone)}")
    out("by 院系:")
    for department in sorted(report.by_department):
        out(f"  {department}: {status_counts(report.by_department[department])}")
    out(f"directory students with no member in WeCom: {len(report.without_member)}"
        + (f": {_ids(report.without_member)}" if report.without_member else ""))
    out(f"WeCom members in no directory entry: {len(report.outside_directory)}"
        + (f": {_ids(report.outside_directory)}" if report.outside_directory else ""))
    if report.dry_run:
        out("dry run: nothing was recorded")
    else:
        out(f"recorded: {report.changed} members' status new or changed")


class ProgressBar:
    """`read 1200/30000 [#####.....]` on one line of a terminal, rewritten in place; silent elsewhere."""

    def __init__(self, stream: TextIO, *, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._shown = -1
        self.active = stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        """Show the progress (at most once per percent)."""
        if not self.active or total <= 0:
            return
        percent = done * 100 // total
        if percent == self._shown and done != total:
            return
        self._shown = percent
        filled = self._width * done // total
        bar = "#" * filled + "." * (self._width - filled)
        self._stream.write(f"\rreading statuses {done}/{total} [{bar}]")
        if done == total:
            self._stream.write("\n")
        self._stream.flush()


async def sync_command(
    store: Store, settings: Settings, *, dry_run: bool, out: Print, err: Print, stream: TextIO | None = None
) -> int:
    """`wecom-bind sync`: 0 when done, EXIT_WECOM when WeCom cannot be read (run it again to resume)."""
    # The command's own budget, of the same size as a service process's share (README, settings).
    budget = CallBudget(per_minute=settings.wecom_calls_per_minute, per_hour=settings.wecom_calls_per_hour)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, connect=5)) as session:
        def client(secret: str, *, contacts: bool) -> WeComClient:
            return WeComClient(
                session=session, api_base=settings.wecom_api_base, corp_id=settings.corp_id,
                secret=secret, store=store, contacts=contacts, budget=budget,
            )

        lister = client(settings.contacts_secret.get_secret_value(), contacts=True)
        reader = client(settings.app_secret.get_secret_value(), contacts=False)
        progress = ProgressBar(stream if stream is not None else sys.stderr)
        try:
            report = await sync_organisation(
                lister=lister, reader=reader, store=store, clock=time.time,
                departments={ident: name for name, ident in settings.departments.items()},
                dry_run=dry_run, progress=progress,
            )
        except WeComUnavailable as exc:
            err(f"wecom-bind: WeCom is unavailable ({exc.errmsg}); what was read is recorded: run sync again"
                " to resume")
            return EXIT_WECOM
        except ConfigurationError as exc:
            err(f"wecom-bind: WeCom refused (errcode {exc.errcode}): {exc.describe()}; run sync again to"
                " resume once it is fixed")
            return EXIT_WECOM
        except WeComError as exc:
            err(f"wecom-bind: WeCom refused: errcode {exc.errcode} {exc.errmsg}; run sync again to resume")
            return EXIT_WECOM
    print_report(report, out)
    return 0
