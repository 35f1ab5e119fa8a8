"""The shared store on Redis, through redis.asyncio: Lua scripts keep the rules atomic across instances.

Every rule-keeping operation is one Lua script (EVALSHA through register_script) that checks
everything first and only then writes, audit record included, so no reply ever leaves a half
state and two processes cannot interleave. Every key lives under the configured prefix, so that
two deployments can share a server. Times come from the injected clock and are passed to the
scripts: leases and TTLs are checked against it; Redis's own expiry only sweeps up afterwards.

Key layout under prefix P: P b:<member> (binding hash), P p:<phone> and P o:<openid> (indexes),
P members (set), P audit and P audit:m:<member> (lists of JSON, newest first), P dir (hash),
P kv:<key>, P lock:<name>, P idem:<key> (hashes v, e), P inbox:i:<id> (hash),
P inbox:ready, P inbox:leased, P inbox:dead (sorted sets), P inbox:d:<dedup key>.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from callback_service.store.common import (
    DEFAULT_DEDUP_TTL,
    AppendBatcher,
    PendingAppend,
    find_problems,
    limit_arg,
    new_token,
    phone_arg,
    positive,
)
from callback_service.store.persistence import check_persistence
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
from handlers.phone import Phone

SCHEMA_VERSION: Final = 1
DEFAULT_PREFIX: Final = "wecom-bind:"
_EXPIRY_SLACK_MS: Final = 1000  # Redis drops an entry this long after the clock says it expired

_PRELUDE: Final = r"""
local P = ARGV[1]
local NOW_S = ARGV[2]
local NOW = tonumber(NOW_S)
local WHO = ARGV[3]
local SOURCE = ARGV[4]

local function mask(phone)
  if #phone < 7 then return string.rep('*', #phone) end
  return string.sub(phone, 1, 3) .. '****' .. string.sub(phone, -4)
end

local FIELDS = {'phone', 'state', 'openid', 'lease', 'prev', 'token', 'updated'}

local function load(member)
  local values = redis.call('HMGET', P .. 'b:' .. member, unpack(FIELDS))
  if not values[2] then return nil end
  local b = {member = member}
  for i, f in ipairs(FIELDS) do
    if values[i] then b[f] = values[i] end
  end
  return b
end

local function save(b)
  local key = P .. 'b:' .. b.member
  redis.call('DEL', key)
  local args = {'state', b.state, 'updated', NOW_S}
  for _, f in ipairs({'phone', 'openid', 'lease', 'prev', 'token'}) do
    if b[f] then
      table.insert(args, f)
      table.insert(args, b[f])
    end
  end
  redis.call('HSET', key, unpack(args))
  redis.call('SADD', P .. 'members', b.member)
  b.updated = NOW_S
  return b
end

local function remove(member)
  redis.call('DEL', P .. 'b:' .. member)
  redis.call('SREM', P .. 'members', member)
end

local function holder(phone)
  return redis.call('GET', P .. 'p:' .. phone)
end

local function index(phone, member)
  redis.call('SET', P .. 'p:' .. phone, member)
end

local function unindex(phone, member)
  if phone and redis.call('GET', P .. 'p:' .. phone) == member then
    redis.call('DEL', P .. 'p:' .. phone)
  end
end

local function ounindex(openid, member)
  if openid and redis.call('GET', P .. 'o:' .. openid) == member then
    redis.call('DEL', P .. 'o:' .. openid)
  end
end

local function audit(action, member, phone, detail)
  local id = redis.call('INCR', P .. 'audit:seq')
  local record = cjson.encode({
    id = id, at = NOW_S, who = WHO, source = SOURCE, action = action, member = member,
    phone = phone and mask(phone) or '', detail = detail or ''})
  redis.call('LPUSH', P .. 'audit', record)
  redis.call('LPUSH', P .. 'audit:m:' .. member, record)
end

local function expired(b)
  return b.state == 'pending' and tonumber(b.lease) <= NOW
end

local function holds(b, phone)
  if not b then return false end
  if b.phone == phone then return not expired(b) end
  return b.prev == phone
end

local function revert(b, action)
  unindex(b.phone, b.member)
  local result = nil
  if b.prev then
    result = save({member = b.member, state = 'bound', phone = b.prev})
  else
    remove(b.member)
  end
  local detail = 'back to unbound'
  if b.prev then detail = 'back to ' .. mask(b.prev) end
  audit(action, b.member, b.phone, detail)
  return result
