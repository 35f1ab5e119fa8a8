"""The Redis store's durable event inbox: batched appends, leases, retries and dead letters.

The inbox is twelve keys (INBOX_KEYS), and every script names all of them in KEYS: none builds a
key of its own, so that a cluster or a managed Redis that checks a script's keys runs them.

One member's events run one at a time and in order: each event that names a member is also in the
queue (a sorted set read by member, then create time, then id), and of each member's queued events
only one, its active event, is ever in the ready or the leased set. That is the first of its queue,
unless the active event is leased: then the first waits for it. The others wait in the queue alone
(parked), and a parked event's due time, when it had one, waits in the due hash. So a take reads
the ready set as before, with nothing to skip, and different members' events still run at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from redis.commands.core import AsyncScript

from callback_service.store.common import AppendBatcher, PendingAppend, limit_arg, positive
from callback_service.store.persistence import AOF_GUARD, GUARD_REFUSALS, not_durable
from callback_service.store.redis.base import RedisBase
from handlers.core.binding import InboxItem, InboxStats
from handlers.usecases.contracts import StoreUnavailable

# Inbox scripts. KEYS (all of the inbox, so that every key a script touches is named): the ready,
# leased and dead sorted sets of item ids, the items hash (id -> JSON of dedup key, type, payload,
# created), the attempts and errors hashes (id -> count, last error), the id sequence, the dedup
# sorted set (dedup key -> when it is forgotten); then, for the order of each member's events, the
# active hash (member -> its one ready or leased event), the queue (a sorted set of scores 0 read
# by lex: "<member>\0<create time, 12 digits>\0<id>" for each event of a member not handled nor
# dead), the order hash (id -> its queue entry, kept while the event exists) and the due hash (a
# parked event's due time). ARGV[1]: now. Ids are zero-padded so that equal scores still order by
# id. A member id holds no NUL or \1 (XML allows neither), so "<member>\0" starts its entries only.
_INBOX_PRELUDE: Final = r"""
local NOW_S = ARGV[1]
local NOW = tonumber(NOW_S)
local READY, LEASED, DEAD, ITEMS, ATTEMPTS, ERRORS, SEQ, DEDUP, ACTIVE, QUEUE, ORDER, DUE =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12]

local function item(id)
  local encoded = redis.call('HGET', ITEMS, id)
  if not encoded then return nil end
  return {id, encoded, redis.call('HGET', ATTEMPTS, id) or '0', redis.call('HGET', ERRORS, id) or ''}
end

local function failed(id, err)
  if redis.call('HEXISTS', ITEMS, id) == 0 or redis.call('ZSCORE', DEAD, id) then return nil end
  redis.call('HSET', ERRORS, id, err)
  return redis.call('HINCRBY', ATTEMPTS, id, 1)
end

local function member_of(entry)
  return string.sub(entry, 1, string.find(entry, '\0', 1, true) - 1)
end

-- Make the first of the member's queued events its active one (ready, at its due time if it had
-- one, else now), unless the active one is leased; the active one it replaces is parked.
local function activate_first(member)
  local active = redis.call('HGET', ACTIVE, member)
  if active and redis.call('ZSCORE', LEASED, active) then return end
  local first = redis.call('ZRANGEBYLEX', QUEUE, '[' .. member .. '\0', '(' .. member .. '\1',
    'LIMIT', 0, 1)[1]
  local head = first and string.sub(first, -15)
  if active == head then return end
  if active then
    local due = redis.call('ZSCORE', READY, active)
    if due then
      redis.call('ZREM', READY, active)
      redis.call('HSET', DUE, active, due)
    end
  end
  if not head then
    redis.call('HDEL', ACTIVE, member)
    return
  end
  redis.call('HSET', ACTIVE, member, head)
  local due = redis.call('HGET', DUE, head)
  if due then redis.call('HDEL', DUE, head) end
  redis.call('ZADD', READY, due or NOW_S, head)
end

-- Take the event out of its member's queue (it is handled, or dead); its member, or nil.
local function unqueue(id)
  local entry = redis.call('HGET', ORDER, id)
  if not entry then return nil end
  redis.call('ZREM', QUEUE, entry)
  redis.call('HDEL', DUE, id)
  local member = member_of(entry)
  if redis.call('HGET', ACTIVE, member) == id then redis.call('HDEL', ACTIVE, member) end
  return member
