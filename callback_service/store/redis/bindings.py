"""The Redis store's bindings: the rules of handlers.core.rules applied by one generic compare-and-apply.

A change reads the records its rule asks for (MGET), decides (handlers.core.rules.decide), then runs
_APPLY, which knows no rule: it checks that every key read still holds the value read, and only
then applies the decision's writes (SET, DEL, SADD, SREM, the audit's INCR and LPUSH). When a key
changed meanwhile, nothing is written and the change reads and decides again. A refusal is checked
the same way, with no writes. Every key is named in KEYS, all under the deployment's hash tag.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from redis.exceptions import WatchError

from callback_service.store.common import find_problems, limit_arg
from callback_service.store.redis.base import RedisBase
from callback_service.store.redis.layout import glob_escape, row_from_json, row_json
from callback_service.store.rules_runner import MAX_READS, RulesRunner
from handlers.core.binding import Actor, AuditAction, AuditRecord, Binding
from handlers.core.rules import Decision, Draft, Key, KeyKind, Row, Unread, Value, decide
from handlers.usecases.contracts import StoreUnavailable

T = TypeVar("T")

SEEN_LIMIT: Final = 10_000
"""Records whose value as this process last read or wrote it a decision may start from."""
MAX_ATTEMPTS: Final = 64
"""Decisions of one change at most when keys keep changing under it (each retry means another
change succeeded); then StoreUnavailable."""

# KEYS: the keys read, then the keys written. ARGV[1]: how many were read; then for each one '='
# and its value as read, or '!' when it was absent; then the writes as one JSON array (one argument
# rather than many: each costs the client an encoding), each an op and its arguments (key indexes
# into KEYS, values): S key value (set), D key (delete), B key set member value (set a record and
# list its member in a set), X key set member (delete a record and unlist its member), A sequence
# log list body (an audit record: the sequence's next id, then the record pushed onto both lists).
_APPLY: Final = r"""
local n = tonumber(ARGV[1])
for i = 1, n do
  local seen = redis.call('GET', KEYS[i])
  local want = ARGV[i + 1]
  if seen then
    if want ~= '=' .. seen then return 0 end
  elseif want ~= '!' then
    return 0
  end
end
for _, w in ipairs(cjson.decode(ARGV[n + 2])) do
  local op = w[1]
  if op == 'S' then
    redis.call('SET', KEYS[w[2]], w[3])
  elseif op == 'D' then
    redis.call('DEL', KEYS[w[2]])
  elseif op == 'B' then
    redis.call('SET', KEYS[w[2]], w[5])
    redis.call('SADD', KEYS[w[3]], w[4])
  elseif op == 'X' then
    redis.call('DEL', KEYS[w[2]])
    redis.call('SREM', KEYS[w[3]], w[4])
  elseif op == 'A' then
    local record = '{"id":' .. redis.call('INCR', KEYS[w[2]]) .. ',' .. w[5]
    redis.call('LPUSH', KEYS[w[3]], record)
    redis.call('LPUSH', KEYS[w[4]], record)
  else
    return redis.error_reply('unknown op ' .. tostring(op))
  end
end
return 1
"""


# KEYS[1]: an audit list; the rest: the lists that also hold its records. ARGV: pairs of a record
# expected at KEYS[1]'s tail (its oldest) and the index of the other list holding it. Each is popped
# while it still is the tail, and removed from the other list; the reply says how many were.
_PRUNE: Final = r"""
local count = 0
for i = 1, #ARGV, 2 do
  if redis.call('LINDEX', KEYS[1], -1) ~= ARGV[i] then break end
  redis.call('RPOP', KEYS[1])
  redis.call('LREM', KEYS[tonumber(ARGV[i + 1])], -1, ARGV[i])
  count = count + 1
