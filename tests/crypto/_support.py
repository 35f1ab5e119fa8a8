"""What the crypto tests share: the official vectors, raw AES-CBC as WeCom uses it, hypothesis settings."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Final, TypedDict

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import settings
from hypothesis import strategies as st

from tests.support.reference import VECTORS as VECTORS_PATH

TOKEN: Final = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
AES_KEY: Final = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORP_ID: Final = "ww1436e0e65a779aee"

MODEST: Final = settings(max_examples=200, deadline=None)

# Every code point, lone surrogates included: a query string can carry them.
ANY_TEXT: Final = st.text(st.characters(codec=None, exclude_categories=()))


class VerifyUrlVector(TypedDict):
    """The GET /wecom/callback sample."""

    msg_signature: str
    timestamp: str
    nonce: str
    echostr: str
    expected_plaintext: str


class DecryptMessageVector(TypedDict):
    """The POST /wecom/callback sample."""

    msg_signature: str
    timestamp: str
    nonce: str
    post_body: str
    expected_plaintext: str


class OfficialVectors(TypedDict):
    """Tencent's WXBizMsgCrypt sample, as stored in the shared folder."""

    token: str
    encoding_aes_key: str
    corp_id: str
    verify_url: VerifyUrlVector
    decrypt_message: DecryptMessageVector


def official_vectors() -> OfficialVectors:
    """Load the official vectors; a missing file fails the test rather than skipping it."""
    assert VECTORS_PATH.is_file(), f"official WeCom vectors not found at {VECTORS_PATH}"
    vectors: OfficialVectors = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return vectors


def raw_key(encoding_aes_key: str = AES_KEY) -> bytes:
    """The AES key, decoded here independently of the code under test."""
    return base64.b64decode(encoding_aes_key + "=")


def raw_encrypt(plaintext: bytes, key: bytes | None = None) -> str:
    """AES-256-CBC with WeCom's IV and no padding added, base64-encoded: for crafting bad plaintexts."""
    key = key or raw_key()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plaintext) + encryptor.finalize()).decode("ascii")


def raw_decrypt(encrypted: str, key: bytes | None = None) -> bytes:
    """Undo `raw_encrypt`, leaving padding and envelope in place."""
    key = key or raw_key()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    return decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()


def fixed_random(prefix: bytes) -> Callable[[int], bytes]:
    """A random_bytes that always gives the same prefix, so that ciphertexts are deterministic."""

    def random_bytes(count: int) -> bytes:
        assert count == len(prefix)
        return prefix

    return random_bytes
