"""The scan of a whole test run's logs for full phone numbers: personal data, only ever masked in logs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Final

from callback_service.logs import ClientTextFilter, RequestIdFilter, TextFormatter

# A mainland mobile: 11 digits starting 13 to 19, standing alone: not inside a longer run of digits,
# nor of letters and digits (a hex signature or digest holds such runs by chance).
FULL_PHONE: Final = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d{9}(?![0-9A-Za-z])")


def lines_with_full_phones(lines: Iterable[str]) -> list[str]:
    """The lines that hold an unmasked mobile number."""
    return [line for line in lines if FULL_PHONE.search(line)]


class PhoneScanner(logging.Handler):
    """Formats every record as the service would, and keeps the lines that hold a full phone."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(TextFormatter())
        self.addFilter(RequestIdFilter())
        # As the service's handler (configure_logging): what clients sent is masked in aiohttp's records.
        self.addFilter(ClientTextFilter())
        self.offending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the formatted record when it holds a full phone."""
        try:
            line = self.format(record)
        except Exception:  # a record that cannot be formatted is the test's business, not the scan's
            return
        if FULL_PHONE.search(line):
            self.offending.append(line)