end
"""

# ARGV[2]: when the batch's dedup keys are forgotten (clock seconds); ARGV[3]: '1' to write only
# while the append-only file is on (AOF_GUARD), '0' on a Redis allowed to be volatile; then, per
# event, a dedup key, the item's JSON, its member ('' for none) and its create time (12 digits).
# The reply has a 1 (appended) or a 0 (a retry) per event, an event repeated within the batch
# appended once, its first time; or, with nothing written, aof_off()'s number.
_INBOX_APPEND: Final = r"""
if ARGV[3] == '1' then
  local refused = aof_off()
  if refused then return refused end
end
local dedup_until = ARGV[2]
redis.call('ZREMRANGEBYSCORE', DEDUP, '-inf', NOW_S)
local added = {}
for i = 4, #ARGV, 4 do
  local dedup = ARGV[i]
  if redis.call('ZSCORE', DEDUP, dedup) then
    added[#added + 1] = 0
  else
    redis.call('ZADD', DEDUP, dedup_until, dedup)
    local id = string.format('%015d', redis.call('INCR', SEQ))
    redis.call('HSET', ITEMS, id, ARGV[i + 1])
    local member = ARGV[i + 2]
    if member == '' then
      redis.call('ZADD', READY, NOW_S, id)
    else
      local entry = member .. '\0' .. ARGV[i + 3] .. '\0' .. id
      redis.call('HSET', ORDER, id, entry)
      redis.call('ZADD', QUEUE, 0, entry)
      local active = redis.call('HGET', ACTIVE, member)
      if not active then  -- the member's only event (the usual case): its active one at once
        redis.call('HSET', ACTIVE, member, id)
        redis.call('ZADD', READY, NOW_S, id)
      elseif not redis.call('ZSCORE', LEASED, active) then
        activate_first(member)  -- it may come before the active one, which is not in hand yet
      end
    end
    added[#added + 1] = 1
  end
end
return added
"""

_INBOX_TAKE: Final = r"""
local limit, lease_until = tonumber(ARGV[2]), ARGV[3]
local lapsed = redis.call('ZRANGEBYSCORE', LEASED, '-inf', NOW_S, 'WITHSCORES')
for i = 1, #lapsed, 2 do
  redis.call('ZREM', LEASED, lapsed[i])
  redis.call('ZADD', READY, lapsed[i + 1], lapsed[i])
  -- An earlier event of its member may have come in while it was leased: that one goes first.
  local entry = redis.call('HGET', ORDER, lapsed[i])
  if entry then activate_first(member_of(entry)) end
end
local ids = redis.call('ZRANGEBYSCORE', READY, '-inf', NOW_S, 'LIMIT', 0, limit)
local result = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', READY, id)
  redis.call('ZADD', LEASED, lease_until, id)
  local found = item(id)
  if found then table.insert(result, found) end
end
return result
"""

_INBOX_DONE: Final = r"""
local id = ARGV[2]
redis.call('ZREM', READY, id)
redis.call('ZREM', LEASED, id)
redis.call('ZREM', DEAD, id)
redis.call('HDEL', ITEMS, id)
redis.call('HDEL', ATTEMPTS, id)
redis.call('HDEL', ERRORS, id)
local member = unqueue(id)
redis.call('HDEL', ORDER, id)
if member then activate_first(member) end
return 1
"""

# A retried event due again: ready if it is still its member's active event, else (its lease ran
# out and an earlier event of its member took its place) parked with its due time.
_INBOX_RETRY: Final = r"""
local id, err, due = ARGV[2], ARGV[3], ARGV[4]
local attempts = failed(id, err)
if not attempts then return 0 end
redis.call('ZREM', LEASED, id)
local entry = redis.call('HGET', ORDER, id)
if not entry then
  redis.call('ZADD', READY, due, id)
  return attempts
end
local member = member_of(entry)
if redis.call('HGET', ACTIVE, member) == id then
  redis.call('ZADD', READY, due, id)
else
  redis.call('HSET', DUE, id, due)
end
activate_first(member)
return attempts
"""

_INBOX_DEAD: Final = r"""
local id, err = ARGV[2], ARGV[3]
if not failed(id, err) then return 0 end
redis.call('ZREM', READY, id)
redis.call('ZREM', LEASED, id)
redis.call('ZADD', DEAD, NOW_S, id)
local member = unqueue(id)
if member then activate_first(member) end
return 1
"""

_INBOX_LIST_DEAD: Final = r"""
local ids = redis.call('ZREVRANGE', DEAD, 0, tonumber(ARGV[2]) - 1)
local result = {}
for _, id in ipairs(ids) do
  local found = item(id)
  if found then table.insert(result, found) end
end
return result
"""

_INBOX_REQUEUE: Final = r"""
local ids = {}
if ARGV[2] == 'all' then
  ids = redis.call('ZRANGE', DEAD, 0, -1)
else
  for i = 3, #ARGV do table.insert(ids, ARGV[i]) end
end
local count = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', DEAD, id) == 1 then
    redis.call('HDEL', ATTEMPTS, id)
    local entry = redis.call('HGET', ORDER, id)
    if entry then
      redis.call('ZADD', QUEUE, 0, entry)
      activate_first(member_of(entry))
    else
      redis.call('ZADD', READY, NOW_S, id)
    end
    count = count + 1
  end
end
return count
"""

_INBOX_DROP: Final = r"""
local count = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', DEAD, id) == 1 then
    redis.call('HDEL', ITEMS, id)
    redis.call('HDEL', ATTEMPTS, id)
    redis.call('HDEL', ERRORS, id)
    redis.call('HDEL', ORDER, id)
    count = count + 1
  end
end
return count
"""

# Pending: ready, lapsed leases, and the parked (queued events that are not their member's active one).
_INBOX_STATS: Final = r"""
local due_leases = redis.call('ZCOUNT', LEASED, '-inf', NOW_S)
local leased = redis.call('ZCARD', LEASED) - due_leases
local parked = redis.call('ZCARD', QUEUE) - redis.call('HLEN', ACTIVE)
return {redis.call('ZCARD', READY) + due_leases + parked, leased, redis.call('ZCARD', DEAD)}
"""

# The zero-padded ids grow with creation, so the smallest id of the ready and leased sets and the
# queue is the oldest live event; they are scanned in full, which a scrape can afford at an
# inbox's depth. The reply is that item's JSON (its created time read in Python: a Lua number
# would be cut).
_INBOX_OLDEST: Final = r"""
local oldest = nil
for _, set in ipairs({READY, LEASED}) do
  for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    if oldest == nil or id < oldest then oldest = id end
  end
end
for _, entry in ipairs(redis.call('ZRANGE', QUEUE, 0, -1)) do
  local id = string.sub(entry, -15)
  if oldest == nil or id < oldest then oldest = id end
end
if oldest == nil then return nil end
return redis.call('HGET', ITEMS, oldest)
"""

INBOX_KEYS: Final = (
    "ready", "leased", "dead", "items", "attempts", "errors", "seq", "dedup",
    "active", "queue", "order", "due",
)
_APPEND_BATCH: Final = 256  # events per append script at most: a script holds the server while it runs


def _item_id(item_id: int) -> str:
    return f"{item_id:015d}"


def item_json(dedup_key: str, event_type: str, payload: str, created_at: float) -> str:
    """An inbox item as the items hash holds it."""
    return json.dumps(
        {"dedup": dedup_key, "type": event_type, "payload": payload, "created": created_at},
        ensure_ascii=False,
    )


def _inbox_item(found: Sequence[str]) -> InboxItem:
    item_id, encoded, attempts, error = found
    data = json.loads(encoded)
    return InboxItem(
        id=int(item_id),
        dedup_key=str(data["dedup"]),
        event_type=str(data["type"]),
        payload=str(data["payload"]),
        attempts=int(attempts),
        created_at=float(data["created"]),
        last_error=error or None,
    )


class RedisInbox(RedisBase):
    """The inbox: the items, attempts and errors hashes, the ready, leased, dead and dedup sorted sets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Concurrent inbox appends share one script call.
        self._appends = AppendBatcher(self._append_batch, limit=_APPEND_BATCH, name="redis-inbox-flush")
        register = self._redis.register_script
        self._inbox_append = register(_INBOX_PRELUDE + AOF_GUARD + _INBOX_APPEND)
        self._inbox_take = register(_INBOX_PRELUDE + _INBOX_TAKE)
        self._inbox_done = register(_INBOX_PRELUDE + _INBOX_DONE)
        self._inbox_retry = register(_INBOX_PRELUDE + _INBOX_RETRY)
        self._inbox_dead = register(_INBOX_PRELUDE + _INBOX_DEAD)
        self._inbox_list_dead = register(_INBOX_PRELUDE + _INBOX_LIST_DEAD)
        self._inbox_requeue = register(_INBOX_PRELUDE + _INBOX_REQUEUE)
        self._inbox_drop = register(_INBOX_PRELUDE + _INBOX_DROP)
        self._inbox_stats = register(_INBOX_PRELUDE + _INBOX_STATS)
        self._inbox_oldest = register(_INBOX_PRELUDE + _INBOX_OLDEST)

    def _inbox_keys(self) -> list[str]:
        return [self._key("inbox", part) for part in INBOX_KEYS]

    async def _inbox(self, script: AsyncScript, *args: str) -> Any:
        return await self._run(script, self._inbox_keys(), (self._now(), *args))

    async def inbox_append(
        self, dedup_key: str, event_type: str, payload: str, *, member_id: str | None = None,
        create_time: int = 0,
    ) -> bool:
        """Append an event unless its dedup key is remembered.

        Concurrent appends share one script call, as SQLite shares one transaction among them:
        each caller returns once the reply covering its event is in, and a batch whose call fails
        fails every caller in it. The script writes only while the server's append-only file is
        on (StoreNotDurable when it is off), unless the store was opened allow_volatile.
        """
        if self._closed:
            raise StoreUnavailable("redis: store is closed")
        return await self._appends.append(
            PendingAppend(dedup_key, event_type, payload, member_id or None, create_time)
        )

    async def _append_batch(self, batch: list[PendingAppend]) -> list[bool]:
        now = self._clock()
        args = [repr(now), repr(now + self._dedup_ttl), "0" if self._allow_volatile else "1"]
        for item in batch:
            args += (
                item.dedup_key,
                item_json(item.dedup_key, item.event_type, item.payload, now),
                item.member_id or "",
                f"{item.ordered_time:012d}",
            )
        added = await self._run(self._inbox_append, self._inbox_keys(), args)
        if not isinstance(added, list):
            raise not_durable(GUARD_REFUSALS.get(int(added), f"answer {added!r}"))
        return [bool(flag) for flag in added]

    async def inbox_take(self, limit: int, *, lease: float) -> list[InboxItem]:
        """Lease due events."""
        limit = limit_arg(limit)
        lease = positive("lease", lease)
        now = self._clock()
        encoded = await self._run(
            self._inbox_take, self._inbox_keys(), (repr(now), str(limit), repr(now + lease))
        )
        return [_inbox_item(e) for e in encoded]

    async def inbox_done(self, item_id: int) -> None:
        """Remove a handled event."""
        await self._inbox(self._inbox_done, _item_id(item_id))

    async def inbox_retry(self, item_id: int, error: str, *, delay: float) -> int:
        """Count a failure and schedule the event again."""
        due = self._clock() + max(0.0, delay)
        return int(await self._inbox(self._inbox_retry, _item_id(item_id), error, repr(due)))

    async def inbox_dead(self, item_id: int, error: str) -> None:
        """Move an event to the dead letters."""
        await self._inbox(self._inbox_dead, _item_id(item_id), error)

    async def inbox_list_dead(self, *, limit: int = 100) -> list[InboxItem]:
        """Return dead letters, most recent first."""
        encoded = await self._inbox(self._inbox_list_dead, str(limit_arg(limit)))
        return [_inbox_item(e) for e in encoded]

    async def inbox_requeue_dead(self, item_ids: Sequence[int] | None = None) -> int:
        """Put dead letters back as due."""
        if item_ids is None:
            return int(await self._inbox(self._inbox_requeue, "all"))
        if not item_ids:
            return 0
        return int(await self._inbox(self._inbox_requeue, "some", *map(_item_id, item_ids)))

    async def inbox_drop_dead(self, item_ids: Sequence[int]) -> int:
        """Remove the given dead letters for good."""
        if not item_ids:
            return 0
        return int(await self._inbox(self._inbox_drop, *map(_item_id, item_ids)))

    async def inbox_stats(self) -> InboxStats:
        """Return the inbox counts."""
        pending, leased, dead = await self._inbox(self._inbox_stats)
        return InboxStats(pending=int(pending), leased=int(leased), dead=int(dead))

    async def inbox_oldest_pending(self) -> float | None:
        """Return when the oldest event not yet handled was stored."""
        encoded = await self._inbox(self._inbox_oldest)
        return None if encoded is None else float(json.loads(encoded)["created"])
