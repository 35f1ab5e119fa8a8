"""The embedded store: one SQLite file in WAL mode, synchronous=FULL, one writer connection.

Every operation runs as one synchronous function on a dedicated thread that owns the connection,
so a rule-keeping operation is one `BEGIN IMMEDIATE` transaction from its first read to its
commit: no other coroutine's statements can interleave, and other processes on the same file
wait on SQLite's lock. The schema carries a version, and migrations bring an older file up to date.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

from callback_service.store.common import (
    DEFAULT_DEDUP_TTL,
    AppendBatcher,
    PendingAppend,
    find_problems,
    limit_arg,
    masked,
    new_token,
    phone_arg,
    positive,
)
from callback_service.store.thread import StoreThread
from handlers.binding import (
    AccountFollowed,
    Actor,
    AuditAction,
    AuditRecord,
    Binding,
    BindingState,
    Claim,
    ClaimInProgress,
    ClaimLost,
    DirectoryEntry,
    InboxItem,
    InboxStats,
    OpenidConflict,
    PhoneTaken,
)
from handlers.contracts import Clock, StoreUnavailable
from handlers.phone import Phone, mask_phone

T = TypeVar("T")

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
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_PURGE_EVERY: Final = 512  # writes between sweeps of expired kv, lock, idempotency and dedup rows

_SELECT_BINDING: Final = (
    "SELECT member_id, phone, state, openid, lease_expires_at, previous_phone, token, updated_at"
    " FROM bindings"
)
_SELECT_AUDIT: Final = "SELECT id, at, who, source, action, member_id, phone_masked, detail FROM audit"
_SELECT_INBOX: Final = (
    "SELECT id, dedup_key, event_type, payload, attempts, created_at, last_error FROM inbox"
)


@dataclass(frozen=True, slots=True)
class _Row:
    """A bindings row, with the claim token that Binding does not show."""

    member_id: str
    phone: str | None
    state: BindingState
    openid: str | None
    lease_expires_at: float | None
    previous_phone: str | None
    token: str | None
    updated_at: float

    def binding(self) -> Binding:
        return Binding(
            member_id=self.member_id,
            phone=self.phone,
            state=self.state,
            openid=self.openid,
            lease_expires_at=self.lease_expires_at,
            previous_phone=self.previous_phone,
            updated_at=self.updated_at,
        )


def _row(values: tuple[object, ...]) -> _Row:
    member_id, phone, state, openid, lease, previous, token, updated = values
    return _Row(
        member_id=str(member_id),
        phone=None if phone is None else str(phone),
        state=BindingState(str(state)),
        openid=None if openid is None else str(openid),
        lease_expires_at=None if lease is None else float(str(lease)),
        previous_phone=None if previous is None else str(previous),
        token=None if token is None else str(token),
        updated_at=float(str(updated)),
    )


def _binding_or_none(row: _Row | None) -> Binding | None:
    return None if row is None else row.binding()


class _Tx:
    """The rule-keeping steps inside one transaction: loads, saves, the phone index and audit."""

    def __init__(self, conn: sqlite3.Connection, now: float, actor: Actor | None) -> None:
        self.c = conn
        self.now = now
        self.actor = actor

    def load(self, member_id: str) -> _Row | None:
        cur = self.c.execute(_SELECT_BINDING + " WHERE member_id = ?", (member_id,))
        values = cur.fetchone()
        return None if values is None else _row(values)

    def holder(self, phone: str) -> str | None:
        values = self.c.execute("SELECT member_id FROM phones WHERE phone = ?", (phone,)).fetchone()
        return None if values is None else str(values[0])

    def save(self, row: _Row) -> _Row:
        row = replace(row, updated_at=self.now)
        self.c.execute(
            "INSERT INTO bindings (member_id, phone, state, openid, lease_expires_at,"
            " previous_phone, token, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (member_id) DO UPDATE SET phone = excluded.phone, "
            "state = excluded.state, openid = excluded.openid, "
            "lease_expires_at = excluded.lease_expires_at, "
            "previous_phone = excluded.previous_phone, token = excluded.token, "
            "updated_at = excluded.updated_at",
            (
                row.member_id,
                row.phone,
                row.state.value,
                row.openid,
                row.lease_expires_at,
                row.previous_phone,
                row.token,
                row.updated_at,
            ),
        )
        return row

    def remove(self, member_id: str) -> None:
        self.c.execute("DELETE FROM bindings WHERE member_id = ?", (member_id,))

    def index(self, phone: str, member_id: str) -> None:
        self.c.execute(
            "INSERT INTO phones (phone, member_id) VALUES (?, ?) "
            "ON CONFLICT (phone) DO UPDATE SET member_id = excluded.member_id",
            (phone, member_id),
        )

    def unindex(self, phone: str | None, member_id: str) -> None:
        if phone is not None:
            self.c.execute("DELETE FROM phones WHERE phone = ? AND member_id = ?", (phone, member_id))

    def audit(self, action: AuditAction, member_id: str, phone: str | None, detail: str) -> None:
        assert self.actor is not None
        self.c.execute(
            "INSERT INTO audit (at, who, source, action, member_id, phone_masked, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.now,
                self.actor.who,
                self.actor.source,
                action.value,
                member_id,
                mask_phone(phone) if phone else None,
                detail,
            ),
        )

    def revert(self, row: _Row, action: AuditAction) -> _Row | None:
        """Undo a pending claim: free its phone, back to the previous bound phone or to nothing."""
        self.unindex(row.phone, row.member_id)
        previous = row.previous_phone
        result: _Row | None = None
        if previous is not None:
            result = self.save(
                replace(
                    row,
                    phone=previous,
                    state=BindingState.BOUND,
                    lease_expires_at=None,
                    previous_phone=None,
                    token=None,
                )
            )
        else:
            self.remove(row.member_id)
        detail = f"back to {masked(previous)}" if previous else "back to unbound"
        self.audit(action, row.member_id, row.phone, detail)
        return result

    def expired(self, row: _Row) -> bool:
        return (
            row.state is BindingState.PENDING
            and row.lease_expires_at is not None
            and row.lease_expires_at <= self.now
        )

    def holds(self, row: _Row | None, phone: str) -> bool:
        """True when the row really holds the phone (not a stale claim that ran out)."""
        if row is None:
            return False
        if row.phone == phone:
            return not self.expired(row)
        return row.previous_phone == phone

    def strip(self, row: _Row, phone: str, taker: str) -> None:
        """Take the phone away from another member because WeCom's truth gives it to taker."""
        if row.state is BindingState.PENDING and row.phone == phone:
            self.revert(row, AuditAction.CLAIM_DROPPED)
            return
        self.unindex(phone, row.member_id)
        if row.state is BindingState.PENDING:
            self.save(replace(row, previous_phone=None))
        elif row.state is BindingState.FOLLOWED:
            self.save(replace(row, phone=None))
        else:
            self.remove(row.member_id)
        self.audit(AuditAction.PHONE_LOST, row.member_id, phone, f"taken by {taker}")


