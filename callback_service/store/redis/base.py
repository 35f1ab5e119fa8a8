"""The Redis store's plumbing: the connection pool, the key layout, errors turned into StoreUnavailable.

The commands of the pages and the rules that are issued in one turn of the event loop are sent
together, in one pipeline without a transaction (each command, each script, still atomic on its
own): under load one round trip and one connection from the pool carry several of them, and
redis-py's cost per command, more than the server's, falls with it.

Every key lives under `{P}`, the configured prefix P in braces: a Redis Cluster hash tag, so that
all the keys of a deployment share one slot, and every script, which names each key it touches in
KEYS, runs on a cluster or a managed Redis that routes scripts by their keys. Times come from the
injected clock and are passed to the scripts; Redis's own expiry only sweeps up afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final, Self

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from callback_service.store.common import DEFAULT_DEDUP_TTL, positive
from callback_service.store.persistence import check_persistence, rewrite_aof
from callback_service.store.redis.layout import check_schema, tagged
from handlers.usecases.contracts import Clock, StoreUnavailable

DEFAULT_PREFIX: Final = "wecom-bind:"
_EXPIRY_SLACK_MS: Final = 1000  # Redis drops an entry this long after the clock says it expired
UNAVAILABLE: Final = (RedisError, OSError, asyncio.TimeoutError)

_Queued = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


def ms(seconds: float) -> int:
    """Redis's own expiry for an entry that the clock expires after seconds, in milliseconds."""
    return math.ceil(seconds * 1000) + _EXPIRY_SLACK_MS


class RedisBase:
    """The client, the key layout and the way every call reports a failure."""

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
        self._plain_prefix = prefix
        self._prefix = tagged(prefix)
        self._clock = clock
        self._dedup_ttl = positive("dedup_ttl", dedup_ttl)
        self._closed = False
        self._turn: list[_Queued] | None = None
        """The commands issued in this turn of the event loop, sent together at its end."""
        self._sending: set[asyncio.Task[None]] = set()

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
    ) -> Self:
        """Connect, check the schema version and persistence; StoreUnavailable when the server does not
        answer, StoreNotDurable when it does not persist (unless allow_volatile)."""
        tagged(prefix)  # a bad prefix is refused before any connection is made
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
            with store._unavailable():
                await check_schema(client, prefix)
                await check_persistence(client, allow_volatile=allow_volatile, at_start=True)
        except BaseException:
            await store.close()
            raise
        return store

    async def scrub(self) -> str:
        """Rewrite the append-only file, which keeps every write until a rewrite (persistence.rewrite_aof)."""
        with self._unavailable():
            return await rewrite_aof(self._redis)

    def _now(self) -> str:
        return repr(self._clock())

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        """Turn every connection error, timeout or server refusal into StoreUnavailable."""
        if self._closed:
            raise StoreUnavailable("redis: store is closed")
        try:
            yield
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with self._unavailable():
            return await script(keys=list(keys), args=list(args))

    async def _commands(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send commands with the others of this turn of the event loop; their replies, in order."""
        with self._unavailable():
            replies = await asyncio.gather(*self._queue(commands), return_exceptions=True)
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply
            return list(replies)

    async def _script(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script with the other commands of this turn of the event loop."""
        with self._unavailable():
            try:
                [future] = self._queue([("EVALSHA", script.sha, len(keys), *keys, *args)])
                return await future
            except NoScriptError:
                # Not run: the server does not know the script yet (a restart, or a first call).
                return await script(keys=list(keys), args=list(args))

    def _queue(self, commands: Sequence[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        loop = asyncio.get_running_loop()
        if self._turn is None:
            self._turn = []
            loop.call_soon(self._send_turn)
        futures = []
        for command in commands:
            future = loop.create_future()
            self._turn.append((command, future))
            futures.append(future)
        return futures

    def _send_turn(self) -> None:
        turn, self._turn = self._turn or [], None
        if turn:
            task = asyncio.ensure_future(self._send(turn))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, turn: list[_Queued]) -> None:
        replies: list[Any]
        try:
            if len(turn) == 1:
                replies = [await self._redis.execute_command(*turn[0][0])]  # type: ignore[no-untyped-call]
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for command, _ in turn:
                        pipe.execute_command(*command)
                    replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, future in turn:
                future.cancel()
            raise
        except BaseException as exc:  # handed to every caller of the turn (a lost connection...)
            for _, future in turn:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(turn, replies, strict=True):
            if future.done():  # its caller went away
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def ping(self) -> None:
        """Check that the server answers and persists (StoreNotDurable when not, unless allowed)."""
        with self._unavailable():
            await self._redis.ping()
            await check_persistence(self._redis, allow_volatile=self._allow_volatile, at_start=False)

    async def close(self) -> None:
        """Close the connection pool; the store is unusable afterwards."""
        self._closed = True
        with contextlib.suppress(*UNAVAILABLE):
            await self._redis.aclose()
