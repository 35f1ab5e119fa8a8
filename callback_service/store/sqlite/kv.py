"""The SQLite store's key-value entries and leased locks."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence

from callback_service.store.common import kv_changes, new_token, positive
from callback_service.store.sqlite.base import SqliteBase, Tx


class SqliteKv(SqliteBase):
    """Entries with expiry and locks, each change one transaction."""

    async def kv_get(self, key: str) -> str | None:
        """Return the value unless absent or expired."""
        now = self._clock()

        def run(c: sqlite3.Connection) -> str | None:
            values = c.execute("SELECT value FROM kv WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
            return None if values is None else str(values[0])

        return await self._lookup(run)

    async def kv_set(self, key: str, value: str, *, ttl: float) -> None:
        """Set the value with a ttl."""
        ttl = positive("ttl", ttl)

        def run(tx: Tx) -> None:
            tx.c.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, tx.now + ttl),
            )

        await self._write(run, durable=False)

    async def kv_set_if_absent(self, key: str, value: str, *, ttl: float) -> bool:
        """Set the value only when absent or expired."""
        ttl = positive("ttl", ttl)

        def run(tx: Tx) -> bool:
            live = tx.c.execute("SELECT 1 FROM kv WHERE key = ? AND expires_at > ?", (key, tx.now)).fetchone()
            if live is not None:
                return False
            tx.c.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, tx.now + ttl),
            )
            return True

        return await self._write(run, durable=False)

    async def kv_get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Return each key's value unless absent or expired, from one read."""
        wanted = list(keys)
        if not wanted:
            return []
        now = self._clock()

        def run(c: sqlite3.Connection) -> list[str | None]:
            marks = ", ".join("?" * len(wanted))
            found = dict(
                c.execute(
                    f"SELECT key, value FROM kv WHERE key IN ({marks}) AND expires_at > ?",  # noqa: S608
                    (*wanted, now),
                ).fetchall()
            )
            return [None if key not in found else str(found[key]) for key in wanted]

        return await self._lookup(run)

    async def kv_apply(
        self,
        sets: Mapping[str, tuple[str, float]],
        *,
        deletes: Collection[str] = (),
        if_absent: Collection[str] = (),
    ) -> bool:
        """Set and delete entries in one transaction, when every key of if_absent is absent or expired."""
        entries, gone, absent = kv_changes(sets, deletes, if_absent)
        if not (entries or gone or absent):
            return True

        def run(tx: Tx) -> bool:
            live = "SELECT 1 FROM kv WHERE key = ? AND expires_at > ?"
            if any(tx.c.execute(live, (key, tx.now)).fetchone() for key in absent):
                return False
            tx.c.executemany(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                [(key, value, tx.now + ttl) for key, (value, ttl) in entries.items()],
            )
            tx.c.executemany("DELETE FROM kv WHERE key = ?", [(key,) for key in gone])
            return True

        return await self._write(run, durable=False)

    async def kv_pop(self, key: str) -> str | None:
        """Read and delete in one transaction."""

        def run(tx: Tx) -> str | None:
            values = tx.c.execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
            if values is None:
                return None
            tx.c.execute("DELETE FROM kv WHERE key = ?", (key,))
            return str(values[0]) if float(values[1]) > tx.now else None

        return await self._write(run, durable=False)

    async def kv_delete(self, key: str) -> None:
        """Delete the entry."""
        await self._write(lambda tx: tx.c.execute("DELETE FROM kv WHERE key = ?", (key,)), durable=False)

    async def kv_delete_prefix(self, prefix: str) -> int:
        """Delete the entries whose key starts with prefix: a range of the key's index."""
        if not prefix:
            raise ValueError("kv_delete_prefix: an empty prefix would delete every entry")
        # Keys compare as UTF-8 bytes, in code point order: the prefix's range ends at its last
        # character's successor.
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return await self._write(
            lambda tx: tx.c.execute("DELETE FROM kv WHERE key >= ? AND key < ?", (prefix, end)).rowcount
        )

    async def kv_incr(self, key: str, *, ttl: float) -> int:
        """Increment a counter that expires ttl seconds after it was created."""
        ttl = positive("ttl", ttl)

        def run(tx: Tx) -> int:
            values = tx.c.execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
            if values is None or float(values[1]) <= tx.now:
                count, expires_at = 1, tx.now + ttl
            else:
                count, expires_at = int(values[0]) + 1, float(values[1])
            tx.c.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, str(count), expires_at),
            )
            return count

        return await self._write(run, durable=False)

    async def kv_incr_under(self, limits: Mapping[str, int], *, ttl: float) -> str | None:
        """Increment every counter in one transaction, unless one has reached its limit."""
        ttl = positive("ttl", ttl)
        wanted = dict(limits)

        def run(tx: Tx) -> str | None:
            counts: dict[str, tuple[int, float]] = {}
            for key, limit in wanted.items():
                values = tx.c.execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
                live = values is not None and float(values[1]) > tx.now
                count = int(values[0]) if live else 0
                if count >= limit:
                    return key
                counts[key] = (count + 1, float(values[1]) if live else tx.now + ttl)
            tx.c.executemany(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                [(key, str(count), expires_at) for key, (count, expires_at) in counts.items()],
            )
            return None

        return await self._write(run, durable=False)

    async def lock_acquire(self, name: str, *, lease: float) -> str | None:
        """Take the named lock for lease seconds."""
        lease = positive("lease", lease)
        token = new_token()

        def run(tx: Tx) -> str | None:
            held = tx.c.execute(
                "SELECT 1 FROM locks WHERE name = ? AND expires_at > ?", (name, tx.now)
            ).fetchone()
            if held is not None:
                return None
            tx.c.execute(
                "INSERT OR REPLACE INTO locks (name, token, expires_at) VALUES (?, ?, ?)",
                (name, token, tx.now + lease),
            )
            return token

        return await self._write(run, durable=False)

    async def lock_release(self, name: str, token: str) -> bool:
        """Release the lock if the token still owns it."""

        def run(tx: Tx) -> bool:
            values = tx.c.execute(
                "SELECT expires_at FROM locks WHERE name = ? AND token = ?", (name, token)
            ).fetchone()
            if values is None:
                return False
            tx.c.execute("DELETE FROM locks WHERE name = ?", (name,))
            return float(values[0]) > tx.now

        return await self._write(run, durable=False)
