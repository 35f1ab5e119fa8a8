"""The SQLite store's record of WeCom's word on each member (MemberSeen): one row per member."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from callback_service.store.common import newest_seen
from callback_service.store.sqlite.base import SqliteBase, Tx
from handlers.core.member import MemberSeen, MemberStatus

_COLUMNS = "member_id, status, seen_at, source"


def _seen(values: tuple[str, int | None, float, str]) -> MemberSeen:
    member_id, status, seen_at, source = values
    return MemberSeen(member_id, None if status is None else MemberStatus(status), float(seen_at), source)


class SqliteMembers(SqliteBase):
    """The members_seen table."""

    async def record_members(self, seen: Sequence[MemberSeen]) -> int:
        """Upsert the newest record of each member in one transaction; return the statuses changed."""
        newest = newest_seen(seen)
        if not newest:
            return 0

        def run(tx: Tx) -> int:
            changed = 0
            for record in newest.values():
                status = None if record.status is None else int(record.status)
                stored = tx.c.execute(
                    "SELECT status, seen_at FROM members_seen WHERE member_id = ?", (record.member_id,)
                ).fetchone()
                if stored is not None and record.seen_at < stored[1]:
                    continue
                if stored is None or stored[0] != status:
                    changed += 1
                tx.c.execute(
                    f"INSERT INTO members_seen ({_COLUMNS}) VALUES (?, ?, ?, ?) "  # noqa: S608
                    "ON CONFLICT (member_id) DO UPDATE SET status = excluded.status, "
                    "seen_at = excluded.seen_at, source = excluded.source",
                    (record.member_id, status, record.seen_at, record.source),
                )
            return changed

        return await self._write(run)

    async def member_seen(self, member_id: str) -> MemberSeen | None:
        """Return the member's record."""

        def run(c: sqlite3.Connection) -> MemberSeen | None:
            values = c.execute(
                f"SELECT {_COLUMNS} FROM members_seen WHERE member_id = ?",  # noqa: S608
                (member_id,),
            ).fetchone()
            return None if values is None else _seen(values)

        return await self._lookup(run)

    async def list_members_seen(self) -> list[MemberSeen]:
        """Return every record by member id."""
        return await self._read(
            lambda c: [
                _seen(values)
                for values in c.execute(f"SELECT {_COLUMNS} FROM members_seen ORDER BY member_id")  # noqa: S608
            ]
        )

    async def forget_member_seen(self, member_id: str) -> bool:
        """Remove the member's record (a data erasure)."""
        return await self._write(
            lambda tx: tx.c.execute("DELETE FROM members_seen WHERE member_id = ?", (member_id,)).rowcount > 0
        )
