"""The Redis store's key layout, its records' encoding, and the migration from the first layout.

Under the hash tag `{P}` (P the configured prefix): b:<member> (a binding, JSON), p:<phone> and
o:<openid> (the indexes: a member id), members (set), audit and audit:m:<member> (lists of JSON,
newest first), audit:seq, dir (hash), seen (hash: MemberSeen by member), kv:<key>, lock:<name>,
idem:<key> (hashes v, e), inbox:items, inbox:attempts, inbox:errors (hashes by item id), inbox:seq,
inbox:ready, inbox:leased, inbox:dead, inbox:dedup (sorted sets), inbox:active, inbox:order,
inbox:due (hashes) and inbox:queue (a sorted set), schema. Layout 1 had the same keys under P without braces,
bindings and inbox items as hashes of their own, a key per dedup key. Layout 2 had no member order
in the inbox: its events stay unordered, and code of layout 2, which would leave the events that
wait for their member's turn waiting for good, refuses layout 3.
"""

from __future__ import annotations

import json
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from callback_service.store.common import stored_phone
from handlers.core.binding import BindingState
from handlers.core.rules import Row
from handlers.usecases.contracts import StoreUnavailable

SCHEMA_VERSION: Final = 3
_KINDS: Final = ("b:", "p:", "o:", "members", "audit", "dir", "kv:", "lock:", "idem:", "inbox:", "schema")
_MIGRATION_PASSES: Final = 10


def tagged(prefix: str) -> str:
    """The prefix as a hash tag: `{P}`; ValueError when the prefix holds a brace."""
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError("WECOM_BIND_STORE_URL: the Redis key prefix must be non-empty, without { or }")
    return "{" + prefix + "}"


def row_json(row: Row) -> str:
    """A binding record as stored."""
    data: dict[str, Any] = {"member": row.member_id, "state": row.state.value, "updated": row.updated_at}
    for name, value in (
        ("phone", row.phone),
        ("openid", row.openid),
        ("lease", row.lease_expires_at),
        ("prev", row.previous_phone),
        ("token", row.token),
    ):
        if value is not None:
            data[name] = value
    return json.dumps(data, ensure_ascii=False)


def row_from_json(encoded: str) -> Row:
    """A binding record read back."""
    data = json.loads(encoded)
    lease = data.get("lease")
    member = str(data["member"])
    return Row(
        member_id=member,
        phone=stored_phone(data.get("phone"), member_id=member, record="binding"),
        state=BindingState(data["state"]),
        openid=data.get("openid"),
        lease_expires_at=None if lease is None else float(lease),
        previous_phone=stored_phone(data.get("prev"), member_id=member, record="binding's previous"),
        token=data.get("token"),
        updated_at=float(data["updated"]),
    )


def glob_escape(text: str) -> str:
    """Text as a literal in a SCAN pattern."""
    # A backslash, not a class: Redis reads "[]]" as an empty class and then a "]".
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


async def check_schema(client: aioredis.Redis, prefix: str) -> None:
    """Create the schema key, or migrate layout 1; StoreUnavailable when the data is newer than this code."""
    key, legacy_key = tagged(prefix) + "schema", prefix + "schema"
    version = int(await client.get(key) or 0)
    legacy = int(await client.get(legacy_key) or 0)
    newest = max(version, legacy)
    if newest > SCHEMA_VERSION:
        raise StoreUnavailable(f"redis: schema version {newest} is newer than this code ({SCHEMA_VERSION})")
    if version == 1 or legacy == 1:
        await _migrate_layout_1(client, prefix)
    elif version == 0:
        await client.set(key, str(SCHEMA_VERSION), nx=True)
        # Layout 1's key too, so that code of layout 1 refuses this data instead of starting afresh.
        await client.set(legacy_key, str(SCHEMA_VERSION), nx=True)
    elif version < SCHEMA_VERSION:
        # Layout 2 to 3 adds keys only; the version tells code of layout 2 to refuse the data.
        await client.set(key, str(SCHEMA_VERSION))
        await client.set(legacy_key, str(SCHEMA_VERSION))


async def _migrate_layout_1(client: aioredis.Redis, prefix: str) -> None:
    """Move layout 1's keys under the hash tag, bindings re-encoded; resumable after a crash."""
    tag = tagged(prefix)
    lock = tag + "migrating"
    if not await client.set(lock, "1", nx=True, px=60_000):
        raise StoreUnavailable("redis: another instance is migrating the store's keys; try again")
    try:
        for _ in range(_MIGRATION_PASSES):
            moved = 0
            async for key in client.scan_iter(match=glob_escape(prefix) + "*", count=1000):
                rest = str(key)[len(prefix) :]
                if not rest.startswith(_KINDS):
                    continue  # another deployment's longer prefix
                moved += 1
                try:
                    if rest.startswith(("b:", "inbox:i:")) and await client.type(key) == "hash":
                        fields = {str(k): str(v) for k, v in (await client.hgetall(key)).items()}
                        if rest.startswith("b:"):
                            await client.set(tag + rest, row_json(_row_of_layout_1(rest[2:], fields)))
                        else:
                            await _move_item(client, tag, rest.removeprefix("inbox:i:"), fields)
                        await client.delete(key)
                    elif rest.startswith("inbox:d:"):
                        forget_at = float(await client.get(key) or 0)
                        await client.zadd(tag + "inbox:dedup", {rest.removeprefix("inbox:d:"): forget_at})
                        await client.delete(key)
                    else:
                        await client.rename(key, tag + rest)
                except ResponseError:
                    continue  # moved by an earlier pass meanwhile (SCAN may return a key twice)
            if not moved:
                break
        await client.set(tag + "schema", str(SCHEMA_VERSION))
        await client.set(prefix + "schema", str(SCHEMA_VERSION))
    finally:
        await client.delete(lock)


async def _move_item(client: aioredis.Redis, tag: str, item_id: str, fields: dict[str, str]) -> None:
    """A layout 1 inbox item hash into the items, attempts and errors hashes."""
    data = {
        "dedup": fields["dedup"],
        "type": fields["type"],
        "payload": fields["payload"],
        "created": float(fields["created"]),
    }
    await client.hset(tag + "inbox:items", item_id, json.dumps(data, ensure_ascii=False))
    if int(fields.get("attempts") or 0):
        await client.hset(tag + "inbox:attempts", item_id, fields["attempts"])
    if fields.get("error"):
        await client.hset(tag + "inbox:errors", item_id, fields["error"])


def _row_of_layout_1(member_id: str, fields: dict[str, str]) -> Row:
    lease = fields.get("lease")
    return Row(
        member_id=member_id,
        phone=stored_phone(fields.get("phone"), member_id=member_id, record="binding"),
        state=BindingState(fields["state"]),
        openid=fields.get("openid"),
        lease_expires_at=None if lease is None else float(lease),
        previous_phone=stored_phone(fields.get("prev"), member_id=member_id, record="binding's previous"),
        token=fields.get("token"),
        updated_at=float(fields["updated"]),
    )
