"""The Redis store's key-value entries, leased locks and idempotency keys: one script per change.

Each entry is a hash of v (the value) and e (its expiry, clock seconds), named in KEYS[1].
"""

from __future__ import annotations

from typing import Any, Final

from callback_service.store.common import new_token, positive
from callback_service.store.redis.base import RedisBase, ms

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

_KV_PUT_OR_GET: Final = r"""
local cur = redis.call('HMGET', KEYS[1], 'v', 'e')
if cur[1] and tonumber(cur[2]) > tonumber(ARGV[3]) then return cur[1] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return false
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

_LOCK_RELEASE: Final = r"""
local cur = redis.call('HMGET', KEYS[1], 'v', 'e')
if not cur[1] or cur[1] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(cur[2]) > tonumber(ARGV[2]) then return 1 end
return 0
"""


class RedisKv(RedisBase):
    """Entries with expiry, locks and idempotency keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        register = self._redis.register_script
        self._kv_set = register(_KV_SET)
        self._kv_set_if_absent = register(_KV_SET_IF_ABSENT)
        self._kv_put_or_get = register(_KV_PUT_OR_GET)
        self._kv_pop = register(_KV_POP)
        self._kv_incr = register(_KV_INCR)
        self._lock_release = register(_LOCK_RELEASE)

    async def idempotency_put(self, key: str, value: str, *, ttl: float) -> str | None:
        """First writer wins for ttl seconds."""
        ttl = positive("ttl", ttl)
        now = self._clock()
        existing = await self._run(
            self._kv_put_or_get, (self._key("idem", key),), (value, repr(now + ttl), repr(now), ms(ttl))
        )
        return None if existing is None else str(existing)

    async def kv_get(self, key: str) -> str | None:
        """Return the value unless absent or expired."""
        with self._unavailable():
            value, expires_at = await self._redis.hmget(self._key("kv", key), ["v", "e"])
        if value is None or expires_at is None or float(expires_at) <= self._clock():
            return None
        return str(value)

    async def kv_set(self, key: str, value: str, *, ttl: float) -> None:
        """Set the value with a ttl."""
        ttl = positive("ttl", ttl)
        now = self._clock()
        await self._run(self._kv_set, (self._key("kv", key),), (value, repr(now + ttl), repr(now), ms(ttl)))

    async def kv_set_if_absent(self, key: str, value: str, *, ttl: float) -> bool:
        """Set the value only when absent or expired."""
        ttl = positive("ttl", ttl)
        now = self._clock()
        done = await self._run(
            self._kv_set_if_absent, (self._key("kv", key),), (value, repr(now + ttl), repr(now), ms(ttl))
        )
        return bool(done)

    async def kv_pop(self, key: str) -> str | None:
        """Read and delete atomically."""
        value = await self._run(self._kv_pop, (self._key("kv", key),), (self._now(),))
        return None if value is None else str(value)

    async def kv_delete(self, key: str) -> None:
        """Delete the entry."""
        with self._unavailable():
            await self._redis.delete(self._key("kv", key))

    async def kv_incr(self, key: str, *, ttl: float) -> int:
        """Increment a counter that expires ttl seconds after it was created."""
        ttl = positive("ttl", ttl)
        now = self._clock()
        count = await self._run(self._kv_incr, (self._key("kv", key),), (repr(now), repr(now + ttl), ms(ttl)))
        return int(count)

    async def lock_acquire(self, name: str, *, lease: float) -> str | None:
        """Take the named lock for lease seconds."""
        lease = positive("lease", lease)
        token = new_token()
        now = self._clock()
        done = await self._run(
            self._kv_set_if_absent,
            (self._key("lock", name),),
            (token, repr(now + lease), repr(now), ms(lease)),
        )
        return token if done else None

    async def lock_release(self, name: str, token: str) -> bool:
        """Release the lock if the token still owns it."""
        done = await self._run(self._lock_release, (self._key("lock", name),), (token, self._now()))
        return bool(done)
