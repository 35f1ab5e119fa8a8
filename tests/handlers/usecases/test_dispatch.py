"""The dispatch table routes by event kind, with a fallback for the rest."""

from __future__ import annotations

from handlers.core.events import ContactChange, Event, Subscribe, UnknownEvent
from handlers.usecases.dispatch import Dispatcher


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
        {"subscribe": on_subscribe, "change_contact:update_user": on_update}, fallback=fallback
    )
    await dispatcher.dispatch(Subscribe(**_common()))  # type: ignore[arg-type]
    await dispatcher.dispatch(ContactChange(change_type="update_user", **_common()))  # type: ignore[arg-type]
    await dispatcher.dispatch(ContactChange(change_type="delete_user", **_common()))  # type: ignore[arg-type]
    await dispatcher.dispatch(UnknownEvent(msg_type="text", **_common()))  # type: ignore[arg-type]
    assert seen == [
        ("subscribe", "subscribe"),
        ("update", "change_contact:update_user"),
        ("fallback", "change_contact:delete_user"),
        ("fallback", "unknown"),
    ]