end
return count
"""
# KEYS: the member's list and the whole log. ARGV: pairs of a record as stored and as redacted. Each
# redacted record takes its old one's place in both lists; a record pruned meanwhile is left out.
_REDACT: Final = r"""
local count = 0
for i = 1, #ARGV, 2 do
  local found = false
  for _, key in ipairs(KEYS) do
    if redis.call('LINSERT', key, 'BEFORE', ARGV[i], ARGV[i + 1]) > 0 then
      redis.call('LREM', key, 1, ARGV[i])
      found = true
    end
  end
  if found then count = count + 1 end
end
return count
"""
_PRUNE_BATCH: Final = 500
_SINCE_BATCH: Final = 1000


def _value(key: Key, raw: str | None) -> Value:
    if raw is None:
        return None
    return row_from_json(raw) if key.kind is KeyKind.BINDING else raw


class _Plan:
    """The KEYS and the writes of one compare-and-apply call."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.writes: list[list[str | int]] = []
        self._index: dict[str, int] = {}

    def key(self, name: str) -> int:
        if name not in self._index:
            self.keys.append(name)
            self._index[name] = len(self.keys)
        return self._index[name]

    def op(self, op: str, *keys: str, values: tuple[str, ...] = ()) -> None:
        self.writes.append([op, *(self.key(name) for name in keys), *values])


