"""The Redis store's durable event inbox: batched appends, leases, retries and dead letters.

Each script names the inbox's sorted sets in KEYS (ready, leased, dead), so that it is routed to
their slot; the item hashes and dedup keys it builds from the prefix share that slot's hash tag.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from redis.commands.core import AsyncScript

from callback_service.store.common import AppendBatcher, PendingAppend, limit_arg, positive
from callback_service.store.redis.base import RedisBase, ms
from handlers.binding import InboxItem, InboxStats
from handlers.contracts import StoreUnavailable

# Inbox scripts: KEYS the ready, leased and dead sets; ARGV[1] prefix, ARGV[2] now. Ids are
# zero-padded in the sorted sets so that equal scores still order by id.
_INBOX_PRELUDE: Final = r"""
local P = ARGV[1]
local NOW_S = ARGV[2]
local NOW = tonumber(NOW_S)
local READY, LEASED, DEAD = KEYS[1], KEYS[2], KEYS[3]

local function item(id)
  local h = redis.call('HMGET', P .. 'inbox:i:' .. id,
    'dedup', 'type', 'payload', 'attempts', 'created', 'error')
  if not h[1] then return nil end
  return cjson.encode({id = id, dedup = h[1], type = h[2], payload = h[3], attempts = h[4],
                       created = h[5], error = h[6]})
end
"""

# ARGV[3], ARGV[4]: the dedup keys' expiry (clock seconds, and Redis's own in ms); then a dedup key,
# an event type and a payload per event. The reply has a 1 (appended) or a 0 (a retry) per event;
# an event repeated within the batch is appended once, its first time.
_INBOX_APPEND: Final = r"""
local dedup_until, dedup_ms = ARGV[3], ARGV[4]
local added = {}
for i = 5, #ARGV, 3 do
  local dedup = ARGV[i]
  local dk = P .. 'inbox:d:' .. dedup
  local seen = redis.call('GET', dk)
  if seen and tonumber(seen) > NOW then
    added[#added + 1] = 0
  else
    redis.call('SET', dk, dedup_until, 'PX', dedup_ms)
    local id = string.format('%015d', redis.call('INCR', P .. 'inbox:seq'))
    redis.call('HSET', P .. 'inbox:i:' .. id, 'dedup', dedup, 'type', ARGV[i + 1],
               'payload', ARGV[i + 2], 'attempts', 0, 'created', NOW_S)
    redis.call('ZADD', READY, NOW_S, id)
    added[#added + 1] = 1
  end
end
return added
"""

_INBOX_TAKE: Final = r"""
local limit, lease_until = tonumber(ARGV[3]), ARGV[4]
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
  local encoded = item(id)
  if encoded then table.insert(result, encoded) end
end
return result
"""

_INBOX_DONE: Final = r"""
local id = ARGV[3]
redis.call('ZREM', READY, id)
redis.call('ZREM', LEASED, id)
redis.call('ZREM', DEAD, id)
redis.call('DEL', P .. 'inbox:i:' .. id)
return 1
"""

_INBOX_RETRY: Final = r"""
local id, err, due = ARGV[3], ARGV[4], ARGV[5]
local key = P .. 'inbox:i:' .. id
if redis.call('EXISTS', key) == 0 or redis.call('ZSCORE', DEAD, id) then return 0 end
local attempts = redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'error', err)
redis.call('ZREM', LEASED, id)
redis.call('ZADD', READY, due, id)
return attempts
"""

_INBOX_DEAD: Final = r"""
local id, err = ARGV[3], ARGV[4]
local key = P .. 'inbox:i:' .. id
if redis.call('EXISTS', key) == 0 or redis.call('ZSCORE', DEAD, id) then return 0 end
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'error', err)
redis.call('ZREM', READY, id)
redis.call('ZREM', LEASED, id)
redis.call('ZADD', DEAD, NOW_S, id)
return 1
"""

_INBOX_LIST_DEAD: Final = r"""
local ids = redis.call('ZREVRANGE', DEAD, 0, tonumber(ARGV[3]) - 1)
local result = {}
for _, id in ipairs(ids) do
  local encoded = item(id)
  if encoded then table.insert(result, encoded) end
end
return result
"""

_INBOX_REQUEUE: Final = r"""
local ids = {}
if ARGV[3] == 'all' then
  ids = redis.call('ZRANGE', DEAD, 0, -1)
else
  for i = 4, #ARGV do table.insert(ids, ARGV[i]) end
end
local count = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', DEAD, id) == 1 then
    redis.call('HSET', P .. 'inbox:i:' .. id, 'attempts', 0)
    redis.call('ZADD', READY, NOW_S, id)
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
_INBOX_OLDEST: Final = r"""
local oldest = nil
for _, set in ipairs({READY, LEASED}) do
  for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    if oldest == nil or id < oldest then oldest = id end
  end
end
if oldest == nil then return nil end
return redis.call('HGET', P .. 'inbox:i:' .. oldest, 'created')
"""

_APPEND_BATCH: Final = 256  # events per append script at most: a script holds the server while it runs


def _item_id(item_id: int) -> str:
    return f"{item_id:015d}"


def _inbox_item(encoded: str) -> InboxItem:
    data = json.loads(encoded)
    return InboxItem(
        id=int(data["id"]),
        dedup_key=str(data["dedup"]),
        event_type=str(data["type"]),
        payload=str(data["payload"]),
        attempts=int(data["attempts"]),
        created_at=float(data["created"]),
        last_error=data.get("error") or None,
    )


class RedisInbox(RedisBase):
    """The inbox: item hashes, the ready, leased and dead sorted sets, dedup keys."""

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
        self._inbox_stats = register(_INBOX_PRELUDE + _INBOX_STATS)
        self._inbox_oldest = register(_INBOX_PRELUDE + _INBOX_OLDEST)

    def _inbox_keys(self) -> tuple[str, str, str]:
        return self._key("inbox", "ready"), self._key("inbox", "leased"), self._key("inbox", "dead")

    async def _inbox(self, script: AsyncScript, *args: str) -> Any:
        return await self._run(script, self._inbox_keys(), (self._prefix, self._now(), *args))

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
        args = [self._prefix, repr(now), repr(now + self._dedup_ttl), str(ms(self._dedup_ttl))]
        for item in batch:
            args += (item.dedup_key, item.event_type, item.payload)
        added = await self._run(self._inbox_append, self._inbox_keys(), args)
        return [bool(flag) for flag in added]

    async def inbox_take(self, limit: int, *, lease: float) -> list[InboxItem]:
        """Lease due events."""
        limit = limit_arg(limit)
        lease = positive("lease", lease)
        now = self._clock()
        encoded = await self._run(
            self._inbox_take, self._inbox_keys(), (self._prefix, repr(now), str(limit), repr(now + lease))
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

    async def inbox_stats(self) -> InboxStats:
        """Return the inbox counts."""
        pending, leased, dead = await self._inbox(self._inbox_stats)
        return InboxStats(pending=int(pending), leased=int(leased), dead=int(dead))

    async def inbox_oldest_pending(self) -> float | None:
        """Return when the oldest event not yet handled was stored."""
        created = await self._inbox(self._inbox_oldest)
        return None if created is None else float(created)
