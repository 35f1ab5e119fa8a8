"""Whether a Redis server keeps what it acknowledged across a restart: checked at start and by /ready."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from handlers.usecases.contracts import StoreNotDurable

log: Final = logging.getLogger(__name__)

ALLOW_VOLATILE_SETTING: Final = "WECOM_BIND_REDIS_ALLOW_VOLATILE"
"""The setting that lets the service run on a Redis without persistence (tests, a demo)."""


@dataclass(frozen=True, slots=True)
class Persistence:
    """What the server says of its persistence; None where it would not say."""

    aof: bool | None
    rdb: bool | None

    @property
    def persists(self) -> bool:
        """True when writes reach disk: the append-only file, or at least RDB snapshots."""
        return bool(self.aof) or bool(self.rdb)

    def describe(self) -> str:
        """The settings found, for a log line or an error message."""
        if self.aof is None and self.rdb is None:
            return "CONFIG and INFO persistence were both refused, so persistence cannot be confirmed"
        aof = {True: "appendonly yes", False: "appendonly no", None: "appendonly unknown"}[self.aof]
        rdb = {True: "RDB save points set", False: 'save ""', None: "save points unknown (CONFIG refused)"}[
            self.rdb
        ]
        return f"{aof}, {rdb}"


async def redis_persistence(client: aioredis.Redis) -> Persistence:
    """Ask the server with CONFIG GET, or INFO persistence where CONFIG is renamed or refused by an ACL."""
    try:
        appendonly = await client.config_get("appendonly")
        save = await client.config_get("save")
        return Persistence(
            aof=str(appendonly.get("appendonly", "")).lower() == "yes",
            rdb=bool(str(save.get("save", "")).strip()),
        )
    except ResponseError:
        pass
    try:
        info = await client.info("persistence")
    except ResponseError:
        return Persistence(aof=None, rdb=None)
    # INFO does not list the RDB save points: only the append-only file can be confirmed here.
    return Persistence(aof=str(info.get("aof_enabled", "0")) == "1", rdb=None)


async def check_persistence(client: aioredis.Redis, *, allow_volatile: bool, at_start: bool) -> None:
    """Refuse a server that would lose acknowledged writes on a restart, unless allowed; warn at start."""
    found = await redis_persistence(client)
    if found.persists:
        if at_start and not found.aof:
            log.warning(
                "redis: RDB snapshots only (%s): a crash loses what was acknowledged since the last "
                "snapshot; production runs with appendonly yes",
                found.describe(),
            )
        return
    if not allow_volatile:
        raise StoreNotDurable(
            f"redis does not persist ({found.describe()}): acknowledged callbacks would be lost on a "
            f"restart; turn on appendonly yes, or set {ALLOW_VOLATILE_SETTING}=true to run anyway"
        )
    if at_start:
        log.warning(
            "redis does not persist (%s), allowed by %s: acknowledged callbacks are lost on a restart",
            found.describe(),
            ALLOW_VOLATILE_SETTING,
        )
