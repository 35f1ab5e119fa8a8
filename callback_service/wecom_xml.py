"""WeCom's callback XML: the outer envelope and the decrypted message, parsed with entities off."""

from __future__ import annotations

# Only the types come from the standard library; parsing goes through defusedxml.
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final, TypedDict

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from handlers.events import (
    CONTACT_CHANGE_TYPES,
    ContactChange,
    EnterAgent,
    Event,
    Subscribe,
    UnknownEvent,
    Unsubscribe,
)


class _Common(TypedDict):
    corp_id: str
    create_time: int
    agent_id: str | None
    raw: str


class MalformedXml(ValueError):
    """The XML is not well formed, uses a DTD or entities, or lacks a required element."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """The outer XML of a callback POST: the ciphertext and who it is addressed to."""

    to_user: str
    encrypt: str
    agent_id: str | None


def parse_xml(text: str | bytes) -> ET.Element:
    """Parse XML with DTDs, entities and external references forbidden."""
    try:
        root: ET.Element = SafeET.fromstring(
            text, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise MalformedXml(type(exc).__name__) from None
    if root.tag != "xml":
        raise MalformedXml("root element is not <xml>")
    return root


def _text(root: ET.Element, tag: str) -> str | None:
    node = root.find(tag)
    if node is None:
        return None
    return (node.text or "").strip()


def _required(root: ET.Element, tag: str) -> str:
    value = _text(root, tag)
    if not value:
        raise MalformedXml(f"missing <{tag}>")
    return value


def _int(root: ET.Element, tag: str) -> int | None:
    value = _text(root, tag)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise MalformedXml(f"<{tag}> is not an integer") from None


def parse_envelope(body: bytes) -> Envelope:
    """Read the outer XML of a callback POST."""
    root = parse_xml(body)
    return Envelope(
        to_user=_text(root, "ToUserName") or "",
        encrypt=_required(root, "Encrypt"),
        agent_id=_text(root, "AgentID") or None,
    )


_CONTACT_FIELDS: Final = {
    "UserID", "NewUserID", "Name", "Mobile", "Department", "MainDepartment", "Position",
    "Gender", "Email", "Status", "Alias", "ToUserName", "FromUserName", "CreateTime",
    "MsgType", "Event", "ChangeType",
}


def _departments(root: ET.Element) -> tuple[int, ...] | None:
    value = _text(root, "Department")
    if value is None:
        return None
    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise MalformedXml("<Department> is not a list of integers") from None


def parse_event(plaintext: bytes) -> Event:
    """Turn a decrypted message into a typed event; messages no handler knows become UnknownEvent."""
    try:
        raw = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedXml("message is not UTF-8") from None
    root = parse_xml(raw)
    create_time = _int(root, "CreateTime")
    if create_time is None:
        raise MalformedXml("missing <CreateTime>")
    common = _Common(
        corp_id=_required(root, "ToUserName"),
        create_time=create_time,
        agent_id=_text(root, "AgentID") or None,
        raw=raw,
    )
    msg_type = _required(root, "MsgType")
    event = (_text(root, "Event") or "").lower() if msg_type == "event" else None
    sender = _text(root, "FromUserName") or ""
    if event == "subscribe":
        return Subscribe(user_id=_required(root, "FromUserName"), **common)
    if event == "unsubscribe":
        return Unsubscribe(user_id=_required(root, "FromUserName"), **common)
    if event == "enter_agent":
        sender = _required(root, "FromUserName")
        return EnterAgent(user_id=sender, event_key=_text(root, "EventKey"), **common)
    change_type = _text(root, "ChangeType") if event == "change_contact" else None
    if change_type in CONTACT_CHANGE_TYPES:
        assert change_type is not None
        extra = {
            child.tag: (child.text or "").strip()
            for child in root
            if child.tag not in _CONTACT_FIELDS and child.tag != "AgentID"
        }
        return ContactChange(
            user_id=_required(root, "UserID"),
            change_type=change_type,
            new_user_id=_text(root, "NewUserID") or None,
            name=_text(root, "Name"),
            mobile=_text(root, "Mobile"),
            department=_departments(root),
            main_department=_int(root, "MainDepartment"),
            position=_text(root, "Position"),
            gender=_int(root, "Gender"),
            email=_text(root, "Email"),
            status=_int(root, "Status"),
            alias=_text(root, "Alias"),
            extra=extra,
            **common,
        )
    return UnknownEvent(user_id=sender, msg_type=msg_type, event=event, change_type=change_type, **common)
