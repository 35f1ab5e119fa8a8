"""Phone normalisation and masking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.phone import InvalidPhone, mask_phone, normalize_phone


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
    ],
)
def test_accepted_forms(text: str, expected: str) -> None:
    assert normalize_phone(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "1381234123", "138123412345", "12812341234", "23812341234", "+1 138 1234 1234", "138a2341234",
     "８６１３８１２３４１２３４", "+86+8613812341234"],
)
def test_refused_forms(text: str) -> None:
    with pytest.raises(InvalidPhone):
        normalize_phone(text)


def test_mask() -> None:
    assert mask_phone("13812341234") == "138****1234"


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_mask_hides_the_middle(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked[:3] == phone[:3]
    assert masked[3:7] == "****"
    assert masked[-4:] == phone[-4:]
    assert normalize_phone(f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}") == phone
