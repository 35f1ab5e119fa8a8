"""The SQLite store's schema: one migration per version, applied in one transaction at open."""

from __future__ import annotations

import sqlite3
from typing import Final

from handlers.usecases.contracts import StoreUnavailable

# Each migration is a tuple of statements; index i brings the schema from version i to i + 1.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE directory (
            student_id TEXT PRIMARY KEY, name TEXT NOT NULL, department TEXT NOT NULL, phone TEXT
        )""",
        """CREATE TABLE bindings (
            member_id TEXT PRIMARY KEY,
            phone TEXT,
            state TEXT NOT NULL CHECK (state IN ('pending', 'bound', 'followed')),
            openid TEXT UNIQUE,
            lease_expires_at REAL,
            previous_phone TEXT,
            token TEXT,
            updated_at REAL NOT NULL
        )""",
        # The phone index: its primary key is I1 held by SQLite itself, behind the rules' checks.
        """CREATE TABLE phones (
            phone TEXT PRIMARY KEY,
            member_id TEXT NOT NULL
                REFERENCES bindings (member_id) ON DELETE CASCADE ON UPDATE CASCADE
        )""",
        "CREATE INDEX phones_member ON phones (member_id)",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL, who TEXT NOT NULL, source TEXT NOT NULL, action TEXT NOT NULL,
            member_id TEXT NOT NULL, phone_masked TEXT, detail TEXT NOT NULL
        )""",
        "CREATE INDEX audit_member ON audit (member_id, id)",
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL)",
        "CREATE TABLE locks (name TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at REAL NOT NULL)",
        """CREATE TABLE idempotency (
            key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL
        )""",
        """CREATE TABLE inbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            dedup_key TEXT NOT NULL, event_type TEXT NOT NULL, payload TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('ready', 'leased', 'dead')),
            available_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT, created_at REAL NOT NULL, dead_at REAL
        )""",
        "CREATE INDEX inbox_due ON inbox (available_at, id) WHERE state != 'dead'",
        "CREATE INDEX inbox_dead ON inbox (dead_at, id) WHERE state = 'dead'",
        "CREATE TABLE inbox_dedup (dedup_key TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
    ),
    # The sweep of expired rows (every few hundred writes) reads these by expiry instead of every
    # row: with a morning's sessions in kv (hundreds of thousands) a full scan held the writer 40 ms.
    (
        "CREATE INDEX kv_expiry ON kv (expires_at)",
        "CREATE INDEX locks_expiry ON locks (expires_at)",
        # A page's double submit is guarded by its result entry in kv now: the table is unused.
        "DROP TABLE idempotency",
        "CREATE INDEX inbox_dedup_expiry ON inbox_dedup (expires_at)",
    ),
    # What WeCom last said about each member (MemberSeen): status NULL when WeCom has no such member.
    (
        """CREATE TABLE members_seen (
            member_id TEXT PRIMARY KEY,
            status INTEGER CHECK (status IN (1, 2, 4, 5)),
            seen_at REAL NOT NULL,
            source TEXT NOT NULL
        )""",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file's schema up to SCHEMA_VERSION; StoreUnavailable when it is newer than this code."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        values = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        current = int(values[0]) if values and values[0] is not None else 0
        if current > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"sqlite: schema version {current} is newer than this code ({SCHEMA_VERSION})"
            )
        for version in range(current, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        if current < SCHEMA_VERSION:
            # One row: the version the file is at.
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
