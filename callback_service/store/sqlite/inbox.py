"""The SQLite store's durable event inbox: group-committed appends, leases, retries, dead letters."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import cached_property, partial
from typing import Final

from callback_service.store.common import AppendBatcher, PendingAppend, limit_arg, positive
from callback_service.store.sqlite.base import SqliteBase, Tx
from handlers.core.binding import InboxItem, InboxStats
from handlers.usecases.contracts import StoreUnavailable

_SELECT_INBOX: Final = (
    "SELECT id, dedup_key, event_type, payload, attempts, created_at, last_error FROM inbox"
)
# Due events, each either without a member or the first of its member's live events (by create
# time, then id) with none of them leased: one member's events one at a time, in order.
_SELECT_TAKEABLE: Final = (
    _SELECT_INBOX + " AS i WHERE state != 'dead' AND available_at <= :now"  # noqa: S608 - constants
    " AND (member_id IS NULL OR NOT EXISTS ("
    "SELECT 1 FROM inbox AS o WHERE o.member_id = i.member_id AND o.state != 'dead' AND o.id != i.id"
    " AND ((o.create_time, o.id) < (i.create_time, i.id)"
    " OR (o.state = 'leased' AND o.available_at > :now))))"
    " ORDER BY available_at, id LIMIT :limit"
)


class SqliteInbox(SqliteBase):
    """The inbox on the inbox and inbox_dedup tables."""

    @cached_property
    def _appends(self) -> AppendBatcher:
        # Concurrent inbox appends share one transaction.
        return AppendBatcher(self._append_batch, name="sqlite-inbox-flush")

    async def inbox_append(
        self, dedup_key: str, event_type: str, payload: str, *, member_id: str | None = None,
        create_time: int = 0,
    ) -> bool:
        """Append an event unless its dedup key is remembered.

        Concurrent appends share one transaction (a group commit): each caller returns only once
        the transaction holding its event is committed, so an fsync is paid per batch, not per
        callback, and a failed batch fails every caller in it with nothing written.
        """
        if self._closed:
            raise StoreUnavailable("sqlite: store is closed")
        return await self._appends.append(
            PendingAppend(dedup_key, event_type, payload, member_id or None, create_time)
        )

    async def _append_batch(self, batch: list[PendingAppend]) -> list[bool]:
        return await self._write(partial(self._append_rows, batch=batch))

    def _append_rows(self, tx: Tx, *, batch: list[PendingAppend]) -> list[bool]:
        # One dedup query and two executemany for the whole batch, not three statements per event.
        seen = {
            str(key)
            for (key,) in tx.c.execute(
                "SELECT dedup_key FROM inbox_dedup "
                "WHERE dedup_key IN (SELECT value FROM json_each(?)) AND expires_at > ?",
                (json.dumps([item.dedup_key for item in batch]), tx.now),
            )
        }
        appended: list[bool] = []
        fresh: list[PendingAppend] = []
        for item in batch:
            new = item.dedup_key not in seen
            appended.append(new)
            if new:  # of two equal events in one batch, the first is kept and the second is a retry
                seen.add(item.dedup_key)
                fresh.append(item)
        expires_at = tx.now + self._dedup_ttl
        tx.c.executemany(
            "INSERT OR REPLACE INTO inbox_dedup (dedup_key, expires_at) VALUES (?, ?)",
            [(item.dedup_key, expires_at) for item in fresh],
        )
        tx.c.executemany(
            "INSERT INTO inbox (dedup_key, event_type, payload, state, available_at, "
            "created_at, member_id, create_time) VALUES (?, ?, ?, 'ready', ?, ?, ?, ?)",
            [
                (item.dedup_key, item.event_type, item.payload, tx.now, tx.now, item.member_id,
                 item.ordered_time)
                for item in fresh
            ],
        )
        return appended

    async def inbox_take(self, limit: int, *, lease: float) -> list[InboxItem]:
        """Lease due events, a member's only when it is that member's first and none of its is leased."""
        limit = limit_arg(limit)
        lease = positive("lease", lease)

        def run(tx: Tx) -> list[InboxItem]:
            # The transaction (BEGIN IMMEDIATE) holds every process's takes apart, so two workers
            # never both see a member's event as its first with none leased.
            cur = tx.c.execute(_SELECT_TAKEABLE, {"now": tx.now, "limit": limit})
            items = [_item(v) for v in cur.fetchall()]
            tx.c.executemany(
                "UPDATE inbox SET state = 'leased', available_at = ? WHERE id = ?",
                [(tx.now + lease, item.id) for item in items],
            )
            return items

        # A lease or a removal that a power loss undoes only makes an event run again, and the
        # handlers are idempotent (at least once); the append is what must not be lost.
        return await self._write(run, durable=False)

    async def inbox_done(self, item_id: int) -> None:
        """Remove a handled event."""
        await self._write(
            lambda tx: tx.c.execute("DELETE FROM inbox WHERE id = ?", (item_id,)), durable=False
        )

    async def inbox_retry(self, item_id: int, error: str, *, delay: float) -> int:
        """Count a failure and schedule the event again."""

        def run(tx: Tx) -> int:
            values = tx.c.execute(
                "UPDATE inbox SET attempts = attempts + 1, last_error = ?, state = 'ready', "
                "available_at = ? WHERE id = ? AND state != 'dead' RETURNING attempts",
                (error, tx.now + max(0.0, delay), item_id),
            ).fetchone()
            return 0 if values is None else int(values[0])

        return await self._write(run)

    async def inbox_dead(self, item_id: int, error: str) -> None:
        """Move an event to the dead letters."""

        def run(tx: Tx) -> None:
            tx.c.execute(
                "UPDATE inbox SET attempts = attempts + 1, last_error = ?, state = 'dead', "
                "dead_at = ? WHERE id = ? AND state != 'dead'",
                (error, tx.now, item_id),
            )

        await self._write(run)

    async def inbox_list_dead(self, *, limit: int = 100) -> list[InboxItem]:
        """Return dead letters, most recent first."""
        limit = limit_arg(limit)

        def run(c: sqlite3.Connection) -> list[InboxItem]:
            cur = c.execute(
                _SELECT_INBOX + " WHERE state = 'dead' ORDER BY dead_at DESC, id DESC LIMIT ?",
                (limit,),
            )
            return [_item(v) for v in cur.fetchall()]

        return await self._read(run)

    async def inbox_requeue_dead(self, item_ids: Sequence[int] | None = None) -> int:
        """Put dead letters back as due."""
        ids = None if item_ids is None else list(item_ids)

        def run(tx: Tx) -> int:
            update = (
                "UPDATE inbox SET state = 'ready', available_at = ?, attempts = 0, dead_at = NULL "
                "WHERE state = 'dead'"
            )
            if ids is None:
                return tx.c.execute(update, (tx.now,)).rowcount
            return sum(tx.c.execute(update + " AND id = ?", (tx.now, item_id)).rowcount for item_id in ids)

        return await self._write(run)

    async def inbox_drop_dead(self, item_ids: Sequence[int]) -> int:
        """Remove the given dead letters for good."""
        ids = list(item_ids)

        def run(tx: Tx) -> int:
            delete = "DELETE FROM inbox WHERE state = 'dead' AND id = ?"
            return sum(tx.c.execute(delete, (item_id,)).rowcount for item_id in ids)

        return await self._write(run)

    async def inbox_stats(self) -> InboxStats:
        """Return the inbox counts."""
        now = self._clock()

        def run(c: sqlite3.Connection) -> InboxStats:
            values = c.execute(
                "SELECT "
                "coalesce(sum(state = 'ready' OR (state = 'leased' AND available_at <= ?)), 0), "
                "coalesce(sum(state = 'leased' AND available_at > ?), 0), "
                "coalesce(sum(state = 'dead'), 0) FROM inbox",
                (now, now),
            ).fetchone()
            return InboxStats(pending=int(values[0]), leased=int(values[1]), dead=int(values[2]))

        return await self._read(run)

    async def inbox_oldest_pending(self) -> float | None:
        """Return when the oldest event not yet handled was stored."""

        def run(c: sqlite3.Connection) -> float | None:
            # Ids grow with creation: the first live row in id order is the oldest.
            values = c.execute(
                "SELECT created_at FROM inbox WHERE state != 'dead' ORDER BY id LIMIT 1"
            ).fetchone()
            return None if values is None else float(values[0])

        return await self._read(run)


def _item(values: tuple[object, ...]) -> InboxItem:
    item_id, dedup_key, event_type, payload, attempts, created_at, last_error = values
    return InboxItem(
        id=int(str(item_id)),
        dedup_key=str(dedup_key),
        event_type=str(event_type),
        payload=str(payload),
        attempts=int(str(attempts)),
        created_at=float(str(created_at)),
        last_error=None if last_error is None else str(last_error),
    )