end

local function strip(b, phone, taker)
  if b.state == 'pending' and b.phone == phone then
    revert(b, 'claim_dropped')
    return
  end
  unindex(phone, b.member)
  if b.state == 'pending' then
    b.prev = nil
    save(b)
  elseif b.state == 'followed' then
    b.phone = nil
    save(b)
  else
    remove(b.member)
  end
  audit('phone_lost', b.member, phone, 'taken by ' .. taker)
end

local function out(status, b)
  if b then return {status, cjson.encode(b)} end
  return {status, ''}
end
"""

_CLAIM: Final = r"""
local member, phone, lease_until, token = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local own = load(member)
local stale_own = own and expired(own)
if own and own.state == 'pending' and not stale_own then return out('in_progress', own) end
local current = nil
if own then
  if stale_own then current = own.prev else current = own.phone end
end
if own and own.state == 'followed' and own.phone ~= phone then return out('followed') end
local hid = holder(phone)
local h = nil
if hid and hid ~= member then
  h = load(hid)
  if holds(h, phone) then return out('taken') end
end
if stale_own then revert(own, 'claim_expired') end
if current == phone then return out('already') end
if h and expired(h) and h.phone == phone then revert(h, 'claim_expired') end
local b = save({member = member, state = 'pending', phone = phone, lease = lease_until,
                prev = current, token = token})
index(phone, member)
local detail = ''
if current then detail = 'previous ' .. mask(current) end
audit('claim', member, phone, detail)
return out('ok', b)
"""

_COMMIT: Final = r"""
local member, phone, token, already = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local b = load(member)
if already == '1' then
  if not b or b.state == 'pending' or b.phone ~= phone then return out('lost') end
  return out('ok', b)
end
if not b or b.state ~= 'pending' or b.token ~= token then return out('lost') end
local prev = b.prev
unindex(prev, member)
b = save({member = member, state = 'bound', phone = b.phone})
local detail = ''
if prev then detail = 'replaces ' .. mask(prev) end
audit('bind', member, b.phone, detail)
return out('ok', b)
"""

_RELEASE: Final = r"""
local member, token = ARGV[5], ARGV[6]
local b = load(member)
if not b or b.state ~= 'pending' or b.token ~= token then return out('lost') end
revert(b, 'release')
return out('ok')
"""

_FOLLOW: Final = r"""
local member, openid = ARGV[5], ARGV[6]
local b = load(member)
if b and b.state == 'followed' then
  if b.openid == openid then return out('ok', b) end
  return out('conflict')
end
local owner = redis.call('GET', P .. 'o:' .. openid)
if owner and owner ~= member then
  local o = load(owner)
  if o and o.openid == openid then return out('conflict') end
end
if b and b.state == 'pending' then b = revert(b, 'claim_dropped') end
local phone = nil
if b then phone = b.phone end
local saved = save({member = member, state = 'followed', phone = phone, openid = openid})
redis.call('SET', P .. 'o:' .. openid, member)
audit('follow', member, phone, 'openid ' .. openid)
return out('ok', saved)
"""

_UNFOLLOW: Final = r"""
local member = ARGV[5]
local b = load(member)
if not b or b.state ~= 'followed' then return out('ok', b) end
ounindex(b.openid, member)
local result = nil
if b.phone then
  result = save({member = member, state = 'bound', phone = b.phone})
else
  remove(member)
end
audit('unfollow', member, b.phone, 'openid ' .. b.openid)
return out('ok', result)
"""

_SET_PHONE: Final = r"""
local member, wanted, take = ARGV[5], ARGV[6], ARGV[7]
if wanted == '' then wanted = nil end
local h = nil
if wanted then
  local hid = holder(wanted)
  if hid and hid ~= member then
    h = load(hid)
    if holds(h, wanted) and take ~= '1' then return out('taken') end
  end
end
local b = load(member)
if b and b.state == 'pending' then b = revert(b, 'claim_dropped') end
if not wanted then
  if not b or not b.phone then return out('ok', b) end
  unindex(b.phone, member)
  local result = nil
  if b.state == 'followed' then
    result = save({member = member, state = 'followed', openid = b.openid})
  else
    remove(member)
  end
  audit('settle', member, b.phone, 'phone removed')
  return out('ok', result)
