"""`wecom-bind reconcile`: the command around the reconciliation use case (handlers.usecases.reconcile):
the WeCom clients from settings, the refusals named by secret, the exit statuses.
"""

from __future__ import annotations

import time
from typing import Final

from callback_service import compose
from callback_service.ops.admin import admin_actor
from config import Settings
from handlers.core.reconcile import Drift, DriftKind, order_fixes
from handlers.core.wecom_errors import ConfigurationError, WeComError, WeComUnavailable
from handlers.usecases.contracts import Store
from handlers.usecases.reconcile import (
    DriftChanged,
    FixReport,
    ListThenRead,
    NamedSecret,
    Print,
    find_drift,
    fix_all,
    fix_drift,
    reconcile,
    refused_secret,
)

__all__ = [
    "Drift",
    "DriftChanged",
    "DriftKind",
    "FixReport",
    "ListThenRead",
    "find_drift",
    "fix_all",
    "fix_drift",
    "order_fixes",
    "reconcile",
    "reconcile_command",
]

EXIT_WECOM: Final = 4
"""The exit status when WeCom cannot be read or refuses the secret (the store's is 3, in the CLI)."""


async def reconcile_command(store: Store, settings: Settings, *, fix: bool, out: Print, err: Print) -> int:
    """`wecom-bind reconcile [--fix]`: read WeCom with the contacts-sync secret; exit 0 when in step
    (or fixed), 1 when drift is left, EXIT_WECOM when WeCom cannot be read."""
    async with compose.http_session(compose.COMMAND_HTTP_TIMEOUT) as session:
        clients = compose.wecom_clients(settings, session=session, store=store)
        contacts = NamedSecret(
            ListThenRead(
                NamedSecret(clients.contacts,
                            "the contacts-sync secret (WECOM_BIND_CONTACTS_SECRET, 管理工具 → 通讯录同步)"),
                NamedSecret(clients.app, "the app's secret (WECOM_BIND_APP_SECRET, 应用管理 → the app)"),
            ),
            "",
        )
        try:
            return await reconcile(
                store, contacts, fix=fix, out=out, now=time.time(), actor=admin_actor("reconcile"),
                departments=settings.departments,
            )
        except WeComUnavailable as exc:
            err(f"wecom-bind: WeCom is unavailable ({exc.errmsg}); nothing was fixed")
            return EXIT_WECOM
        except ConfigurationError as exc:
            # 48009, 60020, 48002...: reading on would only be refused again, and WeCom blocks an
            # IP that keeps presenting a secret it refuses.
            which = refused_secret(exc, "the contacts-sync secret")
            err(f"wecom-bind: WeCom refused {which} (errcode {exc.errcode}): "
                f"{exc.describe()}; nothing was fixed")
            return EXIT_WECOM
        except WeComError as exc:
            err(f"wecom-bind: WeCom refused: errcode {exc.errcode} {exc.errmsg}; nothing was fixed")
            return EXIT_WECOM
