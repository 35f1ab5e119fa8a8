"""WeCom's callback XML: the outer envelope and the decrypted message, parsed with entities off."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TypedDict
from xml.parsers import expat

from handlers.core.events import (
    CONTACT_CHANGE_TYPES,
    ChangeType,
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


class _ForbiddenMarkup(Exception):
    """A DTD, an entity declaration or an external reference: never in what WeCom sends."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """The outer XML of a callback POST: the ciphertext and who it is addressed to."""

    to_user: str
    encrypt: str
    agent_id: str | None


def _refuse(*_: Any) -> NoReturn:
    raise _ForbiddenMarkup


# What WeCom sends: <xml>, then children each holding plain text or one CDATA section, nothing else.
# Their characters leave out markup, entity and CDATA delimiters, carriage returns (XML normalises
# them) and the characters XML forbids, so the text is what expat would report, character for
# character. Anything else, however well formed, goes to expat.
_PLAIN = r"[^<>&\]\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"
_CHILD = re.compile(
    r"[ \t\n]*<([A-Za-z_][A-Za-z0-9_.-]*)>(?:<!\[CDATA\[(" + _PLAIN + r"*)\]\]>|(" + _PLAIN + r"*))</\1>"
)
_ROOT_OPEN = "<xml>"
_ROOT_CLOSE = re.compile(r"[ \t\n]*</xml>[ \t\n]*")


def _parse_flat(document: str | bytes) -> list[tuple[str, str]] | None:
    """The children of WeCom's usual flat XML, or None when the document is anything else."""
    if isinstance(document, bytes):
        try:
            document = document.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not document.startswith(_ROOT_OPEN):
        return None
    children: list[tuple[str, str]] = []
    position = len(_ROOT_OPEN)
    match = _CHILD.match
    while (child := match(document, position)) is not None:
        tag, cdata, text = child.groups()
        children.append((tag, (text if cdata is None else cdata).strip()))
        position = child.end()
    if _ROOT_CLOSE.fullmatch(document, position) is None:
        return None
    return children


def parse_xml(document: str | bytes) -> list[tuple[str, str]]:
    """Parse WeCom's flat XML, with DTDs, entities and external references refused.

    Returns the tag and stripped text of each child of the root <xml>, in order; like
    ElementTree's `text`, a child's text is what comes before its own first child.
    """
    # The common shape is read by one regular expression, at a fraction of expat's cost (no
    # parser to create per document); it accepts no DTD, entity or reference at all.
    flat = _parse_flat(document)
    if flat is not None:
        return flat
    return parse_with_expat(document)


def parse_with_expat(document: str | bytes) -> list[tuple[str, str]]:
    """parse_xml for any document, through expat with its refusals."""
    # Expat with our own handlers instead of defusedxml's ElementTree: the same refusals, at
    # half the cost, because no tree is built. A DTD is refused where it starts, so no entity
    # can be declared; the other handlers stand behind that one.
    parser = expat.ParserCreate(namespace_separator="}")  # tags as ElementTree spells them
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.NotationDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.buffer_text = True
    children: list[tuple[str, str]] = []
    root = ""
    tag = ""
    text: list[str] = []
    depth = 0
    in_text = False

    def start(name: str, attributes: object) -> None:
        nonlocal root, tag, text, depth, in_text
        depth += 1
        if depth == 2:
            tag, text, in_text = _qualified(name), [], True
        elif depth == 1:
            root = _qualified(name)
        else:
            in_text = False

    def end(name: str) -> None:
        nonlocal depth, in_text
        if depth == 2:
            children.append((tag, "".join(text).strip()))
            in_text = False
        depth -= 1

    def data(chunk: str) -> None:
        if in_text:
            text.append(chunk)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    try:
        parser.Parse(document, True)
    except _ForbiddenMarkup:
        raise MalformedXml("DTD, entity or external reference refused") from None
    except (expat.ExpatError, ValueError) as exc:
        raise MalformedXml(type(exc).__name__) from None
    if root != "xml":
        raise MalformedXml("root element is not <xml>")
    return children


def _qualified(name: str) -> str:
    return "{" + name if "}" in name else name


class _Fields:
    """The children of a parsed <xml>, looked up by tag (the first of a repeated tag wins)."""

    __slots__ = ("children", "first")

    def __init__(self, children: list[tuple[str, str]]) -> None:
        self.children = children
        self.first: dict[str, str] = {}
        for tag, text in children:
            self.first.setdefault(tag, text)

    def text(self, tag: str) -> str | None:
        return self.first.get(tag)

    def required(self, tag: str) -> str:
        value = self.first.get(tag)
        if not value:
            raise MalformedXml(f"missing <{tag}>")
        return value

    def integer(self, tag: str) -> int | None:
        value = self.first.get(tag)
        if not value:
            return None
        try:
            return int(value)
        except ValueError:
            raise MalformedXml(f"<{tag}> is not an integer") from None


def parse_envelope(body: bytes) -> Envelope:
    """Read the outer XML of a callback POST."""
    fields = _Fields(parse_xml(body))
    return Envelope(
        to_user=fields.text("ToUserName") or "",
        encrypt=fields.required("Encrypt"),
        agent_id=fields.text("AgentID") or None,
    )


_CONTACT_FIELDS: Final = {
    "UserID", "NewUserID", "Name", "Mobile", "Department", "MainDepartment", "Position",
    "Gender", "Email", "Status", "Alias", "ToUserName", "FromUserName", "CreateTime",
    "MsgType", "Event", "ChangeType",
}


def _departments(fields: _Fields) -> tuple[int, ...] | None:
    value = fields.text("Department")
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
    fields = _Fields(parse_xml(raw))
    create_time = fields.integer("CreateTime")
    if create_time is None:
        raise MalformedXml("missing <CreateTime>")
    common = _Common(
        corp_id=fields.required("ToUserName"),
        create_time=create_time,
        agent_id=fields.text("AgentID") or None,
        raw=raw,
    )
    msg_type = fields.required("MsgType")
    event = (fields.text("Event") or "").lower() if msg_type == "event" else None
    sender = fields.text("FromUserName") or ""
    if event == "subscribe":
        return Subscribe(member_id=fields.required("FromUserName"), **common)
    if event == "unsubscribe":
        return Unsubscribe(member_id=fields.required("FromUserName"), **common)
    if event == "enter_agent":
        sender = fields.required("FromUserName")
        return EnterAgent(member_id=sender, event_key=fields.text("EventKey"), **common)
    change_type = fields.text("ChangeType") if event == "change_contact" else None
    if change_type is not None and change_type in CONTACT_CHANGE_TYPES:
        extra = {
            tag: text
            for tag, text in fields.children
            if tag not in _CONTACT_FIELDS and tag != "AgentID"
        }
        return ContactChange(
            member_id=fields.required("UserID"),
            change_type=ChangeType(change_type),
            new_user_id=fields.text("NewUserID") or None,
            name=fields.text("Name"),
            mobile=fields.text("Mobile"),
            department=_departments(fields),
            main_department=fields.integer("MainDepartment"),
            position=fields.text("Position"),
            gender=fields.integer("Gender"),
            email=fields.text("Email"),
            status=fields.integer("Status"),
            alias=fields.text("Alias"),
            extra=extra,
            **common,
        )
    return UnknownEvent(member_id=sender, msg_type=msg_type, event=event, change_type=change_type, **common)
