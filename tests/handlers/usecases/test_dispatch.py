"""The dispatch table routes by event kind, with a fallback for the rest."""

from __future__ import annotations

import pytest

from handlers.core.events import (
    ChangeType,
    ContactChange,
    Event,
    EventKind,
    Subscribe,
    UnknownEvent,
    Unsubscribe,
)
from handlers.usecases.dispatch import Dispatcher, typed


def _common() -> dict[str, object]:
    return {"corp_id": "ww1", "member_id": "m1", "create_time": 1, "agent_id": None, "raw": "<xml/>"}


async def test_routes_by_kind_and_falls_back() -> None:
    seen: list[tuple[str, str]] = []

    async def on_subscribe(event: Event) -> None:
        seen.append(("subscribe", event.kind))

    async def on_update(event: Event) -> None:
        seen.append(("update", event.kind))

    async def fallback(event: Event) -> None:
        seen.append(("fallback", event.kind))

    dispatcher = Dispatcher(
        {EventKind.SUBSCRIBE: on_subscribe, EventKind.UPDATE_USER: on_update}, fallback=fallback
    )
    await dispatcher.dispatch(Subscribe(**_common()))  # type: ignore[arg-type]
    await dispatcher.dispatch(ContactChange(change_type=ChangeType.UPDATE_USER, **_common()))  # type: ignore[arg-type]
    await dispatcher.dispatch(ContactChange(change_type=ChangeType.DELETE_USER, **_common()))  # type: ignore[arg-type]
    await dispatcher.dispatch(UnknownEvent(msg_type="text", **_common()))  # type: ignore[arg-type]
    assert seen == [
        ("subscribe", "subscribe"),
        ("update", "change_contact:update_user"),
        ("fallback", "change_contact:delete_user"),
        ("fallback", "unknown"),
    ]


async def test_a_typed_handler_refuses_an_event_of_another_type() -> None:
    seen: list[str] = []

    async def on_subscribe(event: Subscribe) -> None:
        seen.append(event.member_id)

    handler = typed(Subscribe, on_subscribe)
    await handler(Subscribe(**_common()))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await handler(Unsubscribe(**_common()))  # type: ignore[arg-type]
    assert seen == ["m1"]
