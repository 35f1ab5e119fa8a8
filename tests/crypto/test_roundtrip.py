"""Encrypt then decrypt, and the exact layout of what encrypt produces."""

from __future__ import annotations

import struct

import pytest

from crypto import WeComCrypto
from tests.crypto._support import AES_KEY, CORP_ID, TOKEN, fixed_random, raw_decrypt

PREFIX = bytes(range(16))


def _crypto(receive_id: str = CORP_ID, prefix: bytes | None = None) -> WeComCrypto:
    if prefix is None:
        return WeComCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=receive_id)
    return WeComCrypto(
        token=TOKEN, encoding_aes_key=AES_KEY, receive_id=receive_id, random_bytes=fixed_random(prefix)
    )


# 16 random + 4 length + 18 corp id = 38 bytes of overhead: 26 and 58 fill blocks exactly (a full pad block).
@pytest.mark.parametrize("length", [0, 1, 25, 26, 27, 57, 58, 59, 1000, 65536])
def test_round_trip_at_block_boundaries(length: int) -> None:
    crypto = _crypto()
    message = bytes(i % 251 for i in range(length))

    assert crypto.decrypt(crypto.encrypt(message)) == message


def test_round_trip_of_a_chinese_xml_event() -> None:
    crypto = _crypto()
    message = "<xml><Content><![CDATA[你好，企业微信]]></Content></xml>".encode()

    assert crypto.decrypt(crypto.encrypt(message)) == message


def test_signed_round_trip_through_decrypt_verified() -> None:
    crypto = _crypto()
    encrypted = crypto.encrypt(b"<xml/>")
    msg_signature = crypto.sign("1476416373", "47744683", encrypted)

    assert crypto.decrypt_verified(msg_signature, "1476416373", "47744683", encrypted) == b"<xml/>"


def test_injected_random_bytes_make_encryption_deterministic() -> None:
    first = _crypto(prefix=PREFIX).encrypt(b"hello")
    second = _crypto(prefix=PREFIX).encrypt(b"hello")

    assert first == second
    assert _crypto(prefix=bytes(16)).encrypt(b"hello") != first


def test_default_randomness_differs_between_calls() -> None:
    crypto = _crypto()

    assert crypto.encrypt(b"hello") != crypto.encrypt(b"hello")


def test_plaintext_layout_is_prefix_length_message_receive_id_and_pkcs7_to_32() -> None:
    message = b"<xml>event</xml>"
    encrypted = _crypto(prefix=PREFIX).encrypt(message)

    body = PREFIX + struct.pack(">I", len(message)) + message + CORP_ID.encode()
    count = 32 - len(body) % 32
    assert raw_decrypt(encrypted) == body + bytes([count]) * count


def test_non_ascii_receive_id_round_trips_as_utf8() -> None:
    crypto = _crypto(receive_id="企业号", prefix=PREFIX)
    encrypted = crypto.encrypt(b"x")

    assert raw_decrypt(encrypted).startswith(PREFIX + b"\x00\x00\x00\x01x" + "企业号".encode())
    assert crypto.decrypt(encrypted) == b"x"


def test_repr_shows_no_secrets() -> None:
    text = repr(_crypto())

    assert TOKEN not in text
    assert AES_KEY not in text
    assert CORP_ID in text
