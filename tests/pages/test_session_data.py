"""What a session stores: its JSON round-trips, and a session stored before the rename still loads."""

from __future__ import annotations

import json

from callback_service.web.pages.session import Session


def test_a_session_round_trips_through_its_json() -> None:
    session = Session(sid="s1", member_id="2021001", csrf="token", expires_at=100.0, draft_phone="13800000001")
    assert Session.from_json("s1", session.to_json()) == session


def test_a_session_stored_under_the_old_key_still_loads() -> None:
    stored = json.dumps({"student_id": "2021001", "csrf": "token", "expires_at": 100.0})
    loaded = Session.from_json("s1", stored)
    assert loaded is not None
    assert loaded.member_id == "2021001"


def test_a_value_that_is_no_session_is_refused() -> None:
    assert Session.from_json("s1", json.dumps({"csrf": "token"})) is None
    assert Session.from_json("s1", "not json") is None
