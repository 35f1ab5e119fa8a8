"""The Redis store's copy of the school directory: one hash of JSON entries by student id."""

from __future__ import annotations

import json
from collections.abc import Sequence

from redis.typing import EncodableT, FieldT

from callback_service.store.common import stored_phone
from callback_service.store.redis.base import RedisBase
from handlers.core.binding import DirectoryEntry


class RedisDirectory(RedisBase):
    """The directory hash."""

    async def directory_upsert(self, entries: Sequence[DirectoryEntry]) -> int:
        """Insert or replace directory entries in one HSET (atomic)."""
        mapping: dict[FieldT, EncodableT] = {
            e.member_id: json.dumps([e.name, e.department, e.phone], ensure_ascii=False) for e in entries
        }
        if not mapping:
            return 0
        with self._unavailable():
            await self._redis.hset(self._prefix + "dir", mapping=mapping)
        return len(entries)

    async def directory_get(self, member_id: str) -> DirectoryEntry | None:
        """Return a student's directory entry."""
        [encoded] = await self._commands(("HGET", self._prefix + "dir", member_id))
        if encoded is None:
            return None
        return _entry(member_id, encoded)

    async def directory_count(self) -> int:
        """Return the number of directory entries."""
        with self._unavailable():
            return int(await self._redis.hlen(self._prefix + "dir"))

    async def directory_list(self) -> list[DirectoryEntry]:
        """Return every directory entry by student id."""
        with self._unavailable():
            fields = await self._redis.hgetall(self._prefix + "dir")
        return [_entry(str(member_id), encoded) for member_id, encoded in sorted(fields.items())]

    async def directory_delete(self, member_id: str) -> bool:
        """Remove a student's directory entry."""
        with self._unavailable():
            return bool(await self._redis.hdel(self._prefix + "dir", member_id))


def _entry(member_id: str, encoded: str | bytes) -> DirectoryEntry:
    name, department, text = json.loads(encoded)
    phone = stored_phone(text, member_id=member_id, record="directory")
    return DirectoryEntry(member_id, name, department, phone)