class RedisBindings(RulesRunner, RedisBase):
    """Bindings, their indexes and the audit log on Redis."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._apply = self._redis.register_script(_APPLY)
        self._prune = self._redis.register_script(_PRUNE)
        self._redact = self._redis.register_script(_REDACT)
        # A decision starts from the values last seen here instead of reading them again: the
        # compare-and-apply checks them all the same, and one that changed meanwhile costs a read
        # and a second decision. So the claim's own record serves its commit without a round trip.
        self._seen: dict[str, str | None] = {}

    async def _look(self, first: Sequence[Key], rule: Callable[[Draft], T]) -> T:
        # A lookup checks its reads by the same compare-and-apply, with nothing to apply.
        return await self._decide(first, rule, None)

    def _rkey(self, key: Key) -> str:
        return self._key(key.kind.value, key.name)

    async def _mget(self, keys: Sequence[Key]) -> list[str | None]:
        if not keys:
            return []
        names = [self._rkey(k) for k in keys]
        [values] = await self._commands(("MGET", *names))
        found = [None if v is None else str(v) for v in values]
        self._saw(zip(names, found, strict=True))
        return found

    def _saw(self, values: Iterable[tuple[str, str | None]]) -> None:
        self._seen.update(values)
        while len(self._seen) > SEEN_LIMIT:
            del self._seen[next(iter(self._seen))]  # the oldest first

    async def _decide(
        self, first: Sequence[Key], rule: Callable[[Draft], T], actor: Actor | None, *, guess: bool = False
    ) -> T:
        seen = {key: self._seen[name] for key in first if (name := self._rkey(key)) in self._seen}
        unseen = [key for key in first if key not in seen]
        if unseen and not guess:
            seen |= zip(unseen, await self._mget(unseen), strict=True)
        raw: dict[Key, str | None] = {key: seen.get(key) for key in first}
        for _ in range(MAX_ATTEMPTS):
            now = self._clock()
            for _ in range(MAX_READS):
                try:
                    decision = decide({k: _value(k, v) for k, v in raw.items()}, now, rule)
                    break
                except Unread as unread:
                    raw[unread.key] = (await self._mget([unread.key]))[0]
            else:
                raise StoreUnavailable(f"redis: a rule asked for more than {MAX_READS} records")
            if await self._apply_if_unchanged(raw, decision, now, actor):
                return decision.result()
            keys = list(raw)
            raw = dict(zip(keys, await self._mget(keys), strict=True))
        raise StoreUnavailable(f"redis: the records changed under {MAX_ATTEMPTS} decisions in a row")

    async def _apply_if_unchanged(
        self, raw: dict[Key, str | None], decision: Decision[T], now: float, actor: Actor | None
    ) -> bool:
        plan = _Plan()
        for key in raw:
            plan.key(self._rkey(key))
        checks = ["!" if value is None else "=" + value for value in raw.values()]
        members = self._prefix + "members"
        written: dict[str, str | None] = {}
        for key, value in decision.writes.items():
            name = self._rkey(key)
            if isinstance(value, Row):
                encoded = written[name] = row_json(value)
                plan.op("B", name, members, values=(key.name, encoded))
            elif value is None and key.kind is KeyKind.BINDING:
                written[name] = None
                plan.op("X", name, members, values=(key.name,))
            elif value is None:
                written[name] = None
                plan.op("D", name)
            else:
                written[name] = value
                plan.op("S", name, values=(value,))
        if decision.audits and actor is None:
            raise ValueError("a change that writes audit records needs an actor")
        for entry in decision.audits:
            who, source = (actor.who, actor.source) if actor else ("", "")
            body = json.dumps(
                {
                    "at": now,
                    "who": who,
                    "source": source,
                    "action": entry.action.value,
                    "member": entry.member_id,
                    "phone": entry.phone_masked or "",
                    "detail": entry.detail,
                },
                ensure_ascii=False,
            )
            log, own = self._prefix + "audit", self._key("audit:m", entry.member_id)
            plan.op("A", self._prefix + "audit:seq", log, own, values=(body[1:],))
        writes = json.dumps(plan.writes, ensure_ascii=False)
        done = await self._script(self._apply, plan.keys, [str(len(raw)), *checks, writes])
        if done:
            self._saw([*((self._rkey(key), value) for key, value in raw.items()), *written.items()])
        return bool(done)

    async def get_binding(self, member_id: str) -> Binding | None:
        """Return the member's binding as stored, or None."""
        (raw,) = await self._mget([Key(KeyKind.BINDING, member_id)])
        return None if raw is None else row_from_json(raw).binding()

    async def _rows(self) -> list[Row]:
        """Every binding record, read as one consistent snapshot (WATCH, then an empty MULTI/EXEC)."""
        members_key = self._prefix + "members"
        with self._unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                for _ in range(MAX_ATTEMPTS):
                    try:
                        await pipe.watch(members_key)
                        members = sorted(str(m) for m in await pipe.smembers(members_key))
                        keys = [self._key("b", m) for m in members]
                        values = []
                        if keys:
                            await pipe.watch(*keys)
                            values = [str(v) for v in await pipe.mget(keys) if v is not None]
                        pipe.multi()  # type: ignore[no-untyped-call]
                        await pipe.execute()
                    except WatchError:
                        continue
                    return [row_from_json(v) for v in values]
        raise StoreUnavailable(f"redis: the bindings changed under {MAX_ATTEMPTS} reads in a row")

    async def list_bindings(self) -> list[Binding]:
        """Return every binding by member id (one consistent read)."""
        return [row.binding() for row in sorted(await self._rows(), key=lambda r: r.member_id)]

    async def integrity_problems(self) -> list[str]:
        """Check the invariants; reads key by key, so meant for a quiet store."""
        rows = await self._rows()
        with self._unavailable():
            phone_index = await self._index("p")
            openid_index = await self._index("o")
            stored = set(await self._index("b"))
            async with self._redis.pipeline(transaction=False) as pipe:
                for row in rows:
                    pipe.exists(self._key("audit:m", row.member_id))
                found = await pipe.execute()
            audited = {row.member_id for row, n in zip(rows, found, strict=True) if n}
        listed = {row.member_id for row in rows}
        unlisted = [f"{m}: binding missing from the members set" for m in sorted(stored - listed)]
        return unlisted + find_problems(rows, phone_index, openid_index, audited)

    async def _index(self, kind: str) -> dict[str, str]:
        start = f"{self._prefix}{kind}:"
        keys = [key async for key in self._redis.scan_iter(match=glob_escape(start) + "*", count=1000)]
        if not keys:
            return {}
        values = await self._redis.mget(keys)
        return {str(k)[len(start) :]: str(v) for k, v in zip(keys, values, strict=True) if v is not None}

    async def audit_list(self, *, member_id: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """Return audit records, newest first."""
        limit = limit_arg(limit)
        key = self._prefix + "audit" if member_id is None else self._key("audit:m", member_id)
        with self._unavailable():
            encoded = await self._redis.lrange(key, 0, limit - 1)
        return [_audit_record(json.loads(entry)) for entry in encoded]

    async def audit_since(self, since: float, *, actions: Collection[AuditAction]) -> list[AuditRecord]:
        """Return the audit records of the given actions written at or after since, oldest first:
        the log is read from its newest end, a batch at a time, until a record older than since."""
        wanted = {AuditAction(action) for action in actions}
        found: list[AuditRecord] = []
        start = 0
        while wanted:
            with self._unavailable():
                batch = await self._redis.lrange(self._prefix + "audit", start, start + _SINCE_BATCH - 1)
            for entry in batch:
                record = _audit_record(json.loads(entry))
                if record.at < since:
                    return found[::-1]
                if record.action in wanted:
                    found.append(record)
            if len(batch) < _SINCE_BATCH:
                break
            start += _SINCE_BATCH
        return found[::-1]

    async def audit_prune(self, before: float, *, member_id: str | None = None) -> int:
        """Delete the audit records written before the time given, a batch from the oldest at a time."""
        log = self._prefix + "audit"
        tail = log if member_id is None else self._key("audit:m", member_id)
        pruned = 0
        while True:
            with self._unavailable():
                batch = await self._redis.lrange(tail, -_PRUNE_BATCH, -1)
            old: list[tuple[str, str]] = []  # the oldest first, while older than before
            for record in reversed(batch):
                data = json.loads(record)
                if float(data["at"]) >= before:
                    break
                other = self._key("audit:m", str(data["member"])) if member_id is None else log
                old.append((str(record), other))
            if not old:
                return pruned
            plan = _Plan()
            plan.key(tail)
            args = [arg for record, other in old for arg in (record, str(plan.key(other)))]
            count = int(await self._run(self._prune, plan.keys, args))
            if count == 0:
                return pruned  # another prune took them meanwhile
            pruned += count

    async def audit_redact(self, member_id: str | None, text: str, replacement: str) -> int:
        """Replace text in the member's audit details (every member's with None: the whole log is
        read, a batch at a time): each record rewritten in place in both of its lists."""
        if not text:
            raise ValueError("audit_redact: nothing to replace")
        log = self._prefix + "audit"
        source = log if member_id is None else self._key("audit:m", member_id)
        by_member: dict[str, list[str]] = {}
        start = 0
        while True:
            with self._unavailable():
                batch = await self._redis.lrange(source, start, start + _SINCE_BATCH - 1)
            for record in map(str, batch):
                data = json.loads(record)
                if text in str(data["detail"]):
                    data["detail"] = str(data["detail"]).replace(text, replacement)
                    by_member.setdefault(str(data["member"]), []).extend(
                        [record, json.dumps(data, ensure_ascii=False)]
                    )
            if len(batch) < _SINCE_BATCH:
                break
            start += _SINCE_BATCH
        changed = 0
        for member, pairs in by_member.items():
            changed += int(await self._run(self._redact, (self._key("audit:m", member), log), pairs))
        return changed


def _audit_record(data: Mapping[str, Any]) -> AuditRecord:
    return AuditRecord(
        id=int(data["id"]),
        at=float(data["at"]),
        who=str(data["who"]),
        source=str(data["source"]),
        action=AuditAction(data["action"]),
        member_id=str(data["member"]),
        phone_masked=data["phone"] or None,
        detail=str(data["detail"]),
    )
