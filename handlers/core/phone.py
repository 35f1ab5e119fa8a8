"""Mainland mobile numbers: one value type, parsed once where a phone enters, and masked for display."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

MAX_PHONE_TEXT: Final = 32
"""The longest phone text accepted (after stripping): longer text is refused, never cut and accepted."""
_SEPARATORS: Final = re.compile(r"[\s\-]+", re.ASCII)
_MOBILE: Final = re.compile(r"1[3-9][0-9]{9}", re.ASCII)
_FULL_WIDTH: Final = range(0xFF01, 0xFF5F)
"""The full-width forms of ASCII (U+FF01-FF5E), which a Chinese keyboard in full-width mode types."""
_IDEOGRAPHIC_SPACE: Final = "\u3000"


class InvalidPhone(ValueError):
    """The text is not a mainland mobile number; the message says why."""


class Phone(str):
    """A mainland mobile as its 11 ASCII digits; make one with Phone.parse where a phone enters."""

    __slots__ = ()

    def __new__(cls, digits: str) -> Phone:
        """Wrap 11 ASCII digits that already are a mainland mobile (Phone.parse accepts what people type)."""
        if isinstance(digits, Phone):
            return digits
        if not _MOBILE.fullmatch(digits):
            raise InvalidPhone("not the 11 digits of a mainland mobile")
        return super().__new__(cls, digits)

    @classmethod
    def parse(cls, text: str) -> Phone:
        """Parse typed text: spaces, dashes, a +86/0086 prefix and full-width digits are accepted."""
        if isinstance(text, Phone):
            return text
        stripped = text.strip()
        if len(stripped) > MAX_PHONE_TEXT:
            raise InvalidPhone(f"longer than {MAX_PHONE_TEXT} characters")
        for char in stripped:
            # NFKC alone would also turn circled, superscript and other compatibility digits into
            # ASCII, and leaves other scripts' digits (٠, ०) as they are: allow ASCII and its
            # full-width forms only.
            if not (char.isascii() or ord(char) in _FULL_WIDTH or char == _IDEOGRAPHIC_SPACE):
                raise InvalidPhone(f"a character other than ASCII or full-width: U+{ord(char):04X}")
        compact = _SEPARATORS.sub("", unicodedata.normalize("NFKC", stripped))
        for prefix in ("+86", "0086"):
            if compact.startswith(prefix):
                compact = compact[len(prefix) :]
                break
        if not _MOBILE.fullmatch(compact):
            raise InvalidPhone("not a mainland mobile number")
        return super().__new__(cls, compact)

    @classmethod
    def parse_or_none(cls, text: str | None) -> Phone | None:
        """Parse text that may be absent or wrong (a directory's, an identity server's): None then."""
        if not text:
            return None
        try:
            return cls.parse(text)
        except InvalidPhone:
            return None

    @property
    def masked(self) -> str:
        """The phone as pages and logs show it: 138****1234."""
        return mask_phone(self)


def mask_phone(phone: str) -> str:
    """Mask a phone for display and logs: 13812341234 -> 138****1234."""
    if len(phone) < 7:
        return "*" * len(phone)
    return f"{phone[:3]}****{phone[-4:]}"
