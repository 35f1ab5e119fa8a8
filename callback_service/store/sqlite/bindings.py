"""The SQLite store's bindings: the rules of handlers.core.rules applied in one transaction, and the reads.

A rule-keeping change is one `BEGIN IMMEDIATE` transaction: read the records the rule asks for,
decide (handlers.core.rules.decide), write what it decided, commit. Nothing can change between the
reads and the writes, as the transaction holds the file's write lock. The phones table is the
phone index (its primary key holds I1 behind the rules); the openid index is the bindings' unique
openid column.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence
from typing import Final, TypeVar

from callback_service.store.common import find_problems, limit_arg, stored_phone
from callback_service.store.rules_runner import MAX_READS, RulesRunner
from callback_service.store.sqlite.base import SqliteBase, Tx
from handlers.core.binding import Actor, AuditAction, AuditRecord, Binding, BindingState
from handlers.core.rules import Decision, Draft, Key, KeyKind, Row, Unread, Value, decide
from handlers.usecases.contracts import StoreUnavailable

T = TypeVar("T")

_SELECT_BINDING: Final = (
    "SELECT member_id, phone, state, openid, lease_expires_at, previous_phone, token, updated_at"
    " FROM bindings"
)
_SELECT_AUDIT: Final = "SELECT id, at, who, source, action, member_id, phone_masked, detail FROM audit"


def _row(values: tuple[object, ...]) -> Row:
    member_id, phone, state, openid, lease, previous, token, updated = values
    member = str(member_id)
    return Row(
        member_id=member,
        phone=stored_phone(phone, member_id=member, record="binding"),
        state=BindingState(str(state)),
        openid=None if openid is None else str(openid),
        lease_expires_at=None if lease is None else float(str(lease)),
        previous_phone=stored_phone(previous, member_id=member, record="binding's previous"),
        token=None if token is None else str(token),
        updated_at=float(str(updated)),
    )


def _read_key(c: sqlite3.Connection, key: Key) -> Value:
    """Read one record a rule asks for."""
    if key.kind is KeyKind.BINDING:
        values = c.execute(_SELECT_BINDING + " WHERE member_id = ?", (key.name,)).fetchone()
        return None if values is None else _row(values)
    if key.kind is KeyKind.PHONE:
        values = c.execute("SELECT member_id FROM phones WHERE phone = ?", (key.name,)).fetchone()
    else:
        values = c.execute("SELECT member_id FROM bindings WHERE openid = ?", (key.name,)).fetchone()
    return None if values is None else str(values[0])


def _apply(tx: Tx, decision: Decision[T], actor: Actor | None) -> None:
    """Write a decision: bindings removed, then saved, then the phone index, then the audit."""
    c = tx.c
    rows = {k.name: v for k, v in decision.writes.items() if k.kind is KeyKind.BINDING}
    # Removed first, so that a binding moved to another member id (rename) frees its unique openid.
    c.executemany(
        "DELETE FROM bindings WHERE member_id = ?", [(m,) for m, row in rows.items() if row is None]
    )
    c.executemany(
        "INSERT INTO bindings (member_id, phone, state, openid, lease_expires_at,"
        " previous_phone, token, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (member_id) DO UPDATE SET phone = excluded.phone, "
        "state = excluded.state, openid = excluded.openid, "
        "lease_expires_at = excluded.lease_expires_at, "
        "previous_phone = excluded.previous_phone, token = excluded.token, "
        "updated_at = excluded.updated_at",
        [
            (
                r.member_id,
                r.phone,
                r.state.value,
                r.openid,
                r.lease_expires_at,
                r.previous_phone,
                r.token,
                r.updated_at,
            )
            for r in rows.values()
            if isinstance(r, Row)
        ],
    )
    for key, holder in decision.writes.items():
        if key.kind is not KeyKind.PHONE:
            continue  # the openid index is the bindings' openid column, written above
        if holder is None:
            c.execute("DELETE FROM phones WHERE phone = ?", (key.name,))
        else:
            c.execute(
                "INSERT INTO phones (phone, member_id) VALUES (?, ?) "
                "ON CONFLICT (phone) DO UPDATE SET member_id = excluded.member_id",
                (key.name, holder),
            )
    if not decision.audits:
        return
    if actor is None:
        raise ValueError("a change that writes audit records needs an actor")
    c.executemany(
        "INSERT INTO audit (at, who, source, action, member_id, phone_masked, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (tx.now, actor.who, actor.source, e.action.value, e.member_id, e.phone_masked, e.detail)
            for e in decision.audits
        ],
    )


def _decided(
    c: sqlite3.Connection, now: float, first: Sequence[Key], rule: Callable[[Draft], T]
) -> Decision[T]:
    """Read the records the rule asks for, first and then one by one, and decide."""
    records: dict[Key, Value] = {key: _read_key(c, key) for key in first}
    for _ in range(MAX_READS):
        try:
            return decide(records, now, rule)
        except Unread as unread:
            records[unread.key] = _read_key(c, unread.key)
    raise StoreUnavailable(f"sqlite: a rule asked for more than {MAX_READS} records")


class SqliteBindings(RulesRunner, SqliteBase):
    """Bindings, their indexes and the audit log on SQLite."""

    async def _decide(
        self, first: Sequence[Key], rule: Callable[[Draft], T], actor: Actor | None, *, guess: bool = False
    ) -> T:
        # guess is not needed: reads inside the transaction cost no round trip.
        def run(tx: Tx) -> T:
            decision = _decided(tx.c, tx.now, first, rule)
            _apply(tx, decision, actor)
            return decision.result()

        return await self._write(run)

    async def _look(self, first: Sequence[Key], rule: Callable[[Draft], T]) -> T:
        now = self._clock()

        def run(c: sqlite3.Connection) -> T:
            c.execute("BEGIN")  # a read transaction: one consistent view, no write lock
            try:
                decision = _decided(c, now, first, rule)
            finally:
                c.execute("COMMIT")
            if decision.writes or decision.audits:
                raise ValueError("a lookup decided to write")
            return decision.result()

        return await self._lookup(run)

    async def get_binding(self, member_id: str) -> Binding | None:
        """Return the member's binding as stored, or None."""
        value = await self._lookup(lambda c: _read_key(c, Key(KeyKind.BINDING, member_id)))
        return value.binding() if isinstance(value, Row) else None

    async def list_bindings(self) -> list[Binding]:
        """Return every binding by member id."""

        def run(c: sqlite3.Connection) -> list[Binding]:
            cur = c.execute(_SELECT_BINDING + " ORDER BY member_id")
            return [_row(values).binding() for values in cur.fetchall()]

        return await self._read(run)

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
            return find_problems(rows, index, openids, audited)

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
            return [_audit_record(v) for v in cur.fetchall()]

        return await self._read(run)

    async def audit_since(self, since: float, *, actions: Collection[AuditAction]) -> list[AuditRecord]:
        """Return the audit records of the given actions written at or after since, oldest first."""
        wanted = sorted({AuditAction(action).value for action in actions})
        if not wanted:
            return []

        def run(c: sqlite3.Connection) -> list[AuditRecord]:
            marks = ", ".join("?" for _ in wanted)
            cur = c.execute(
                _SELECT_AUDIT + f" WHERE at >= ? AND action IN ({marks}) ORDER BY id", (since, *wanted)
            )
            return [_audit_record(v) for v in cur.fetchall()]

        return await self._read(run)

    async def audit_prune(self, before: float, *, member_id: str | None = None) -> int:
        """Delete the audit records written before the time given."""

        def run(tx: Tx) -> int:
            if member_id is None:
                return tx.c.execute("DELETE FROM audit WHERE at < ?", (before,)).rowcount
            where = "DELETE FROM audit WHERE member_id = ? AND at < ?"
            return tx.c.execute(where, (member_id, before)).rowcount

        return await self._write(run)

    async def audit_redact(self, member_id: str | None, text: str, replacement: str) -> int:
        """Replace text in the member's audit details (every member's with None), in one transaction."""
        if not text:
            raise ValueError("audit_redact: nothing to replace")

        def run(tx: Tx) -> int:
            update = "UPDATE audit SET detail = replace(detail, ?, ?) WHERE instr(detail, ?) > 0"
            if member_id is None:
                return tx.c.execute(update, (text, replacement, text)).rowcount
            return tx.c.execute(update + " AND member_id = ?", (text, replacement, text, member_id)).rowcount

        return await self._write(run)


def _audit_record(v: Sequence[object]) -> AuditRecord:
    return AuditRecord(
        id=int(str(v[0])),
        at=float(str(v[1])),
        who=str(v[2]),
        source=str(v[3]),
        action=AuditAction(str(v[4])),
        member_id=str(v[5]),
        phone_masked=None if v[6] is None else str(v[6]),
        detail=str(v[7]),
    )
