"""Mainland mobile numbers: normalisation to 11 digits and masking for pages and logs."""

from __future__ import annotations

import re
from typing import Final

_SEPARATORS: Final = re.compile(r"[\s\-]+")
_MOBILE: Final = re.compile(r"1[3-9]\d{9}")


class InvalidPhone(ValueError):
    """The text is not a mainland mobile number."""


def normalize_phone(text: str) -> str:
    """Return the 11 digits of a mainland mobile, accepting spaces, dashes and a +86/0086 prefix."""
    compact = _SEPARATORS.sub("", text.strip())
    for prefix in ("+86", "0086"):
        if compact.startswith(prefix):
            compact = compact[len(prefix) :]
            break
    if not _MOBILE.fullmatch(compact):
        raise InvalidPhone("not a mainland mobile number")
    return compact


def mask_phone(phone: str) -> str:
    """Mask a phone for display and logs: 13812341234 -> 138****1234."""
    if len(phone) < 7:
        return "*" * len(phone)
    return f"{phone[:3]}****{phone[-4:]}"
