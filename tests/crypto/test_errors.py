"""Each typed error, triggered on purpose, and what the errors must not carry."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable

import pytest

from crypto import (
    CryptoError,
    InvalidBase64,
    InvalidCiphertext,
    InvalidKey,
    InvalidLength,
    InvalidPadding,
    ReceiveIdMismatch,
    SignatureMismatch,
    WeComCrypto,
    decode_aes_key,
)
from tests.crypto._support import AES_KEY, CORP_ID, TOKEN, fixed_random, raw_encrypt

TIMESTAMP = "1476416373"
NONCE = "47744683"
PREFIX = b"R" * 16


def _crypto(receive_id: str = CORP_ID) -> WeComCrypto:
    return WeComCrypto(
        token=TOKEN, encoding_aes_key=AES_KEY, receive_id=receive_id, random_bytes=fixed_random(PREFIX)
    )


def _envelope(message: bytes, *, length: int | None = None, receive_id: bytes = CORP_ID.encode()) -> bytes:
    """The plaintext WeCom encrypts, before padding, with the length field open to lies."""
    declared = len(message) if length is None else length
    return PREFIX + struct.pack(">I", declared) + message + receive_id


def _pad(data: bytes) -> bytes:
    count = 32 - len(data) % 32
    return data + bytes([count]) * count


def _raw(encrypted: str) -> bytes:
    return base64.b64decode(encrypted)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.mark.parametrize(
    "error",
    [
        InvalidKey,
        SignatureMismatch,
        InvalidBase64,
        InvalidCiphertext,
        InvalidPadding,
        InvalidLength,
        ReceiveIdMismatch,
    ],
)
def test_every_error_is_a_crypto_error(error: type[CryptoError]) -> None:
    assert issubclass(error, CryptoError)


# --- signature -------------------------------------------------------------------------------------


def test_wrong_signature_raises_signature_mismatch() -> None:
    crypto = _crypto()
    encrypted = crypto.encrypt(b"hello")
    good = crypto.sign(TIMESTAMP, NONCE, encrypted)

    for bad in ["", "0" * 40, good.upper(), good[:-1], good + "0", "签名" * 20, "\ud800" * 40]:
        with pytest.raises(SignatureMismatch):
            crypto.verify(bad, TIMESTAMP, NONCE, encrypted)


def test_signature_covers_timestamp_nonce_ciphertext_and_token() -> None:
    crypto = _crypto()
    encrypted = crypto.encrypt(b"hello")
    good = crypto.sign(TIMESTAMP, NONCE, encrypted)
    other_token = WeComCrypto(token=TOKEN + "x", encoding_aes_key=AES_KEY, receive_id=CORP_ID)

    with pytest.raises(SignatureMismatch):
        crypto.verify(good, "1476416374", NONCE, encrypted)
    with pytest.raises(SignatureMismatch):
        crypto.verify(good, TIMESTAMP, NONCE + "1", encrypted)
    with pytest.raises(SignatureMismatch):
        crypto.verify(good, TIMESTAMP, NONCE, crypto.encrypt(b"hellp"))
    with pytest.raises(SignatureMismatch):
        other_token.verify(good, TIMESTAMP, NONCE, encrypted)


def test_decrypt_verified_checks_the_signature_before_touching_the_ciphertext() -> None:
    with pytest.raises(SignatureMismatch):
        _crypto().decrypt_verified("0" * 40, TIMESTAMP, NONCE, "not base64 at all!")


def test_sign_and_verify_accept_lone_surrogates_without_leaking_unicode_errors() -> None:
    crypto = _crypto()
    msg_signature = crypto.sign("\udc80", NONCE, "x")

    crypto.verify(msg_signature, "\udc80", NONCE, "x")
    with pytest.raises(SignatureMismatch):
        crypto.verify(msg_signature, "\udc81", NONCE, "x")


# --- base64 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encrypted",
    [
        "not base64!",
        "QUJDRA",  # missing padding
        "QUJDRA=",  # short padding
        "QUJD\nRA==",  # a newline inside
        " QUJDRA==",  # leading space
        "QUJDRA==QUJD",  # data after padding
        "=QUJDRA=",  # leading padding
        "QUJD-_==",  # the URL-safe alphabet
        "ＱＵＪＤ",  # full-width letters
        "QUJD\ud800",  # a lone surrogate
    ],
)
def test_bad_base64_raises_invalid_base64(encrypted: str) -> None:
    with pytest.raises(InvalidBase64):
        _crypto().decrypt(encrypted)


# --- ciphertext shape ------------------------------------------------------------------------------


def test_empty_ciphertext_raises_invalid_ciphertext() -> None:
    with pytest.raises(InvalidCiphertext):
        _crypto().decrypt("")


@pytest.mark.parametrize("cut", [1, 15, 17, 31])
def test_ciphertext_not_a_whole_number_of_blocks_raises_invalid_ciphertext(cut: int) -> None:
    raw = _raw(_crypto().encrypt(b"hello"))

    with pytest.raises(InvalidCiphertext):
        _crypto().decrypt(_b64(raw[:-cut]))
    with pytest.raises(InvalidCiphertext):
        _crypto().decrypt(_b64(raw + bytes(cut)))


def test_ciphertext_truncated_into_the_message_raises_invalid_padding() -> None:
    # CBC decrypts the remaining blocks exactly, so the text now ends inside the message: "x" is no pad byte.
    raw = _raw(_crypto().encrypt(b"x" * 100))

    with pytest.raises(InvalidPadding):
        _crypto().decrypt(_b64(raw[:64]))


def test_ciphertext_truncated_where_the_text_ends_in_a_valid_pad_raises_invalid_length() -> None:
    # The message is all 0x01, so the cut text ends in a one-byte pad and the length field now overruns.
    raw = _raw(_crypto().encrypt(b"\x01" * 100))

    with pytest.raises(InvalidLength):
        _crypto().decrypt(_b64(raw[:64]))


def test_a_single_block_of_zeros_raises_a_crypto_error() -> None:
    with pytest.raises(CryptoError):
        _crypto().decrypt(_b64(bytes(16)))


# --- padding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [
        _envelope(b"hi").ljust(63, b"\x07") + b"\x00",  # pad byte 0
        _envelope(b"hi").ljust(63, b"\x21") + b"\x21",  # pad byte 33, above WeCom's block of 32
        _envelope(b"hi").ljust(63, b"\xff") + b"\xff",  # pad byte 255
        _envelope(b"hi").ljust(60, b"\x00") + b"\x05\x04\x04\x04",  # 4 says four, one of them is 5
        _envelope(b"hi").ljust(64, b"\x00")[:32] + b"\x09" + b"\x20" * 31,  # 32 says 32, the first is 9
        b"A" * 15 + b"\x20",  # pad of 32 in a 16-byte text
    ],
    ids=["zero", "thirty-three", "255", "unequal-short", "unequal-full-block", "longer-than-text"],
)
def test_bad_padding_raises_invalid_padding(plaintext: bytes) -> None:
    with pytest.raises(InvalidPadding):
        _crypto().decrypt(raw_encrypt(plaintext))


def test_a_full_block_of_padding_is_accepted() -> None:
    body = _envelope(b"x" * 26)  # 16 + 4 + 26 + 18 = 64 bytes
    assert len(body) % 32 == 0

    assert _crypto().decrypt(raw_encrypt(body + b"\x20" * 32)) == b"x" * 26


# --- length field ----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [7 + len(CORP_ID) + 1, 1000, 0xFFFFFFFF])
def test_length_field_past_the_buffer_raises_invalid_length(length: int) -> None:
    with pytest.raises(InvalidLength):
        _crypto().decrypt(raw_encrypt(_pad(_envelope(b"message", length=length))))


def test_text_too_short_for_the_header_raises_invalid_length() -> None:
    # 16 random bytes and 3 of the 4 length bytes, then padding.
    with pytest.raises(InvalidLength):
        _crypto().decrypt(raw_encrypt(_pad(PREFIX + b"\x00\x00\x00")))


def test_length_field_exactly_at_the_end_with_no_receive_id_is_a_receive_id_mismatch() -> None:
    with pytest.raises(ReceiveIdMismatch):
        _crypto().decrypt(raw_encrypt(_pad(_envelope(b"message", receive_id=b""))))


# --- receive id ------------------------------------------------------------------------------------


@pytest.mark.parametrize("other", ["ww0000000000000000", CORP_ID[:-1], CORP_ID + "x", CORP_ID.upper(), ""])
def test_message_for_another_corp_raises_receive_id_mismatch(other: str) -> None:
    encrypted = _crypto(receive_id=other).encrypt(b"<xml/>")

    with pytest.raises(ReceiveIdMismatch):
        _crypto().decrypt(encrypted)


def test_a_short_length_field_that_shifts_message_bytes_into_the_receive_id_is_caught() -> None:
    with pytest.raises(ReceiveIdMismatch):
        _crypto().decrypt(raw_encrypt(_pad(_envelope(b"message", length=3))))


def test_receive_id_is_compared_as_raw_bytes_not_after_decoding() -> None:
    # Invalid UTF-8 where the receive id should be must be a mismatch, never a UnicodeDecodeError.
    with pytest.raises(ReceiveIdMismatch):
        _crypto().decrypt(raw_encrypt(_pad(_envelope(b"m", receive_id=b"\xffww1436e0e65a779ae"))))


def test_receive_id_that_is_not_encodable_is_refused_at_construction() -> None:
    with pytest.raises(CryptoError):
        WeComCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id="ww\ud800")


# --- key -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        AES_KEY[:42],  # 42 characters
        AES_KEY + "A",  # 44 characters
        "",
        AES_KEY[:42] + "!",  # not base64
        AES_KEY[:42] + "=",  # 43 characters that decode to 31 bytes
        AES_KEY[:21] + " " + AES_KEY[22:],  # a space inside
        AES_KEY[:42] + "é",  # not ASCII
        AES_KEY[:42] + "\ud800",  # a lone surrogate
        AES_KEY[:41] + "-_",  # the URL-safe alphabet
    ],
    ids=["42", "44", "empty", "bang", "31-bytes", "space", "non-ascii", "surrogate", "urlsafe"],
)
def test_bad_key_raises_invalid_key(key: str) -> None:
    with pytest.raises(InvalidKey):
        decode_aes_key(key)
    with pytest.raises(InvalidKey):
        WeComCrypto(token=TOKEN, encoding_aes_key=key, receive_id=CORP_ID)


def test_official_key_decodes_to_32_bytes_though_its_last_character_has_spare_bits() -> None:
    # "t" carries two bits past the 256th; WeCom's own keys do this, so they must be accepted.
    assert len(decode_aes_key(AES_KEY)) == 32


def test_random_bytes_of_the_wrong_size_is_a_crypto_error() -> None:
    crypto = WeComCrypto(
        token=TOKEN, encoding_aes_key=AES_KEY, receive_id=CORP_ID, random_bytes=lambda count: b""
    )

    with pytest.raises(CryptoError):
        crypto.encrypt(b"x")


# --- what errors say -------------------------------------------------------------------------------


def test_error_messages_carry_no_key_token_or_plaintext() -> None:
    secret = b"secret-plaintext-1234"
    crypto = _crypto()
    attempts: list[Callable[[], object]] = [
        lambda: decode_aes_key(AES_KEY[:42] + "!"),
        lambda: WeComCrypto(token=TOKEN, encoding_aes_key=AES_KEY[:42], receive_id=CORP_ID),
        lambda: crypto.verify("0" * 40, TIMESTAMP, NONCE, crypto.encrypt(secret)),
        lambda: crypto.decrypt(raw_encrypt(_pad(_envelope(secret, length=999)))),
        lambda: crypto.decrypt(raw_encrypt(_envelope(secret).ljust(63, b"\x00") + b"\x00")),
        lambda: _crypto().decrypt(_crypto(receive_id="ww0").encrypt(secret)),
    ]
    failures: list[CryptoError] = []
    for attempt in attempts:
        with pytest.raises(CryptoError) as caught:
            attempt()
        failures.append(caught.value)

    for failure in failures:
        text = f"{failure!s} {failure!r} {failure.__cause__!r} {failure.__context__!r}"
        for forbidden in [AES_KEY, AES_KEY[:42], TOKEN, secret.decode(), "999"]:
            assert forbidden not in text