end
if b and b.phone == wanted then return out('ok', b) end
if h then
  if holds(h, wanted) then
    strip(h, wanted, member)
  elseif expired(h) and h.phone == wanted then
    revert(h, 'claim_expired')
  end
end
local old, openid, state = nil, nil, 'bound'
if b then
  old = b.phone
  openid = b.openid
  if b.state == 'followed' then state = 'followed' end
end
unindex(old, member)
local saved = save({member = member, state = state, phone = wanted, openid = openid})
index(wanted, member)
local detail = ''
if old then detail = 'replaces ' .. mask(old) end
audit('settle', member, wanted, detail)
return out('ok', saved)
"""

_DELETE: Final = r"""
local member = ARGV[5]
local b = load(member)
if not b then return out('none') end
unindex(b.phone, member)
unindex(b.prev, member)
ounindex(b.openid, member)
remove(member)
audit('delete', member, b.phone, '')
return out('ok')
"""

_CONFLICT: Final = r"""
local member, phone, detail = ARGV[5], ARGV[6], ARGV[7]
if phone == '' then phone = nil end
audit('conflict', member, phone, detail)
return out('ok')
"""

_RENAME: Final = r"""
local old, new = ARGV[5], ARGV[6]
local b = load(old)
if not b or old == new then return out('ok', b) end
local n = load(new)
if n then
  unindex(n.phone, new)
  unindex(n.prev, new)
  ounindex(n.openid, new)
  remove(new)
  audit('delete', new, n.phone, 'replaced by rename of ' .. old)
end
remove(old)
b.member = new
local saved = save(b)
if b.phone then index(b.phone, new) end
if b.prev then index(b.prev, new) end
if b.openid then redis.call('SET', P .. 'o:' .. b.openid, new) end
audit('rename', old, b.phone, 'to ' .. new)
audit('rename', new, b.phone, 'from ' .. old)
return out('ok', saved)
"""

_BY_PHONE: Final = r"""
local phone = ARGV[5]
local hid = holder(phone)
if not hid then return out('none') end
local b = load(hid)
if holds(b, phone) then return out('ok', b) end
return out('none')
"""

_BY_OPENID: Final = r"""
local openid = ARGV[5]
local owner = redis.call('GET', P .. 'o:' .. openid)
if not owner then return out('none') end
local b = load(owner)
if b and b.openid == openid then return out('ok', b) end
return out('none')
"""

_ALL_BINDINGS: Final = r"""
local members = redis.call('SMEMBERS', P .. 'members')
local result = {}
for _, member in ipairs(members) do
  local b = load(member)
  if b then table.insert(result, cjson.encode(b)) end
end
return result
"""

# Key-value scripts: KEYS[1] is the entry, a hash of v (value) and e (expires at, clock seconds).
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

# Inbox scripts: ARGV[1] prefix, ARGV[2] now. Ids are zero-padded in the sorted sets so that
# equal scores still order by id.
_INBOX_PRELUDE: Final = r"""
local P = ARGV[1]
local NOW_S = ARGV[2]
local NOW = tonumber(NOW_S)
local READY, LEASED, DEAD = P .. 'inbox:ready', P .. 'inbox:leased', P .. 'inbox:dead'

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

_UNAVAILABLE: Final = (RedisError, OSError, asyncio.TimeoutError)
_APPEND_BATCH: Final = 256  # events per append script at most: a script holds the server while it runs


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000) + _EXPIRY_SLACK_MS


def _item_id(item_id: int) -> str:
    return f"{item_id:015d}"


def _binding(data: dict[str, Any]) -> Binding:
    lease = data.get("lease")
    return Binding(
        member_id=str(data["member"]),
        phone=data.get("phone") or None,
        state=BindingState(data["state"]),
        openid=data.get("openid") or None,
        lease_expires_at=None if lease is None else float(lease),
        previous_phone=data.get("prev") or None,
        updated_at=float(data["updated"]),
    )


def _decoded(reply: Any) -> tuple[str, dict[str, Any] | None]:
    status, payload = reply[0], reply[1]
    return str(status), (json.loads(payload) if payload else None)


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


