"""The Redis store's record of WeCom's word on each member (MemberSeen): one hash of JSON by member id.

Each field of `{P}seen` is {"s": status or null, "t": seen_at, "src": source}; the encoding is
Python's, so that the time keeps every digit (Lua's cjson would round it to 14).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from callback_service.store.common import newest_seen
from callback_service.store.redis.base import RedisBase
from handlers.core.member import MemberSeen, MemberStatus

# KEYS[1]: the hash. ARGV, four per record: member id, status ('' for none), seen_at, the encoding.
# The reply: how many members' status is new or changed.
_RECORD: Final = r"""
local changed = 0
for i = 1, #ARGV, 4 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local write = true
  if cur then
    local d = cjson.decode(cur)
    local old = ''
    if d.s ~= cjson.null then old = tostring(d.s) end
    if tonumber(ARGV[i + 2]) < tonumber(d.t) then
      write = false
    elseif old ~= ARGV[i + 1] then
      changed = changed + 1
    end
  else
    changed = changed + 1
  end
  if write then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 3]) end
end
return changed
"""


def _encode(record: MemberSeen) -> str:
    status = None if record.status is None else int(record.status)
    return json.dumps({"s": status, "t": record.seen_at, "src": record.source}, ensure_ascii=False)


def _decode(member_id: str, encoded: str) -> MemberSeen:
    data = json.loads(encoded)
    status = data["s"]
    return MemberSeen(
        member_id, None if status is None else MemberStatus(int(status)), float(data["t"]), str(data["src"])
    )


class RedisMembers(RedisBase):
    """The `seen` hash."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._record = self._redis.register_script(_RECORD)

    async def record_members(self, seen: Sequence[MemberSeen]) -> int:
        """Upsert the newest record of each member in one script (atomic); return the statuses changed."""
        newest = newest_seen(seen)
        if not newest:
            return 0
        args: list[str] = []
        for record in newest.values():
            status = "" if record.status is None else str(int(record.status))
            args += [record.member_id, status, repr(record.seen_at), _encode(record)]
        return int(await self._script(self._record, (self._prefix + "seen",), args))

    async def member_seen(self, member_id: str) -> MemberSeen | None:
        """Return the member's record."""
        [encoded] = await self._commands(("HGET", self._prefix + "seen", member_id))
        return None if encoded is None else _decode(member_id, encoded)

    async def list_members_seen(self) -> list[MemberSeen]:
        """Return every record by member id."""
        with self._unavailable():
            fields = await self._redis.hgetall(self._prefix + "seen")
        return sorted((_decode(str(m), str(e)) for m, e in fields.items()), key=lambda r: r.member_id)

    async def forget_member_seen(self, member_id: str) -> bool:
        """Remove the member's record (a data erasure)."""
        [removed] = await self._commands(("HDEL", self._prefix + "seen", member_id))
        return bool(removed)
