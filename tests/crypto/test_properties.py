"""Properties: round trips for any message and receive id; no input makes anything but a CryptoError."""

from __future__ import annotations

import base64
import contextlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import CryptoError, InvalidKey, SignatureMismatch, WeComCrypto, decode_aes_key
from tests.crypto._support import AES_KEY, ANY_TEXT, CORP_ID, MODEST, TOKEN

# 43 characters of the base64 alphabet; most of them decode to a key.
BASE64_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
KEYS = st.text(st.sampled_from(BASE64_ALPHABET), min_size=43, max_size=43)
RECEIVE_IDS = st.text(max_size=64)


def _crypto(receive_id: str = CORP_ID, key: str = AES_KEY, token: str = TOKEN) -> WeComCrypto:
    return WeComCrypto(token=token, encoding_aes_key=key, receive_id=receive_id)


def _decrypts_or_refuses(crypto: WeComCrypto, encrypted: str) -> None:
    """Decrypt may succeed on a corrupted text (CBC has no MAC), or raise a CryptoError; nothing else."""
    with contextlib.suppress(CryptoError):
        crypto.decrypt(encrypted)


@MODEST
@given(message=st.binary(max_size=2048), receive_id=RECEIVE_IDS, key=KEYS, token=st.text())
def test_round_trip_of_any_bytes_for_any_receive_id_and_key(
    message: bytes, receive_id: str, key: str, token: str
) -> None:
    crypto = _crypto(receive_id, key, token)
    encrypted = crypto.encrypt(message)

    assert crypto.decrypt(encrypted) == message
    msg_signature = crypto.sign("1476416373", "47744683", encrypted)
    assert crypto.decrypt_verified(msg_signature, "1476416373", "47744683", encrypted) == message


@MODEST
@given(text=st.text(), receive_id=RECEIVE_IDS)
def test_round_trip_of_any_unicode_text(text: str, receive_id: str) -> None:
    crypto = _crypto(receive_id)

    assert crypto.decrypt(crypto.encrypt(text.encode("utf-8"))).decode("utf-8") == text


@MODEST
@given(message=st.binary(max_size=200), data=st.data())
def test_bit_flips_anywhere_in_the_ciphertext_never_raise_anything_else(
    message: bytes, data: st.DataObject
) -> None:
    crypto = _crypto()
    raw = bytearray(base64.b64decode(crypto.encrypt(message)))
    flips = data.draw(st.lists(st.integers(0, len(raw) * 8 - 1), min_size=1, max_size=8))
    for bit in flips:
        raw[bit // 8] ^= 1 << (bit % 8)

    _decrypts_or_refuses(crypto, base64.b64encode(raw).decode("ascii"))


@MODEST
@given(message=st.binary(max_size=200), data=st.data())
def test_truncated_or_extended_ciphertexts_never_raise_anything_else(
    message: bytes, data: st.DataObject
) -> None:
    crypto = _crypto()
    encrypted = crypto.encrypt(message)
    raw = base64.b64decode(encrypted)
    cut_text = data.draw(st.integers(0, len(encrypted)))
    cut_raw = data.draw(st.integers(0, len(raw)))
    extra = data.draw(st.binary(max_size=64))
    suffix = data.draw(ANY_TEXT)

    for candidate in [
        encrypted[:cut_text],
        encrypted + suffix,
        encrypted[:cut_text] + suffix,
        base64.b64encode(raw[:cut_raw]).decode("ascii"),
        base64.b64encode(raw + extra).decode("ascii"),
        base64.b64encode(extra + raw).decode("ascii"),
    ]:
        _decrypts_or_refuses(crypto, candidate)


@MODEST
@given(encrypted=ANY_TEXT)
def test_any_string_as_ciphertext_never_raises_anything_else(encrypted: str) -> None:
    _decrypts_or_refuses(_crypto(), encrypted)


@MODEST
@given(blocks=st.integers(1, 8).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n)))
def test_any_block_aligned_bytes_as_ciphertext_never_raise_anything_else(blocks: bytes) -> None:
    # Random blocks decrypt to random text, which reaches the padding, length and receive id checks.
    _decrypts_or_refuses(_crypto(), base64.b64encode(blocks).decode("ascii"))


@MODEST
@given(message=st.binary(max_size=200), timestamp=st.text(), nonce=st.text(), data=st.data())
def test_a_signature_with_any_one_character_changed_raises_signature_mismatch(
    message: bytes, timestamp: str, nonce: str, data: st.DataObject
) -> None:
    crypto = _crypto()
    encrypted = crypto.encrypt(message)
    good = crypto.sign(timestamp, nonce, encrypted)
    index = data.draw(st.integers(0, len(good) - 1))
    any_character = st.characters(codec=None, exclude_categories=())
    replacement = data.draw(any_character.filter(lambda c: c != good[index]))
    bad = good[:index] + replacement + good[index + 1 :]

    with pytest.raises(SignatureMismatch):
        crypto.verify(bad, timestamp, nonce, encrypted)
    with pytest.raises(SignatureMismatch):
        crypto.decrypt_verified(bad, timestamp, nonce, encrypted)


@MODEST
@given(msg_signature=ANY_TEXT, timestamp=ANY_TEXT, nonce=ANY_TEXT, encrypted=ANY_TEXT)
def test_any_strings_given_to_decrypt_verified_raise_only_crypto_errors(
    msg_signature: str, timestamp: str, nonce: str, encrypted: str
) -> None:
    with pytest.raises(CryptoError):
        _crypto().decrypt_verified(msg_signature, timestamp, nonce, encrypted)


@MODEST
@given(key=ANY_TEXT | KEYS)
def test_any_string_as_key_gives_32_bytes_or_invalid_key(key: str) -> None:
    with contextlib.suppress(InvalidKey):
        assert len(decode_aes_key(key)) == 32
