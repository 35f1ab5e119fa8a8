"""The Redis store's durable event inbox: batched appends, leases, retries and dead letters.

The inbox is eight keys (INBOX_KEYS), and every script names all of them in KEYS: none builds a
key of its own, so that a cluster or a managed Redis that checks a script's keys runs them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from redis.commands.core import AsyncScript

from callback_service.store.common import AppendBatcher, PendingAppend, limit_arg, positive
from callback_service.store.redis.base import RedisBase
from handlers.core.binding import InboxItem, InboxStats
from handlers.usecases.contracts import StoreUnavailable

# Inbox scripts. KEYS (all of the inbox, so that every key a script touches is named): the ready,
# leased and dead sorted sets of item ids, the items hash (id -> JSON of dedup key, type, payload,
# created), the attempts and errors hashes (id -> count, last error), the id sequence, and the
# dedup sorted set (dedup key -> when it is forgotten). ARGV[1]: now. Ids are zero-padded so that
# equal scores still order by id.
_INBOX_PRELUDE: Final = r"""
local NOW_S = ARGV[1]
local NOW = tonumber(NOW_S)
local READY, LEASED, DEAD, ITEMS, ATTEMPTS, ERRORS, SEQ, DEDUP =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]

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
"""

# ARGV[2]: when the batch's dedup keys are forgotten (clock seconds); then a dedup key and the
# item's JSON per event. The reply has a 1 (appended) or a 0 (a retry) per event; an event repeated
# within the batch is appended once, its first time.
_INBOX_APPEND: Final = r"""
local dedup_until = ARGV[2]
redis.call('ZREMRANGEBYSCORE', DEDUP, '-inf', NOW_S)
local added = {}
for i = 3, #ARGV, 2 do
  local dedup = ARGV[i]
  if redis.call('ZSCORE', DEDUP, dedup) then
    added[#added + 1] = 0
  else
    redis.call('ZADD', DEDUP, dedup_until, dedup)
    local id = string.format('%015d', redis.call('INCR', SEQ))
    redis.call('HSET', ITEMS, id, ARGV[i + 1])
    redis.call('ZADD', READY, NOW_S, id)
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
return 1
"""

_INBOX_RETRY: Final = r"""
local id, err, due = ARGV[2], ARGV[3], ARGV[4]
local attempts = failed(id, err)
if not attempts then return 0 end
redis.call('ZREM', LEASED, id)
redis.call('ZADD', READY, due, id)
return attempts
"""

_INBOX_DEAD: Final = r"""
local id, err = ARGV[2], ARGV[3]
if not failed(id, err) then return 0 end
redis.call('ZREM', READY, id)
redis.call('ZREM', LEASED, id)
redis.call('ZADD', DEAD, NOW_S, id)
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
    redis.call('ZADD', READY, NOW_S, id)
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
    count = count + 1
  end
end
return count
"""

_INBOX_STATS: Final = r"""
local due_leases = redis.call('ZCOUNT', LEASED, '-inf', NOW_S)
local leased = redis.call('ZCARD', LEASED) - due_leases
return {redis.call('ZCARD', READY) + due_leases, leased, redis.call('ZCARD', DEAD)}
"""

# The zero-padded ids grow with creation, so the smallest id of the ready and leased sets is the
# oldest live event; the sets are scanned in full, which a scrape can afford at an inbox's depth.
# The reply is that item's JSON (its created time read in Python: a Lua number would be cut).
_INBOX_OLDEST: Final = r"""
local oldest = nil
for _, set in ipairs({READY, LEASED}) do
  for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    if oldest == nil or id < oldest then oldest = id end
  end
end
if oldest == nil then return nil end
return redis.call('HGET', ITEMS, oldest)
"""

INBOX_KEYS: Final = ("ready", "leased", "dead", "items", "attempts", "errors", "seq", "dedup")
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
        self._inbox_append = register(_INBOX_PRELUDE + _INBOX_APPEND)
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

    async def inbox_append(self, dedup_key: str, event_type: str, payload: str) -> bool:
        """Append an event unless its dedup key is remembered.

        Concurrent appends share one script call, as SQLite shares one transaction among them:
        each caller returns once the reply covering its event is in, and a batch whose call fails
        fails every caller in it.
        """
        if self._closed:
            raise StoreUnavailable("redis: store is closed")
        return await self._appends.append(PendingAppend(dedup_key, event_type, payload))

    async def _append_batch(self, batch: list[PendingAppend]) -> list[bool]:
        now = self._clock()
        args = [repr(now), repr(now + self._dedup_ttl)]
        for item in batch:
            args += (item.dedup_key, item_json(item.dedup_key, item.event_type, item.payload, now))
        added = await self._run(self._inbox_append, self._inbox_keys(), args)
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
