"""The SQLite store's copy of the school directory."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from callback_service.store.common import stored_phone
from callback_service.store.sqlite.base import SqliteBase, Tx
from handlers.core.binding import DirectoryEntry


class SqliteDirectory(SqliteBase):
    """The directory table: students by id, with the directory's phone."""

    async def directory_upsert(self, entries: Sequence[DirectoryEntry]) -> int:
        """Insert or replace directory entries in one transaction."""
        rows = [(e.member_id, e.name, e.department, e.phone) for e in entries]

        def run(tx: Tx) -> int:
            tx.c.executemany(
                "INSERT INTO directory (student_id, name, department, phone) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (student_id) DO UPDATE SET name = excluded.name, "
                "department = excluded.department, phone = excluded.phone",
                rows,
            )
            return len(rows)

        return await self._write(run)

    async def directory_get(self, member_id: str) -> DirectoryEntry | None:
        """Return a student's directory entry."""

        def run(c: sqlite3.Connection) -> DirectoryEntry | None:
            values = c.execute(
                "SELECT student_id, name, department, phone FROM directory WHERE student_id = ?",
                (member_id,),
            ).fetchone()
            if values is None:
                return None
            return _entry(values)

        return await self._lookup(run)

    async def directory_count(self) -> int:
        """Return the number of directory entries."""
        return await self._read(lambda c: int(c.execute("SELECT count(*) FROM directory").fetchone()[0]))

    async def directory_list(self) -> list[DirectoryEntry]:
        """Return every directory entry by student id."""
        return await self._read(
            lambda c: [
                _entry(values)
                for values in c.execute(
                    "SELECT student_id, name, department, phone FROM directory ORDER BY student_id"
                )
            ]
        )

    async def directory_delete(self, member_id: str) -> bool:
        """Remove a student's directory entry."""

        def run(tx: Tx) -> bool:
            return tx.c.execute("DELETE FROM directory WHERE student_id = ?", (member_id,)).rowcount > 0

        return await self._write(run)


def _entry(values: tuple[str, str, str, str | None]) -> DirectoryEntry:
    member_id, name, department, text = values
    phone = stored_phone(text, member_id=member_id, record="directory")
    return DirectoryEntry(member_id, name, department, phone)
