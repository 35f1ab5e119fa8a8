"""The scan that fails a run whose logs hold a full phone finds them, and only them."""

from __future__ import annotations

import logging

from tests.support.logscan import PhoneScanner, lines_with_full_phones


def test_a_full_phone_is_found_and_a_masked_one_or_a_longer_number_is_not() -> None:
    lines = [
        "bound 138****0001",
        "claim for 13800000001 failed",
        "member 2021001 at 1764475506123",
        'extra {"phone": "19912345678"}',
        "id 12345678901",
        "msg_signature=1867801c5d9add35fcb1a16011331259dce3b3bd",
        "手机13800000002已绑定",
    ]
    assert lines_with_full_phones(lines) == [lines[1], lines[3], lines[6]]


def test_the_scanner_sees_phones_in_the_message_and_in_the_fields() -> None:
    scanner = PhoneScanner()
    logger = logging.getLogger("tests.logscan")
    for message, fields in (("phone 13900000002", {}), ("binding", {"phone": "15012345678"}),
                            ("binding", {"phone": "150****5678"})):
        scanner.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, (), None,
                                         extra=fields))
    assert len(scanner.offending) == 2
