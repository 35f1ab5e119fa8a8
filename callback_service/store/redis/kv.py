"""The Redis store's key-value entries and leased locks: one script per change.

Each entry is a hash of v (the value) and e (its expiry, clock seconds), named in KEYS[1].
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from callback_service.store.common import kv_changes, new_token, positive
from callback_service.store.redis.base import RedisBase, ms
from callback_service.store.redis.layout import glob_escape

_KV_SET: Final = r"""
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

_KV_SET_IF_ABSENT: Final = r"""
local e = redis.call('HGET', KEYS[1], 'e')
if e and tonumber(e) > tonumber(ARGV[3]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

_KV_POP: Final = r"""
local cur = redis.call('HMGET', KEYS[1], 'v', 'e')
redis.call('DEL', KEYS[1])
if cur[1] and tonumber(cur[2]) > tonumber(ARGV[1]) then return cur[1] end
return false
"""

_KV_INCR: Final = r"""
local cur = redis.call('HMGET', KEYS[1], 'v', 'e')
if cur[1] and tonumber(cur[2]) > tonumber(ARGV[1]) then
  return redis.call('HINCRBY', KEYS[1], 'v', 1)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', 1, 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: the keys that must be absent (ARGV[1] of them), the keys to set (ARGV[2]), the keys to
# delete. ARGV[3]: now; then for each key to set: its value, its expiry and its PEXPIRE.
_KV_APPLY: Final = r"""
local na, ns, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, na do
  local e = redis.call('HGET', KEYS[i], 'e')
  if e and tonumber(e) > now then return 0 end
end
for i = 1, ns do
  local a = 4 + (i - 1) * 3
  redis.call('DEL', KEYS[na + i])
  redis.call('HSET', KEYS[na + i], 'v', ARGV[a], 'e', ARGV[a + 1])
  redis.call('PEXPIRE', KEYS[na + i], ARGV[a + 2])
end
for i = na + ns + 1, #KEYS do
  redis.call('DEL', KEYS[i])
end
return 1
"""

# KEYS: the counters. ARGV: now, a new counter's expiry and PEXPIRE, then each counter's limit.
# The reply: the position of the first counter at its limit (nothing counted), or 0 (all counted).
_KV_INCR_UNDER: Final = r"""
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local cur = redis.call('HMGET', KEYS[i], 'v', 'e')
  local count = 0
  if cur[1] and tonumber(cur[2]) > now then count = tonumber(cur[1]) end
  if count >= tonumber(ARGV[3 + i]) then return i end
end
for i = 1, #KEYS do
  local cur = redis.call('HMGET', KEYS[i], 'v', 'e')
  if cur[1] and tonumber(cur[2]) > now then
    redis.call('HINCRBY', KEYS[i], 'v', 1)
  else
    redis.call('DEL', KEYS[i])
    redis.call('HSET', KEYS[i], 'v', 1, 'e', ARGV[2])
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  end
end
return 0
"""

_LOCK_RELEASE: Final = r"""
local cur = redis.call('HMGET', KEYS[1], 'v', 'e')
if not cur[1] or cur[1] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(cur[2]) > tonumber(ARGV[2]) then return 1 end
return 0
"""


