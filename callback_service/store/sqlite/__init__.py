"""The embedded store: one SQLite file in WAL mode, synchronous=FULL, one writer connection.

Parts: base (the connection, its thread, one transaction per change), schema (versioned
migrations), bindings (the rules of handlers.core.rules read, decided and applied in one transaction;
the audit log), directory, members (WeCom's word on each member), kv (entries and locks) and inbox.
"""

from __future__ import annotations

from callback_service.store.sqlite.bindings import SqliteBindings
from callback_service.store.sqlite.directory import SqliteDirectory
from callback_service.store.sqlite.inbox import SqliteInbox
from callback_service.store.sqlite.kv import SqliteKv
from callback_service.store.sqlite.members import SqliteMembers
from callback_service.store.sqlite.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SqliteStore"]


class SqliteStore(SqliteBindings, SqliteDirectory, SqliteMembers, SqliteKv, SqliteInbox):
    """The store on one SQLite file (see the package docstring)."""
