"""The shared store on Redis, through redis.asyncio, safe across instances.

Parts: base (the client, keys under the deployment's hash tag, errors), layout (the key layout,
records' encoding, the migration from layout 1), bindings (the rules of handlers.core.rules read,
decided and applied by one generic compare-and-apply script; the audit log), directory, members
(WeCom's word on each member), kv (entries and locks) and inbox.
"""

from __future__ import annotations

from callback_service.store.redis.base import DEFAULT_PREFIX
from callback_service.store.redis.bindings import RedisBindings
from callback_service.store.redis.directory import RedisDirectory
from callback_service.store.redis.inbox import RedisInbox
from callback_service.store.redis.kv import RedisKv
from callback_service.store.redis.layout import SCHEMA_VERSION
from callback_service.store.redis.members import RedisMembers

__all__ = ["DEFAULT_PREFIX", "SCHEMA_VERSION", "RedisStore"]


class RedisStore(RedisBindings, RedisDirectory, RedisMembers, RedisKv, RedisInbox):
    """The store on a Redis server (see the package docstring)."""
