"""WeCom's XML parser: what a DTD could smuggle in is refused, and benign XML reads as ElementTree reads it."""

from __future__ import annotations

import defusedxml.ElementTree as SafeET
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callback_service.callbacks.xml import (
    MalformedXml,
    _parse_flat,
    parse_envelope,
    parse_event,
    parse_with_expat,
    parse_xml,
)
from tests.callback_service.test_callback import BILLION_LAUGHS, EXTERNAL_ENTITY

HOSTILE = {
    "billion laughs": BILLION_LAUGHS,
    "external entity": EXTERNAL_ENTITY,
    "external DTD": '<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd"><xml><Encrypt>x</Encrypt></xml>',
    "parameter entity": '<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p">%p;]><xml/>',
    "quadratic blowup": (
        '<!DOCTYPE xml [<!ENTITY a "' + "A" * 10_000 + '">]><xml><Encrypt>' + "&a;" * 1000 + "</Encrypt></xml>"
    ),
    "empty DTD": "<!DOCTYPE xml><xml><Encrypt>x</Encrypt></xml>",
    "undefined entity": "<xml><Encrypt>&xxe;</Encrypt></xml>",
}


@pytest.mark.parametrize("document", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("as_bytes", [False, True])
def test_dtds_and_entities_are_refused(document: str, as_bytes: bool) -> None:
    with pytest.raises(MalformedXml):
        parse_xml(document.encode() if as_bytes else document)


@pytest.mark.parametrize("document", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_envelopes_and_messages_are_malformed(document: str) -> None:
    with pytest.raises(MalformedXml):
        parse_envelope(document.encode())
    with pytest.raises(MalformedXml):
        parse_event(document.encode())


@pytest.mark.parametrize(
    "document",
    ["", "not xml", "<xml>", "<other/>", '<xml xmlns="urn:x"/>', "<xml><a:b>1</a:b></xml>", "\ufeff<xml"],
)
def test_malformed_or_foreign_documents_are_refused(document: str) -> None:
    with pytest.raises(MalformedXml):
        parse_xml(document)


def test_predefined_entities_character_references_and_cdata_are_text() -> None:
    document = "<xml><A>&lt;&amp;&#65;&#x4e00;</A><B><![CDATA[ <not a tag> ]]></B><C/></xml>"
    assert parse_xml(document) == [("A", "<&A一"), ("B", "<not a tag>"), ("C", "")]


def _element_tree(document: str) -> list[tuple[str, str]] | None:
    try:
        root = SafeET.fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except Exception:
        return None
    if root.tag != "xml":
        return None
    return [(child.tag, (child.text or "").strip()) for child in root]


def _ours(document: str) -> list[tuple[str, str]] | None:
    try:
        return parse_xml(document)
    except MalformedXml:
        return None


TAGS = st.sampled_from(["ToUserName", "Encrypt", "AgentID", "Event", "x", "ns:y"])
TEXT = st.text(alphabet=st.sampled_from(list("ab 1\n\t<>&;]一'\"")), max_size=12)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Flat WeCom-like XML, with nested children, CDATA, escapes and some broken pieces."""
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        tag = draw(TAGS)
        text = draw(TEXT)
        body = draw(
            st.sampled_from(
                [
                    text.replace("&", "&amp;").replace("<", "&lt;"),
                    f"<![CDATA[{text}]]>",
                    f"{text.replace('&', '&amp;').replace('<', '&lt;')}<Inner>in</Inner>tail",
                    text,  # unescaped: often not well formed
                ]
            )
        )
        parts.append(f"<{tag}>{body}</{tag}>")
    root = draw(st.sampled_from(["xml", "xml", "xml", "other"]))
    return f"<{root}>{''.join(parts)}</{root}>"


@given(documents())
def test_benign_xml_reads_as_element_tree_reads_it(document: str) -> None:
    assert _ours(document) == _element_tree(document)


# Pieces that WeCom's XML uses, and the ones that must send a document from the fast path to expat.
_PIECES = st.sampled_from([
    "<xml>", "</xml>", "<A>", "</A>", "<B>", "</B>", "<a:b>", "<A/>", "<![CDATA[", "]]>", "]", ">",
    "&amp;", "&#65;", "&xxe;", "\r\n", "\n", " ", "\t", "\x00", "\x1f", "\ufffe", "\ud800", "\u3000",
    "\x85", "wx1", "张三", "<!DOCTYPE xml>", "<?xml version='1.0'?>", "<!-- c -->", "\ufeff",
])


@given(st.lists(_PIECES, max_size=14))
def test_the_flat_fast_path_reads_exactly_what_expat_reads(pieces: list[str]) -> None:
    document = "".join(pieces)
    for form in (document, document.encode("utf-8", "surrogatepass")):
        flat = _parse_flat(form)
        if flat is None:
            continue
        assert flat == parse_with_expat(form)


@given(st.lists(st.tuples(st.sampled_from(["A", "Encrypt", "x_1.-"]), st.text(max_size=20),
                          st.booleans()), max_size=6))
def test_wecom_shaped_documents_agree_with_expat(children: list[tuple[str, str, bool]]) -> None:
    document = "<xml>" + "".join(
        f"<{tag}><![CDATA[{text}]]></{tag}>" if cdata else f"<{tag}>{text}</{tag}>"
        for tag, text, cdata in children
    ) + "</xml>"
    flat = _parse_flat(document)
    try:
        expected = parse_with_expat(document)
    except MalformedXml:
        assert flat is None
        return
    assert flat is None or flat == expected