class RedisKv(RedisBase):
    """Entries with expiry and locks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        register = self._redis.register_script
        self._kv_set = register(_KV_SET)
        self._kv_set_if_absent = register(_KV_SET_IF_ABSENT)
        self._kv_pop = register(_KV_POP)
        self._kv_incr = register(_KV_INCR)
        self._kv_apply = register(_KV_APPLY)
        self._kv_incr_under = register(_KV_INCR_UNDER)
        self._lock_release = register(_LOCK_RELEASE)

    async def kv_get(self, key: str) -> str | None:
        """Return the value unless absent or expired."""
        [(value, expires_at)] = await self._commands(("HMGET", self._key("kv", key), "v", "e"))
        if value is None or expires_at is None or float(expires_at) <= self._clock():
            return None
        return str(value)

    async def kv_set(self, key: str, value: str, *, ttl: float) -> None:
        """Set the value with a ttl."""
        ttl = positive("ttl", ttl)
        now = self._clock()
        args = (value, repr(now + ttl), repr(now), ms(ttl))
        await self._script(self._kv_set, (self._key("kv", key),), args)

    async def kv_set_if_absent(self, key: str, value: str, *, ttl: float) -> bool:
        """Set the value only when absent or expired."""
        ttl = positive("ttl", ttl)
        now = self._clock()
        done = await self._script(
            self._kv_set_if_absent, (self._key("kv", key),), (value, repr(now + ttl), repr(now), ms(ttl))
        )
        return bool(done)

    async def kv_get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Return each key's value unless absent or expired, in one round trip."""
        wanted = list(keys)
        if not wanted:
            return []
        replies = await self._commands(*(("HMGET", self._key("kv", key), "v", "e") for key in wanted))
        now = self._clock()
        return [
            None if value is None or expires_at is None or float(expires_at) <= now else str(value)
            for value, expires_at in replies
        ]

    async def kv_apply(
        self,
        sets: Mapping[str, tuple[str, float]],
        *,
        deletes: Collection[str] = (),
        if_absent: Collection[str] = (),
    ) -> bool:
        """Set and delete entries in one script, when every key of if_absent is absent or expired."""
        entries, gone, absent = kv_changes(sets, deletes, if_absent)
        if not (entries or gone or absent):
            return True
        now = self._clock()
        keys = [self._key("kv", key) for key in (*absent, *entries, *gone)]
        args: list[Any] = [len(absent), len(entries), repr(now)]
        for value, ttl in entries.values():
            args += [value, repr(now + ttl), ms(ttl)]
        return bool(await self._script(self._kv_apply, keys, args))

    async def kv_pop(self, key: str) -> str | None:
        """Read and delete atomically."""
        value = await self._script(self._kv_pop, (self._key("kv", key),), (self._now(),))
        return None if value is None else str(value)

    async def kv_delete(self, key: str) -> None:
        """Delete the entry."""
        await self._commands(("DEL", self._key("kv", key)))

    async def kv_delete_prefix(self, prefix: str) -> int:
        """Delete the entries whose key starts with prefix: a SCAN of the deployment's kv keys."""
        if not prefix:
            raise ValueError("kv_delete_prefix: an empty prefix would delete every entry")
        deleted = 0
        with self._unavailable():
            batch: list[str] = []
            pattern = glob_escape(self._key("kv", prefix)) + "*"
            async for key in self._redis.scan_iter(match=pattern, count=1000):
                batch.append(str(key))
                if len(batch) >= 500:
                    deleted += int(await self._redis.delete(*batch))
                    batch = []
            if batch:
                deleted += int(await self._redis.delete(*batch))
        return deleted

    async def kv_incr(self, key: str, *, ttl: float) -> int:
        """Increment a counter that expires ttl seconds after it was created."""
        ttl = positive("ttl", ttl)
        now = self._clock()
        args = (repr(now), repr(now + ttl), ms(ttl))
        count = await self._script(self._kv_incr, (self._key("kv", key),), args)
        return int(count)

    async def kv_incr_under(self, limits: Mapping[str, int], *, ttl: float) -> str | None:
        """Increment every counter in one script, unless one has reached its limit."""
        ttl = positive("ttl", ttl)
        counters = list(limits)
        if not counters:
            return None
        now = self._clock()
        args = [repr(now), repr(now + ttl), ms(ttl), *(int(limits[key]) for key in counters)]
        full = int(await self._script(self._kv_incr_under, [self._key("kv", key) for key in counters], args))
        return counters[full - 1] if full else None

    async def lock_acquire(self, name: str, *, lease: float) -> str | None:
        """Take the named lock for lease seconds."""
        lease = positive("lease", lease)
        token = new_token()
        now = self._clock()
        done = await self._script(
            self._kv_set_if_absent,
            (self._key("lock", name),),
            (token, repr(now + lease), repr(now), ms(lease)),
        )
        return token if done else None

    async def lock_release(self, name: str, token: str) -> bool:
        """Release the lock if the token still owns it."""
        done = await self._script(self._lock_release, (self._key("lock", name),), (token, self._now()))
        return bool(done)
