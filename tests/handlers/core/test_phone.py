"""The phone value type: parsing what people type, refusing the rest, masking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.core.phone import MAX_PHONE_TEXT, InvalidPhone, Phone, mask_phone

FULL_WIDTH = str.maketrans("0123456789+-", "０１２３４５６７８９＋－")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("13812341234", "13812341234"),
        (" 138 1234 1234 ", "13812341234"),
        ("138-1234-1234", "13812341234"),
        ("+86 138 1234 1234", "13812341234"),
        ("+8613812341234", "13812341234"),
        ("0086-138-1234-1234", "13812341234"),
        ("19912341234", "19912341234"),
        # A Chinese keyboard in full-width mode types these: the same phone, in ASCII.
        ("１３８０００００００４", "13800000004"),
        ("13８00000001", "13800000001"),
        ("＋８６　１３８－００００－０００４", "13800000004"),
        ("８６１３８１２３４１２３４".replace("８６", "＋８６", 1), "13812341234"),
    ],
)
def test_accepted_forms(text: str, expected: str) -> None:
    phone = Phone.parse(text)
    assert phone == expected
    assert isinstance(phone, Phone)
    assert phone.isascii()


@pytest.mark.parametrize(
    "text",
    ["", "1381234123", "138123412345", "12812341234", "23812341234", "+1 138 1234 1234", "138a2341234",
     "８６１３８１２３４１２３４", "+86+8613812341234"],
)
def test_refused_forms(text: str) -> None:
    with pytest.raises(InvalidPhone):
        Phone.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "13800000٠٠1",  # Arabic-Indic digits
        "١٣٨٠٠٠٠٠٠٠١",
        "13800000۰۰1",  # Extended Arabic-Indic
        "1380000०००१",  # Devanagari
        "138০০০০০০০১",  # Bengali
        "①3800000001",  # circled: NFKC would make it a 1
        "13800000¹01",  # superscript
        "𝟏3800000001",  # mathematical bold
        "13800000001\u202e",  # a bidi override
        "138\x0000000001",
    ],
)
def test_other_scripts_and_compatibility_digits_are_refused(text: str) -> None:
    with pytest.raises(InvalidPhone):
        Phone.parse(text)


def test_too_long_is_refused_not_cut() -> None:
    with pytest.raises(InvalidPhone, match="longer"):
        Phone.parse("13600000321" + " " * 53 + "'; DROP TABLE bindings; --")
    with pytest.raises(InvalidPhone, match="longer"):
        Phone.parse("136" + " " * (MAX_PHONE_TEXT - 10) + "00000321")
    assert Phone.parse("  136" + " " * (MAX_PHONE_TEXT - 11) + "00000321  ") == "13600000321"


def test_the_constructor_takes_only_the_11_digits() -> None:
    assert Phone("13800000001") == "13800000001"
    for text in ("+8613800000001", "138 0000 0001", "13８00000001"):
        with pytest.raises(InvalidPhone):
            Phone(text)
    phone = Phone.parse("13800000001")
    assert Phone.parse(phone) is phone
    assert Phone(phone) is phone


def test_parse_or_none() -> None:
    assert Phone.parse_or_none(None) is None
    assert Phone.parse_or_none("") is None
    assert Phone.parse_or_none("12345") is None
    assert Phone.parse_or_none("138 0000 0001") == "13800000001"


def test_mask() -> None:
    assert mask_phone("13812341234") == "138****1234"
    assert Phone.parse("13812341234").masked == "138****1234"


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_mask_hides_the_middle(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked[:3] == phone[:3]
    assert masked[3:7] == "****"
    assert masked[-4:] == phone[-4:]
    assert Phone.parse(f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}") == phone
    assert Phone.parse(f"+86 {phone}".translate(FULL_WIDTH)) == phone