class RedisStore:
    """The store on a Redis server (see the module docstring)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = time.time,
        dedup_ttl: float = DEFAULT_DEDUP_TTL,
        allow_volatile: bool = False,
    ) -> None:
        self._redis = client
        self._allow_volatile = allow_volatile
        self._prefix = prefix
        self._clock = clock
        self._dedup_ttl = positive("dedup_ttl", dedup_ttl)
        self._closed = False
        # Concurrent inbox appends share one script call.
        self._appends = AppendBatcher(self._append_batch, limit=_APPEND_BATCH, name="redis-inbox-flush")
        register = client.register_script
        self._claim = register(_PRELUDE + _CLAIM)
        self._commit = register(_PRELUDE + _COMMIT)
        self._release = register(_PRELUDE + _RELEASE)
        self._follow = register(_PRELUDE + _FOLLOW)
        self._unfollow = register(_PRELUDE + _UNFOLLOW)
        self._set_phone = register(_PRELUDE + _SET_PHONE)
        self._delete = register(_PRELUDE + _DELETE)
        self._rename = register(_PRELUDE + _RENAME)
        self._conflict = register(_PRELUDE + _CONFLICT)
        self._by_phone = register(_PRELUDE + _BY_PHONE)
        self._by_openid = register(_PRELUDE + _BY_OPENID)
        self._all_bindings = register(_PRELUDE + _ALL_BINDINGS)
        self._kv_set = register(_KV_SET)
        self._kv_set_if_absent = register(_KV_SET_IF_ABSENT)
        self._kv_put_or_get = register(_KV_PUT_OR_GET)
        self._kv_pop = register(_KV_POP)
        self._kv_incr = register(_KV_INCR)
        self._lock_release = register(_LOCK_RELEASE)
        self._inbox_append = register(_INBOX_PRELUDE + _INBOX_APPEND)
        self._inbox_take = register(_INBOX_PRELUDE + _INBOX_TAKE)
        self._inbox_done = register(_INBOX_PRELUDE + _INBOX_DONE)
        self._inbox_retry = register(_INBOX_PRELUDE + _INBOX_RETRY)
        self._inbox_dead = register(_INBOX_PRELUDE + _INBOX_DEAD)
        self._inbox_list_dead = register(_INBOX_PRELUDE + _INBOX_LIST_DEAD)
        self._inbox_requeue = register(_INBOX_PRELUDE + _INBOX_REQUEUE)
        self._inbox_stats = register(_INBOX_PRELUDE + _INBOX_STATS)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = time.time,
        dedup_ttl: float = DEFAULT_DEDUP_TTL,
        socket_timeout: float = 5.0,
        max_connections: int = 32,
        allow_volatile: bool = False,
    ) -> RedisStore:
        """Connect, check the schema version and persistence; StoreUnavailable when the server does not
        answer, StoreNotDurable when it does not persist (unless allow_volatile)."""
        # No automatic retries: a script retried after a lost reply would run twice. A blocking
        # pool makes a burst of requests queue for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        client = aioredis.Redis.from_pool(pool)
        store = cls(client, prefix=prefix, clock=clock, dedup_ttl=dedup_ttl, allow_volatile=allow_volatile)
        try:
            await store._check_schema()
            with store._unavailable():
                await check_persistence(client, allow_volatile=allow_volatile, at_start=True)
        except BaseException:
            await store.close()
            raise
        return store

    async def _check_schema(self) -> None:
        key = self._prefix + "schema"
        with self._unavailable():
            await self._redis.set(key, str(SCHEMA_VERSION), nx=True)
            version = int(await self._redis.get(key) or 0)
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"redis: schema version {version} is newer than this code ({SCHEMA_VERSION})"
            )

    # plumbing

    def _now(self) -> str:
        return repr(self._clock())

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        """Turn every connection error, timeout or server refusal into StoreUnavailable."""
        if self._closed:
            raise StoreUnavailable("redis: store is closed")
        try:
            yield
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with self._unavailable():
            return await script(keys=list(keys), args=list(args))

    async def _rule(self, script: AsyncScript, actor: Actor | None, *args: str) -> Any:
        who, source = (actor.who, actor.source) if actor else ("", "")
        return await self._run(script, (), (self._prefix, self._now(), who, source, *args))

    async def _inbox(self, script: AsyncScript, *args: str) -> Any:
        return await self._run(script, (), (self._prefix, self._now(), *args))

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    # lifecycle

    async def ping(self) -> None:
        """Check that the server answers and persists (StoreNotDurable when not, unless allowed)."""
        with self._unavailable():
            await self._redis.ping()
            await check_persistence(self._redis, allow_volatile=self._allow_volatile, at_start=False)

    async def close(self) -> None:
        """Close the connection pool; the store is unusable afterwards."""
        self._closed = True
        with contextlib.suppress(*_UNAVAILABLE):
            await self._redis.aclose()

    # school directory

    async def directory_upsert(self, entries: Sequence[DirectoryEntry]) -> int:
        """Insert or replace directory entries in one HSET (atomic)."""
        mapping: dict[FieldT, EncodableT] = {
            e.student_id: json.dumps([e.name, e.department, e.phone], ensure_ascii=False) for e in entries
        }
        if not mapping:
            return 0
        with self._unavailable():
            await self._redis.hset(self._prefix + "dir", mapping=mapping)
        return len(entries)

    async def directory_get(self, student_id: str) -> DirectoryEntry | None:
        """Return a student's directory entry."""
        with self._unavailable():
            encoded = await self._redis.hget(self._prefix + "dir", student_id)
        if encoded is None:
            return None
        name, department, phone = json.loads(encoded)
        return DirectoryEntry(student_id, name, department, phone)

    async def directory_count(self) -> int:
        """Return the number of directory entries."""
        with self._unavailable():
            return int(await self._redis.hlen(self._prefix + "dir"))

    # bindings: reads

    async def get_binding(self, member_id: str) -> Binding | None:
        """Return the member's binding."""
        with self._unavailable():
            raw = await self._redis.hgetall(self._key("b", member_id))
        if not raw:
            return None
        return _binding({**{str(k): str(v) for k, v in raw.items()}, "member": member_id})

    async def get_binding_by_phone(self, phone: Phone) -> Binding | None:
        """Return the binding holding the phone."""
        _, data = _decoded(await self._rule(self._by_phone, None, phone_arg(phone)))
        return None if data is None else _binding(data)

    async def get_binding_by_openid(self, openid: str) -> Binding | None:
        """Return the binding followed by the openid."""
        _, data = _decoded(await self._rule(self._by_openid, None, openid))
        return None if data is None else _binding(data)

    async def list_bindings(self) -> list[Binding]:
        """Return every binding by member id (one atomic read)."""
        encoded = await self._rule(self._all_bindings, None)
        return sorted((_binding(json.loads(e)) for e in encoded), key=lambda b: b.member_id)

    # bindings: the rules

    async def claim_phone(self, member_id: str, phone: Phone, *, lease: float, actor: Actor) -> Claim:
        """Hold the phone for the member under a lease (I1, I3, one claim per member)."""
        phone = phone_arg(phone)
        lease = positive("lease", lease)
        token = new_token()
        now = self._clock()
        lease_until = now + lease
        reply = await self._run(
            self._claim,
            (),
            (self._prefix, repr(now), actor.who, actor.source, member_id, phone, repr(lease_until), token),
        )
        status, data = _decoded(reply)
        if status == "in_progress":
            raise ClaimInProgress(member_id, data.get("phone") if data else None)
        if status == "followed":
            raise AccountFollowed(member_id, phone)
        if status == "taken":
            raise PhoneTaken(member_id, phone)
        if status == "already":
            return Claim(member_id, phone, "", None, None, actor, already_bound=True)
        assert status == "ok", status
        assert data is not None
        return Claim(member_id, phone, token, lease_until, data.get("prev") or None, actor)

    async def commit_claim(self, claim: Claim) -> Binding:
        """Make the claimed phone the bound one (I2)."""
        status, data = _decoded(
            await self._rule(
                self._commit,
                claim.actor,
                claim.member_id,
                claim.phone,
                claim.token,
                "1" if claim.already_bound else "0",
            )
        )
        if status != "ok" or data is None:
            raise ClaimLost(claim.member_id, claim.phone)
        return _binding(data)

    async def release_claim(self, claim: Claim) -> bool:
        """Give the claim up."""
        if claim.already_bound:
            return True
        status, _ = _decoded(await self._rule(self._release, claim.actor, claim.member_id, claim.token))
        return status == "ok"

    async def follow(self, member_id: str, openid: str, *, actor: Actor) -> Binding:
        """Record the follow (I4)."""
        status, data = _decoded(await self._rule(self._follow, actor, member_id, openid))
        if status == "conflict" or data is None:
            raise OpenidConflict(member_id, openid)
        return _binding(data)

    async def unfollow(self, member_id: str, *, actor: Actor) -> Binding | None:
        """Record the unfollow."""
        _, data = _decoded(await self._rule(self._unfollow, actor, member_id))
        return None if data is None else _binding(data)

    async def set_member_phone(
        self, member_id: str, phone: Phone | None, *, take: bool, actor: Actor
    ) -> Binding | None:
        """Settle the member's phone from WeCom's truth."""
        wanted = "" if phone is None else phone_arg(phone)
        status, data = _decoded(
            await self._rule(self._set_phone, actor, member_id, wanted, "1" if take else "0")
        )
        if status == "taken":
            raise PhoneTaken(member_id, wanted)
        return None if data is None else _binding(data)

    async def audit_conflict(self, member_id: str, phone: Phone | None, detail: str, *, actor: Actor) -> None:
        """Record a refused change."""
        wanted = "" if phone is None else phone_arg(phone)
        await self._rule(self._conflict, actor, member_id, wanted, detail)

    async def delete_member(self, member_id: str, *, actor: Actor) -> bool:
        """Remove the member's binding."""
        status, _ = _decoded(await self._rule(self._delete, actor, member_id))
        return status == "ok"

    async def rename_member(self, old_id: str, new_id: str, *, actor: Actor) -> Binding | None:
        """Move a binding to a new member id."""
        _, data = _decoded(await self._rule(self._rename, actor, old_id, new_id))
        return None if data is None else _binding(data)

    async def integrity_problems(self) -> list[str]:
        """Check the invariants; reads key by key, so meant for a quiet store."""
        encoded = await self._rule(self._all_bindings, None)
        records = [json.loads(e) for e in encoded]
        bindings = [_binding(r) for r in records]
        tokens = {str(r["member"]): r.get("token") for r in records}
        with self._unavailable():
            phone_index = await self._index("p")
            openid_index = await self._index("o")
            async with self._redis.pipeline(transaction=False) as pipe:
                for b in bindings:
                    pipe.exists(self._key("audit:m", b.member_id))
                found = await pipe.execute()
            audited = {b.member_id for b, n in zip(bindings, found, strict=True) if n}
        return find_problems(bindings, tokens, phone_index, openid_index, audited)

    async def _index(self, kind: str) -> dict[str, str]:
        start = f"{self._prefix}{kind}:"
        pattern = "".join(f"[{c}]" if c in "*?[]\\" else c for c in start) + "*"
        keys = [key async for key in self._redis.scan_iter(match=pattern, count=1000)]
        if not keys:
            return {}
        values = await self._redis.mget(keys)
        return {str(k)[len(start) :]: str(v) for k, v in zip(keys, values, strict=True) if v is not None}

    # audit log

    async def audit_list(self, *, member_id: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """Return audit records, newest first."""
        limit = limit_arg(limit)
        key = self._prefix + "audit" if member_id is None else self._key("audit:m", member_id)
        with self._unavailable():
            encoded = await self._redis.lrange(key, 0, limit - 1)
        records = []
        for entry in encoded:
            data = json.loads(entry)
            records.append(
                AuditRecord(
                    id=int(data["id"]),
                    at=float(data["at"]),
                    who=str(data["who"]),
                    source=str(data["source"]),
                    action=AuditAction(data["action"]),
                    member_id=str(data["member"]),
                    phone_masked=data["phone"] or None,
                    detail=str(data["detail"]),
                )
            )
        return records

    # idempotency keys

    async def idempotency_put(self, key: str, value: str, *, ttl: float) -> str | None:
        """First writer wins for ttl seconds."""
        ttl = positive("ttl", ttl)
        now = self._clock()
        existing = await self._run(
            self._kv_put_or_get, (self._key("idem", key),), (value, repr(now + ttl), repr(now), _ms(ttl))
        )
        return None if existing is None else str(existing)

    # key-value entries and locks

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
        await self._run(self._kv_set, (self._key("kv", key),), (value, repr(now + ttl), repr(now), _ms(ttl)))

    async def kv_set_if_absent(self, key: str, value: str, *, ttl: float) -> bool:
        """Set the value only when absent or expired."""
        ttl = positive("ttl", ttl)
        now = self._clock()
        done = await self._run(
            self._kv_set_if_absent, (self._key("kv", key),), (value, repr(now + ttl), repr(now), _ms(ttl))
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
        count = await self._run(
            self._kv_incr, (self._key("kv", key),), (repr(now), repr(now + ttl), _ms(ttl))
        )
        return int(count)

    async def lock_acquire(self, name: str, *, lease: float) -> str | None:
        """Take the named lock for lease seconds."""
        lease = positive("lease", lease)
        token = new_token()
        now = self._clock()
        done = await self._run(
            self._kv_set_if_absent,
            (self._key("lock", name),),
            (token, repr(now + lease), repr(now), _ms(lease)),
        )
        return token if done else None

    async def lock_release(self, name: str, token: str) -> bool:
        """Release the lock if the token still owns it."""
        done = await self._run(self._lock_release, (self._key("lock", name),), (token, self._now()))
        return bool(done)

    # durable event inbox

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
        args = [self._prefix, repr(now), repr(now + self._dedup_ttl), str(_ms(self._dedup_ttl))]
        for item in batch:
            args += (item.dedup_key, item.event_type, item.payload)
        added = await self._run(self._inbox_append, (), args)
        return [bool(flag) for flag in added]

    async def inbox_take(self, limit: int, *, lease: float) -> list[InboxItem]:
        """Lease due events."""
        limit = limit_arg(limit)
        lease = positive("lease", lease)
        now = self._clock()
        encoded = await self._run(
            self._inbox_take, (), (self._prefix, repr(now), str(limit), repr(now + lease))
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

    # personal data (PIPL): small and self-contained, so that they move with the backend

    async def directory_delete(self, student_id: str) -> bool:
        """Remove a student's directory entry."""
        with self._unavailable():
            return bool(await self._redis.hdel(self._prefix + "dir", student_id))

    async def audit_note(self, member_id: str, action: AuditAction, detail: str, *, actor: Actor) -> None:
        """Append an audit record that changes nothing else."""
        script = self._redis.register_script(_PRELUDE + _AUDIT_NOTE)
        await self._rule(script, actor, member_id, action.value, detail)

    async def audit_prune(self, before: float, *, member_id: str | None = None) -> int:
        """Delete the audit records written before the time given, a bounded batch per script call."""
        script = self._redis.register_script(_AUDIT_PRUNE)
        pruned = 0
        while True:
            count = int(
                await self._run(script, (), (self._prefix, repr(before), member_id or "", str(_PRUNE_BATCH)))
            )
            pruned += count
            if count < _PRUNE_BATCH:
                return pruned

    async def inbox_oldest_pending(self) -> float | None:
        """Return when the oldest event not yet handled was stored."""
        script = self._redis.register_script(_INBOX_PRELUDE + _INBOX_OLDEST)
        created = await self._inbox(script)
        return None if created is None else float(created)


_AUDIT_NOTE: Final = r"""
audit(ARGV[6], ARGV[5], nil, ARGV[7])
return out('ok')
"""

# The audit lists are newest first, so the old records sit at their tails: pop them there while
# they are older than ARGV[2], at most ARGV[4] per call, from one member's list (ARGV[3]) and the
# whole log, or from the whole log and the lists of the members they name.
_PRUNE_BATCH: Final = 500
_AUDIT_PRUNE: Final = r"""
local P, before, member, limit = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local function old_tail(key)
  local last = redis.call('LINDEX', key, -1)
  if not last then return nil end
  if tonumber(cjson.decode(last).at) >= before then return nil end
  return redis.call('RPOP', key)
end
local count = 0
if member ~= '' then
  while count < limit do
    local record = old_tail(P .. 'audit:m:' .. member)
    if not record then break end
    redis.call('LREM', P .. 'audit', -1, record)
    count = count + 1
  end
  return count
end
while count < limit do
  local record = old_tail(P .. 'audit')
  if not record then break end
  local owner = cjson.decode(record).member
  redis.call('LREM', P .. 'audit:m:' .. owner, -1, record)
  count = count + 1
end
return count
"""

# The zero-padded ids grow with creation, so the smallest id of the ready and leased sets is the
# oldest live event; the sets are scanned in full, which a scrape can afford at an inbox's depth.
_INBOX_OLDEST: Final = r"""
local oldest = nil
for _, set in ipairs({READY, LEASED}) do
  local first = redis.call('ZRANGE', set, 0, -1)
  for _, id in ipairs(first) do
    if oldest == nil or id < oldest then oldest = id end
  end
end
if oldest == nil then return nil end
return redis.call('HGET', P .. 'inbox:i:' .. oldest, 'created')
"""