class SqliteStore:
    """The store on one SQLite file (see the module docstring)."""

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
        self._writes = 0
        self._closed = False
        # Concurrent inbox appends share one transaction.
        self._appends = AppendBatcher(self._append_batch, name="sqlite-inbox-flush")

    @classmethod
    async def open(
        cls, path: str, *, clock: Clock = time.time, dedup_ttl: float = DEFAULT_DEDUP_TTL
    ) -> SqliteStore:
        """Open (creating or migrating) the file; StoreUnavailable when it cannot be used."""
        store = cls(path, clock=clock, dedup_ttl=dedup_ttl)
        try:
            await store._call(store._connect)
        except BaseException:
            await store.close()
            raise
        return store

    # plumbing

    def _connect(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if self._path != ":memory:" and str(mode).lower() != "wal":
                raise StoreUnavailable(f"sqlite: WAL mode refused ({mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
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
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

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

    async def _write(self, fn: Callable[[_Tx], T], actor: Actor | None = None, *, durable: bool = True) -> T:
        """Run fn in one write transaction, committed with an fsync unless durable=False.

        durable=False is for what expires on its own and a power loss may take: sessions (a student
        logs in again), a page's idempotency and result records, rate counters, cached tokens, locks.
        Under WAL, synchronous=NORMAL still survives a process crash; only an OS crash or power loss
        can drop such a commit, and the next durable commit's fsync covers it as well.
        """
        now = self._clock()

        def run() -> T:
            conn = self._connection()
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(_Tx(conn, now, actor))
                    self._writes += 1
                    if self._writes % _PURGE_EVERY == 0:
                        self._purge(conn, now)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous = FULL")
            return result

        return await self._call(run)

    @staticmethod
    def _purge(conn: sqlite3.Connection, now: float) -> None:
        for table in ("kv", "locks", "idempotency", "inbox_dedup"):
            conn.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))  # noqa: S608

    # lifecycle

    async def ping(self) -> None:
        """Check that the file answers."""
        await self._read(lambda c: c.execute("SELECT max(version) FROM schema_version").fetchone())

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        if self._closed:
            return
        self._closed = True

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await self._thread.run(shut)
        finally:
            self._thread.stop()

    # school directory

    async def directory_upsert(self, entries: Sequence[DirectoryEntry]) -> int:
        """Insert or replace directory entries in one transaction."""
        rows = [(e.student_id, e.name, e.department, e.phone) for e in entries]

        def run(tx: _Tx) -> int:
            tx.c.executemany(
                "INSERT INTO directory (student_id, name, department, phone) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (student_id) DO UPDATE SET name = excluded.name, "
                "department = excluded.department, phone = excluded.phone",
                rows,
            )
            return len(rows)

        return await self._write(run)

    async def directory_get(self, student_id: str) -> DirectoryEntry | None:
        """Return a student's directory entry."""

        def run(c: sqlite3.Connection) -> DirectoryEntry | None:
            values = c.execute(
                "SELECT student_id, name, department, phone FROM directory WHERE student_id = ?",
                (student_id,),
            ).fetchone()
            if values is None:
                return None
            return DirectoryEntry(values[0], values[1], values[2], values[3])

        return await self._read(run)

    async def directory_count(self) -> int:
        """Return the number of directory entries."""
        return await self._read(lambda c: int(c.execute("SELECT count(*) FROM directory").fetchone()[0]))

    # bindings: reads

    async def get_binding(self, member_id: str) -> Binding | None:
        """Return the member's binding."""
        return await self._read(lambda c: _binding_or_none(_Tx(c, 0.0, None).load(member_id)))

    async def get_binding_by_phone(self, phone: Phone) -> Binding | None:
        """Return the binding holding the phone."""
        phone = phone_arg(phone)
        now = self._clock()

        def run(c: sqlite3.Connection) -> Binding | None:
            tx = _Tx(c, now, None)
            holder = tx.holder(phone)
            row = None if holder is None else tx.load(holder)
            return row.binding() if row is not None and tx.holds(row, phone) else None

        return await self._read(run)

    async def get_binding_by_openid(self, openid: str) -> Binding | None:
        """Return the binding followed by the openid."""

        def run(c: sqlite3.Connection) -> Binding | None:
            values = c.execute(_SELECT_BINDING + " WHERE openid = ?", (openid,)).fetchone()
            return None if values is None else _row(values).binding()

        return await self._read(run)

    async def list_bindings(self) -> list[Binding]:
        """Return every binding by member id."""

        def run(c: sqlite3.Connection) -> list[Binding]:
            cur = c.execute(_SELECT_BINDING + " ORDER BY member_id")
            return [_row(values).binding() for values in cur.fetchall()]

        return await self._read(run)

    # bindings: the rules

    async def claim_phone(self, member_id: str, phone: Phone, *, lease: float, actor: Actor) -> Claim:
        """Hold the phone for the member under a lease (I1, I3, one claim per member)."""
        phone = phone_arg(phone)
        lease = positive("lease", lease)
        token = new_token()

        def run(tx: _Tx) -> Claim:
            lease_until = tx.now + lease
            own = tx.load(member_id)
            stale_own = own is not None and tx.expired(own)
            if own is not None and own.state is BindingState.PENDING and not stale_own:
                raise ClaimInProgress(member_id, own.phone)
            # What the member holds once its own stale claim (if any) is undone.
            current = own.previous_phone if stale_own and own else (own.phone if own else None)
            if own is not None and own.state is BindingState.FOLLOWED and own.phone != phone:
                raise AccountFollowed(member_id, phone)
            holder_id = tx.holder(phone)
            holder = None
            if holder_id is not None and holder_id != member_id:
                holder = tx.load(holder_id)
                if tx.holds(holder, phone):
                    raise PhoneTaken(member_id, phone)
            # Checks are done: from here on, only writes.
            if stale_own and own is not None:
                tx.revert(own, AuditAction.CLAIM_EXPIRED)
            if current == phone:
                return Claim(member_id, phone, "", None, None, actor, already_bound=True)
            if holder is not None and tx.expired(holder) and holder.phone == phone:
                tx.revert(holder, AuditAction.CLAIM_EXPIRED)
            tx.save(
                _Row(
                    member_id=member_id,
                    phone=phone,
                    state=BindingState.PENDING,
                    openid=None,
                    lease_expires_at=lease_until,
                    previous_phone=current,
                    token=token,
                    updated_at=tx.now,
                )
            )
            tx.index(phone, member_id)
            tx.audit(
                AuditAction.CLAIM,
                member_id,
                phone,
                f"previous {masked(current)}" if current else "",
            )
            return Claim(member_id, phone, token, lease_until, current, actor)

        return await self._write(run, actor)

    async def commit_claim(self, claim: Claim) -> Binding:
        """Make the claimed phone the bound one (I2)."""

        def run(tx: _Tx) -> Binding:
            row = tx.load(claim.member_id)
            if claim.already_bound:
                if row is None or row.state is BindingState.PENDING or row.phone != claim.phone:
                    raise ClaimLost(claim.member_id, claim.phone)
                return row.binding()
            if row is None or row.state is not BindingState.PENDING or row.token != claim.token:
                raise ClaimLost(claim.member_id, claim.phone)
            previous = row.previous_phone
            tx.unindex(previous, row.member_id)
            saved = tx.save(
                replace(
                    row,
                    state=BindingState.BOUND,
                    lease_expires_at=None,
                    previous_phone=None,
                    token=None,
                )
            )
            tx.audit(
                AuditAction.BIND,
                row.member_id,
                row.phone,
                f"replaces {masked(previous)}" if previous else "",
            )
            return saved.binding()

        return await self._write(run, claim.actor)

    async def release_claim(self, claim: Claim) -> bool:
        """Give the claim up."""
        if claim.already_bound:
            return True

        def run(tx: _Tx) -> bool:
            row = tx.load(claim.member_id)
            if row is None or row.state is not BindingState.PENDING or row.token != claim.token:
                return False
            tx.revert(row, AuditAction.RELEASE)
            return True

        return await self._write(run, claim.actor)

    async def follow(self, member_id: str, openid: str, *, actor: Actor) -> Binding:
        """Record the follow (I4)."""

        def run(tx: _Tx) -> Binding:
            row = tx.load(member_id)
            if row is not None and row.state is BindingState.FOLLOWED:
                if row.openid == openid:
                    return row.binding()
                raise OpenidConflict(member_id, openid)
            values = tx.c.execute("SELECT member_id FROM bindings WHERE openid = ?", (openid,)).fetchone()
            if values is not None and values[0] != member_id:
                raise OpenidConflict(member_id, openid)
            if row is not None and row.state is BindingState.PENDING:
                row = tx.revert(row, AuditAction.CLAIM_DROPPED)
            saved = tx.save(
                _Row(
                    member_id=member_id,
                    phone=row.phone if row else None,
                    state=BindingState.FOLLOWED,
                    openid=openid,
                    lease_expires_at=None,
                    previous_phone=None,
                    token=None,
                    updated_at=tx.now,
                )
            )
            tx.audit(AuditAction.FOLLOW, member_id, saved.phone, f"openid {openid}")
            return saved.binding()

        return await self._write(run, actor)

    async def unfollow(self, member_id: str, *, actor: Actor) -> Binding | None:
        """Record the unfollow."""

        def run(tx: _Tx) -> Binding | None:
            row = tx.load(member_id)
            if row is None or row.state is not BindingState.FOLLOWED:
                return _binding_or_none(row)
            result: Binding | None = None
            if row.phone is not None:
                result = tx.save(replace(row, state=BindingState.BOUND, openid=None)).binding()
            else:
                tx.remove(member_id)
            tx.audit(AuditAction.UNFOLLOW, member_id, row.phone, f"openid {row.openid}")
            return result

        return await self._write(run, actor)

    async def set_member_phone(
        self, member_id: str, phone: Phone | None, *, take: bool, actor: Actor
    ) -> Binding | None:
        """Settle the member's phone from WeCom's truth."""
        wanted = None if phone is None else phone_arg(phone)

        def run(tx: _Tx) -> Binding | None:
            holder: _Row | None = None
            if wanted is not None:
                holder_id = tx.holder(wanted)
                if holder_id is not None and holder_id != member_id:
                    holder = tx.load(holder_id)
                    if tx.holds(holder, wanted) and not take:
                        raise PhoneTaken(member_id, wanted)
            row = tx.load(member_id)
            if row is not None and row.state is BindingState.PENDING:
                row = tx.revert(row, AuditAction.CLAIM_DROPPED)
            if wanted is None:
                if row is None or row.phone is None:
                    return _binding_or_none(row)
                tx.unindex(row.phone, member_id)
                result: Binding | None = None
                if row.state is BindingState.FOLLOWED:
                    result = tx.save(replace(row, phone=None)).binding()
                else:
                    tx.remove(member_id)
                tx.audit(AuditAction.SETTLE, member_id, row.phone, "phone removed")
                return result
            if row is not None and row.phone == wanted:
                return row.binding()
            if holder is not None:
                if tx.holds(holder, wanted):
                    tx.strip(holder, wanted, member_id)
                elif tx.expired(holder) and holder.phone == wanted:
                    tx.revert(holder, AuditAction.CLAIM_EXPIRED)
            old = row.phone if row else None
            tx.unindex(old, member_id)
            followed = row is not None and row.state is BindingState.FOLLOWED
            saved = tx.save(
                _Row(
                    member_id=member_id,
                    phone=wanted,
                    state=BindingState.FOLLOWED if followed else BindingState.BOUND,
                    openid=row.openid if row else None,
                    lease_expires_at=None,
                    previous_phone=None,
                    token=None,
                    updated_at=tx.now,
                )
            )
            tx.index(wanted, member_id)
            tx.audit(AuditAction.SETTLE, member_id, wanted, f"replaces {masked(old)}" if old else "")
            return saved.binding()

        return await self._write(run, actor)

    async def audit_conflict(self, member_id: str, phone: Phone | None, detail: str, *, actor: Actor) -> None:
        """Record a refused change."""
        wanted = None if phone is None else phone_arg(phone)

        def run(tx: _Tx) -> None:
            tx.audit(AuditAction.CONFLICT, member_id, wanted, detail)

        await self._write(run, actor)

    async def delete_member(self, member_id: str, *, actor: Actor) -> bool:
        """Remove the member's binding."""

        def run(tx: _Tx) -> bool:
            row = tx.load(member_id)
            if row is None:
                return False
            tx.remove(member_id)  # the phone index follows by ON DELETE CASCADE
            tx.audit(AuditAction.DELETE, member_id, row.phone, "")
            return True

        return await self._write(run, actor)

    async def rename_member(self, old_id: str, new_id: str, *, actor: Actor) -> Binding | None:
        """Move a binding to a new member id."""

        def run(tx: _Tx) -> Binding | None:
            row = tx.load(old_id)
            if row is None or old_id == new_id:
                return _binding_or_none(row)
            stale = tx.load(new_id)
            if stale is not None:
                tx.remove(new_id)
                tx.audit(AuditAction.DELETE, new_id, stale.phone, f"replaced by rename of {old_id}")
            # ON UPDATE CASCADE moves the phone index along.
            tx.c.execute(
                "UPDATE bindings SET member_id = ?, updated_at = ? WHERE member_id = ?",
                (new_id, tx.now, old_id),
            )
            tx.audit(AuditAction.RENAME, old_id, row.phone, f"to {new_id}")
            tx.audit(AuditAction.RENAME, new_id, row.phone, f"from {old_id}")
            moved = tx.load(new_id)
            assert moved is not None
            return moved.binding()

        return await self._write(run, actor)

    async def integrity_problems(self) -> list[str]:
        """Check the invariants across bindings, the phone index and the audit log."""

        def run(c: sqlite3.Connection) -> list[str]:
            c.execute("BEGIN")
            try:
                rows = [_row(v) for v in c.execute(_SELECT_BINDING)]
                index = {str(p): str(m) for p, m in c.execute("SELECT phone, member_id FROM phones")}
                audited = {str(m) for (m,) in c.execute("SELECT DISTINCT member_id FROM audit")}
            finally:
                c.execute("COMMIT")
            openids = {row.openid: row.member_id for row in rows if row.openid is not None}
            return find_problems(
                [row.binding() for row in rows],
                {row.member_id: row.token for row in rows},
                index,
                openids,
                audited,
            )

        return await self._read(run)

    # audit log

    async def audit_list(self, *, member_id: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """Return audit records, newest first."""
        limit = limit_arg(limit)

        def run(c: sqlite3.Connection) -> list[AuditRecord]:
            if member_id is None:
                cur = c.execute(_SELECT_AUDIT + " ORDER BY id DESC LIMIT ?", (limit,))
            else:
                cur = c.execute(
                    _SELECT_AUDIT + " WHERE member_id = ? ORDER BY id DESC LIMIT ?",
                    (member_id, limit),
                )
            return [
                AuditRecord(
                    id=int(v[0]),
                    at=float(v[1]),
                    who=str(v[2]),
                    source=str(v[3]),
                    action=AuditAction(str(v[4])),
                    member_id=str(v[5]),
                    phone_masked=None if v[6] is None else str(v[6]),
                    detail=str(v[7]),
                )
                for v in cur.fetchall()
            ]

        return await self._read(run)

    # idempotency keys

    async def idempotency_put(self, key: str, value: str, *, ttl: float) -> str | None:
        """First writer wins for ttl seconds."""
        ttl = positive("ttl", ttl)

        def run(tx: _Tx) -> str | None:
            existing = tx.c.execute(
                "SELECT value FROM idempotency WHERE key = ? AND expires_at > ?", (key, tx.now)
            ).fetchone()
            if existing is not None:
                return str(existing[0])
            tx.c.execute(
                "INSERT OR REPLACE INTO idempotency (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, tx.now + ttl),
            )
            return None

        return await self._write(run, durable=False)

    # key-value entries and locks

    async def kv_get(self, key: str) -> str | None:
        """Return the value unless absent or expired."""
        now = self._clock()

        def run(c: sqlite3.Connection) -> str | None:
            values = c.execute("SELECT value FROM kv WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
            return None if values is None else str(values[0])

        return await self._read(run)

    async def kv_set(self, key: str, value: str, *, ttl: float) -> None:
        """Set the value with a ttl."""
        ttl = positive("ttl", ttl)

        def run(tx: _Tx) -> None:
            tx.c.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, tx.now + ttl),
            )

        await self._write(run, durable=False)

    async def kv_set_if_absent(self, key: str, value: str, *, ttl: float) -> bool:
        """Set the value only when absent or expired."""
        ttl = positive("ttl", ttl)

        def run(tx: _Tx) -> bool:
            live = tx.c.execute("SELECT 1 FROM kv WHERE key = ? AND expires_at > ?", (key, tx.now)).fetchone()
            if live is not None:
                return False
            tx.c.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, tx.now + ttl),
            )
            return True

        return await self._write(run, durable=False)

    async def kv_pop(self, key: str) -> str | None:
        """Read and delete in one transaction."""

        def run(tx: _Tx) -> str | None:
            values = tx.c.execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
            if values is None:
                return None
            tx.c.execute("DELETE FROM kv WHERE key = ?", (key,))
            return str(values[0]) if float(values[1]) > tx.now else None

        return await self._write(run, durable=False)

    async def kv_delete(self, key: str) -> None:
        """Delete the entry."""
        await self._write(lambda tx: tx.c.execute("DELETE FROM kv WHERE key = ?", (key,)), durable=False)

    async def kv_incr(self, key: str, *, ttl: float) -> int:
        """Increment a counter that expires ttl seconds after it was created."""
        ttl = positive("ttl", ttl)

        def run(tx: _Tx) -> int:
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

    async def lock_acquire(self, name: str, *, lease: float) -> str | None:
        """Take the named lock for lease seconds."""
        lease = positive("lease", lease)
        token = new_token()

        def run(tx: _Tx) -> str | None:
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

        def run(tx: _Tx) -> bool:
            values = tx.c.execute(
                "SELECT expires_at FROM locks WHERE name = ? AND token = ?", (name, token)
            ).fetchone()
            if values is None:
                return False
            tx.c.execute("DELETE FROM locks WHERE name = ?", (name,))
            return float(values[0]) > tx.now

        return await self._write(run, durable=False)

    # durable event inbox

    async def inbox_append(self, dedup_key: str, event_type: str, payload: str) -> bool:
        """Append an event unless its dedup key is remembered.

        Concurrent appends share one transaction (a group commit): each caller returns only once
        the transaction holding its event is committed, so an fsync is paid per batch, not per
        callback, and a failed batch fails every caller in it with nothing written.
        """
        if self._closed:
            raise StoreUnavailable("sqlite: store is closed")
        return await self._appends.append(PendingAppend(dedup_key, event_type, payload))

    async def _append_batch(self, batch: list[PendingAppend]) -> list[bool]:
        return await self._write(partial(self._append_rows, batch=batch))

    def _append_rows(self, tx: _Tx, *, batch: list[PendingAppend]) -> list[bool]:
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
            "created_at) VALUES (?, ?, ?, 'ready', ?, ?)",
            [(item.dedup_key, item.event_type, item.payload, tx.now, tx.now) for item in fresh],
        )
        return appended

    async def inbox_take(self, limit: int, *, lease: float) -> list[InboxItem]:
        """Lease due events."""
        limit = limit_arg(limit)
        lease = positive("lease", lease)

        def run(tx: _Tx) -> list[InboxItem]:
            cur = tx.c.execute(
                _SELECT_INBOX + " WHERE state != 'dead' AND available_at <= ? "
                "ORDER BY available_at, id LIMIT ?",
                (tx.now, limit),
            )
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

        def run(tx: _Tx) -> int:
            values = tx.c.execute(
                "UPDATE inbox SET attempts = attempts + 1, last_error = ?, state = 'ready', "
                "available_at = ? WHERE id = ? AND state != 'dead' RETURNING attempts",
                (error, tx.now + max(0.0, delay), item_id),
            ).fetchone()
            return 0 if values is None else int(values[0])

        return await self._write(run)

    async def inbox_dead(self, item_id: int, error: str) -> None:
        """Move an event to the dead letters."""

        def run(tx: _Tx) -> None:
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

        def run(tx: _Tx) -> int:
            update = (
                "UPDATE inbox SET state = 'ready', available_at = ?, attempts = 0, dead_at = NULL "
                "WHERE state = 'dead'"
            )
            if ids is None:
                return tx.c.execute(update, (tx.now,)).rowcount
            return sum(tx.c.execute(update + " AND id = ?", (tx.now, item_id)).rowcount for item_id in ids)

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

    # personal data (PIPL): small and self-contained, so that they move with the backend

    async def directory_delete(self, student_id: str) -> bool:
        """Remove a student's directory entry."""

        def run(tx: _Tx) -> bool:
            return tx.c.execute("DELETE FROM directory WHERE student_id = ?", (student_id,)).rowcount > 0

        return await self._write(run)

    async def audit_note(self, member_id: str, action: AuditAction, detail: str, *, actor: Actor) -> None:
        """Append an audit record that changes nothing else."""

        def run(tx: _Tx) -> None:
            tx.audit(action, member_id, None, detail)

        await self._write(run, actor)

    async def audit_prune(self, before: float, *, member_id: str | None = None) -> int:
        """Delete the audit records written before the time given."""

        def run(tx: _Tx) -> int:
            if member_id is None:
                return tx.c.execute("DELETE FROM audit WHERE at < ?", (before,)).rowcount
            return tx.c.execute(
                "DELETE FROM audit WHERE member_id = ? AND at < ?", (member_id, before)
            ).rowcount

        return await self._write(run)

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
