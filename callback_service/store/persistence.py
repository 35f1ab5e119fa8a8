"""Whether a Redis server keeps what it acknowledged across a restart: checked at start, by /ready,
and by every inbox append (AOF_GUARD).

Only the append-only file counts. RDB snapshots keep what the last snapshot held: everything
acknowledged since (up to the whole interval of a `save` point, an hour for `save 3600 1`) is lost
when the server dies, and an inbox that acknowledged it has promised more than that.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
        """True when every acknowledged write reaches the append-only file (RDB snapshots do not count)."""
        return bool(self.aof)

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


def not_durable(described: str) -> StoreNotDurable:
    """The refusal of a server without the append-only file, naming what was found and the remedy."""
    return StoreNotDurable(
        f"redis does not persist ({described}): acknowledged callbacks would be lost on a restart "
        f"(RDB snapshots keep only what the last one held); turn on appendonly yes, or set "
        f"{ALLOW_VOLATILE_SETTING}=true to run anyway"
    )


AOF_GUARD: Final = r"""
local function aof_off()
  local info = redis.pcall('INFO', 'persistence')
  if type(info) ~= 'string' then return -2 end
  if not string.find(info, 'aof_enabled:1', 1, true) then return -1 end
  return nil
end
"""
"""Lua for a script that must write only what the append-only file keeps: aof_off() returns -1 when
the server's AOF is off, -2 when INFO is refused to scripts, nil when the write may go ahead. In the
script, before any write, so that the check and the write are one atomic step: a cached answer would
leave a window after `CONFIG SET appendonly no` in which writes are acknowledged but not logged."""

GUARD_REFUSALS: Final = {-1: "appendonly no", -2: "INFO persistence refused to scripts"}
"""What aof_off()'s answers mean, for not_durable()."""


async def check_persistence(client: aioredis.Redis, *, allow_volatile: bool, at_start: bool) -> None:
    """Refuse a server that would lose acknowledged writes on a restart, unless allowed; warn at start."""
    found = await redis_persistence(client)
    if found.persists:
        return
    if not allow_volatile:
        raise not_durable(found.describe())
    if at_start:
        log.warning(
            "redis does not persist (%s), allowed by %s: acknowledged callbacks are lost on a restart",
            found.describe(),
            ALLOW_VOLATILE_SETTING,
        )


REWRITE_WAIT: Final = 120.0
"""Seconds an erasure waits for Redis's rewrite of its append-only file (a fork that writes every key)."""
_REWRITE_POLL: Final = 0.1


async def _rewriting(client: aioredis.Redis) -> tuple[bool, str]:
    info = await client.info("persistence")
    fields = ("aof_rewrite_in_progress", "aof_rewrite_scheduled")
    running = any(str(info.get(field, 0)) == "1" for field in fields)
    return running, str(info.get("aof_last_bgrewrite_status", ""))


async def rewrite_aof(client: aioredis.Redis, *, wait: float = REWRITE_WAIT) -> str:
    """Rewrite the append-only file (BGREWRITEAOF) and wait for it, so that what was deleted before
    leaves the disk: until a rewrite, the AOF keeps every write ever made, erased phones too. Then,
    where RDB save points are set, a snapshot (BGSAVE) replaces the dump that still holds them.
    Returns what was done, or what the operator must do by hand; never raises a refusal."""
    deadline = time.monotonic() + wait
    try:
        found = await redis_persistence(client)
        if found.aof is False:
            done = "redis: no append-only file to rewrite"
        else:
            # A rewrite already running began before the erasure, and its file holds what was erased:
            # wait for it to end, then start one of ours.
            while (await _rewriting(client))[0]:
                if time.monotonic() >= deadline:
                    return "redis: a rewrite of the append-only file ran on and on: run BGREWRITEAOF later"
                await asyncio.sleep(_REWRITE_POLL)
            await client.bgrewriteaof()
            while True:
                running, status = await _rewriting(client)
                if not running:
                    break
                if time.monotonic() >= deadline:
                    return f"redis: the rewrite of the append-only file is still running after {wait:.0f} s"
                await asyncio.sleep(_REWRITE_POLL)
            if status != "ok":
                return f"redis: the rewrite of the append-only file failed ({status}): run BGREWRITEAOF"
            done = "redis: append-only file rewritten"
        if found.rdb:
            await client.bgsave(schedule=True)
            done += "; RDB snapshot started"
        return done
    except ResponseError as exc:
        # A managed Redis may rename or refuse BGREWRITEAOF: the erasure stands, the operator finishes it.
        return f"redis: {exc}: rewrite the append-only file by hand (BGREWRITEAOF)"
