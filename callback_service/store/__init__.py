"""The store backends behind handlers.usecases.contracts.Store, chosen by the URL in WECOM_BIND_STORE_URL.

`sqlite:///data/wecom-bind.db` (a path relative to the working directory) or
`sqlite:////var/lib/wecom-bind/store.db` (absolute: four slashes, as in SQLAlchemy) opens the
embedded SQLite store; `redis://host:port/db` (also `rediss://`, `unix://`) opens the Redis store,
with an optional `prefix` query parameter (default `wecom-bind:`): every key lives under the hash
tag `{prefix}` (so the prefix holds no brace), in one Redis Cluster slot.
"""

from __future__ import annotations

import time
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from callback_service.store.redis import DEFAULT_PREFIX, RedisStore
from callback_service.store.sqlite import SqliteStore
from handlers.usecases.contracts import Clock, ConsoleStore, HealthStore, PagesStore, Store

__all__ = ["CONSOLE_STORE", "HEALTH_STORE", "PAGES_STORE", "STORE", "RedisStore", "SqliteStore", "open_store"]

STORE: Final[web.AppKey[Store]] = web.AppKey("store")
"""The app's store, opened at start."""
CONSOLE_STORE: Final[web.AppKey[ConsoleStore]] = web.AppKey("console_store")
"""The same store as the administrators' console sees it: only what the console uses."""
PAGES_STORE: Final[web.AppKey[PagesStore]] = web.AppKey("pages_store")
"""The same store as the students' pages see it: only what the pages and the use cases they hold use."""
HEALTH_STORE: Final[web.AppKey[HealthStore]] = web.AppKey("health_store")
"""The same store as /ready and /metrics see it: its ping and the inbox's counts."""


async def open_store(url: str, *, clock: Clock = time.time, allow_volatile: bool = False) -> Store:
    """Open the store that the URL names; StoreUnavailable when it cannot be reached.

    A Redis server that does not persist raises StoreNotDurable unless allow_volatile. A malformed
    URL raises ValueError naming the setting, never echoing the URL (it may hold a password).
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ValueError("WECOM_BIND_STORE_URL: a SQLite URL reads sqlite:///path/to/file.db")
        return await SqliteStore.open(url[len("sqlite:///") :], clock=clock)
    if scheme in ("redis", "rediss", "unix"):
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = DEFAULT_PREFIX
        rest = []
        for name, value in query:
            if name == "prefix":
                prefix = value
            else:
                rest.append((name, value))
        if not prefix:
            raise ValueError("WECOM_BIND_STORE_URL: the Redis key prefix must not be empty")
        plain = urlunsplit(parts._replace(query=urlencode(rest)))
        return await RedisStore.open(plain, prefix=prefix, clock=clock, allow_volatile=allow_volatile)
    raise ValueError(
        f"WECOM_BIND_STORE_URL: unknown scheme {scheme!r}; use sqlite:///path or redis://host:port/db"
    )
