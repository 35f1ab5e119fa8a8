"""The SQLite store's plumbing: one writer connection on a thread of its own, one transaction per change.

Every change runs as one synchronous function on a dedicated thread that owns the connection,
so a change is one `BEGIN IMMEDIATE` transaction from its first read to its commit: no other
coroutine's statements can interleave, and other processes on the same file wait on SQLite's lock.
A point read (a few rows by key) runs on the event loop's thread instead, through a read-only
connection: under WAL a reader never waits for a writer, and the hop to the store's thread and back
costs several times the read itself. Scans (lists, counts, checks) still go to the thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self, TypeVar

from callback_service.store.common import DEFAULT_DEDUP_TTL, positive
from callback_service.store.sqlite.schema import migrate
from callback_service.store.thread import StoreThread
from handlers.usecases.contracts import Clock, StoreUnavailable

T = TypeVar("T")

_PURGE_EVERY: Final = 512  # writes between sweeps of expired kv, lock and dedup rows


@dataclass(frozen=True, slots=True)
class Tx:
    """The connection inside one write transaction, and the time it runs at."""

    c: sqlite3.Connection
    now: float


class SqliteBase:
    """The connection, its thread, and the read and write transactions every part runs in."""

    def __init__(
        self,
        path: str,
        *,
        clock: Clock = time.time,
        dedup_ttl: float = DEFAULT_DEDUP_TTL,
        busy_timeout: float = 5.0,
    ) -> None:
        self._path = path
        self._clock = clock
        self._dedup_ttl = positive("dedup_ttl", dedup_ttl)
        self._busy_timeout = busy_timeout
        self._thread = StoreThread("sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._durable = True
        """Whether the writer connection commits with synchronous=FULL (else NORMAL)."""
        self._writes = 0
        self._closed = False

    @classmethod
    async def open(cls, path: str, *, clock: Clock = time.time, dedup_ttl: float = DEFAULT_DEDUP_TTL) -> Self:
        """Open (creating or migrating) the file; StoreUnavailable when it cannot be used."""
        store = cls(path, clock=clock, dedup_ttl=dedup_ttl)
        try:
            await store._call(store._connect)
        except BaseException:
            await store.close()
            raise
        return store

    def _connect(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            # Processes opening one new file at once (serve --processes) race to turn it to WAL, and
            # SQLite answers that race "database is locked" without waiting on its busy handler.
            deadline = time.monotonic() + self._busy_timeout
            while True:
                try:
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
                    time.sleep(0.01)
            if self._path != ":memory:" and str(mode).lower() != "wal":
                raise StoreUnavailable(f"sqlite: WAL mode refused ({mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            # Deleted content is overwritten with zeros, not left in free space and free pages: an
            # erased student's phone must not stay readable in the file (or in the WAL's next frames).
            conn.execute("PRAGMA secure_delete = ON")
            migrate(conn)
            if self._path != ":memory:":  # another connection to :memory: would be another database
                # No busy wait: a read that SQLite answers busy (a WAL being recovered) goes to the thread.
                reader = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
                reader.execute("PRAGMA query_only = ON")
                self._reader = reader
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreUnavailable("sqlite: store is closed")
        try:
            return await self._thread.run(fn)
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            # RuntimeError: the thread was stopped under us by close().
            raise StoreUnavailable(f"sqlite: {type(exc).__name__}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable("sqlite: store is closed")
        return self._conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(lambda: fn(self._connection()))

    async def _lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a point read on the event loop's thread (see the module's docstring); on the store's
        thread when SQLite answers busy, or for an in-memory database."""
        reader = self._reader
        if self._closed or reader is None:
            return await self._read(fn)
        try:
            return fn(reader)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise StoreUnavailable(f"sqlite: {type(exc).__name__}: {exc}") from exc
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"sqlite: {type(exc).__name__}: {exc}") from exc
        return await self._read(fn)

    async def _write(self, fn: Callable[[Tx], T], *, durable: bool = True) -> T:
        """Run fn in one write transaction, committed with an fsync unless durable=False.

        durable=False is for what expires on its own and a power loss may take: sessions (a student
        logs in again), a page's result records, rate counters, cached tokens, locks.
        Under WAL, synchronous=NORMAL still survives a process crash; only an OS crash or power loss
        can drop such a commit, and the next durable commit's fsync covers it as well.
        """
        now = self._clock()

        def run() -> T:
            conn = self._connection()
            # The level is set only when it changes: two statements less for most writes.
            if self._durable != durable:
                conn.execute("PRAGMA synchronous = FULL" if durable else "PRAGMA synchronous = NORMAL")
                self._durable = durable
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(Tx(conn, now))
                self._writes += 1
                if self._writes % _PURGE_EVERY == 0:
                    self._purge(conn, now)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return await self._call(run)

    @staticmethod
    def _purge(conn: sqlite3.Connection, now: float) -> None:
        for table in ("kv", "locks", "inbox_dedup"):
            conn.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))  # noqa: S608

    async def scrub(self) -> str:
        """Checkpoint the WAL into the file and truncate it: the deleted rows' old pages, which the WAL
        still holds after a delete (secure_delete zeroes the new ones only), leave the disk."""
        if self._path == ":memory:":
            return "sqlite: in memory, nothing on disk"

        def run() -> tuple[int, int, int]:
            # TRUNCATE waits (the busy timeout) for readers of older snapshots, then empties the WAL.
            busy, frames, moved = self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return int(busy), int(frames), int(moved)

        busy, _frames, _moved = await self._call(run)
        if busy:
            return (
                "sqlite: the WAL was not truncated (another process held an older snapshot):"
                " erased data stays in it until the next checkpoint; run the erase again when it is quiet"
            )
        return "sqlite: WAL checkpointed and truncated"

    async def ping(self) -> None:
        """Check that the file answers."""
        await self._read(lambda c: c.execute("SELECT max(version) FROM schema_version").fetchone())

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        if self._closed:
            return
        self._closed = True

        def shut() -> None:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await self._thread.run(shut)
        finally:
            self._thread.stop()
