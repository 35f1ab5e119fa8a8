"""WeCom's message cipher (the WXBizMsgCrypt scheme): AES-256-CBC over a random, length-prefixed envelope."""

from __future__ import annotations

import base64
import hmac
import os
import struct
from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from crypto.errors import (
    CryptoError,
    InvalidBase64,
    InvalidCiphertext,
    InvalidKey,
    InvalidLength,
    ReceiveIdMismatch,
    SignatureMismatch,
)
from crypto.padding import pad, unpad
from crypto.signature import signature

KEY_CHARS: Final = 43
KEY_BYTES: Final = 32
RANDOM_BYTES: Final = 16
AES_BLOCK: Final = 16
_LENGTH: Final = struct.Struct(">I")
_HEADER: Final = RANDOM_BYTES + _LENGTH.size


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """Decode a 43-character EncodingAESKey into the 32-byte AES key, or raise InvalidKey."""
    if len(encoding_aes_key) != KEY_CHARS:
        raise InvalidKey(f"EncodingAESKey must be {KEY_CHARS} characters")
    # Non-zero bits in the last character are accepted on purpose: WeCom draws keys from
    # [A-Za-z0-9] at random, so its own keys often have them (the official sample's does).
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except ValueError:  # binascii.Error, and non-ASCII str
        raise InvalidKey("EncodingAESKey is not base64") from None
    if len(key) != KEY_BYTES:
        raise InvalidKey(f"EncodingAESKey must decode to {KEY_BYTES} bytes")
    return key


class WeComCrypto:
    """Signs, verifies, encrypts and decrypts WeCom callback messages for one receive id.

    One instance serves one thread at a time (an event loop): decryption reuses one cipher context.
    """

    def __init__(
        self,
        *,
        token: str,
        encoding_aes_key: str,
        receive_id: str,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        key = decode_aes_key(encoding_aes_key)
        try:
            self._receive_id = receive_id.encode("utf-8")
        except UnicodeEncodeError:
            raise CryptoError("receive id is not valid Unicode text") from None
        self._token = token
        self._receive_id_text = receive_id
        self._random_bytes = random_bytes
        # The IV is fixed by the scheme, so one Cipher serves every call; each encryption has its own context.
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:AES_BLOCK]))
        self._iv = key[:AES_BLOCK]
        # Decryption reuses one context with its key schedule (set up once, not per callback): CBC
        # decryption is each block's raw AES decryption XORed with the ciphertext block before it (the
        # IV for the first), and a block-by-block context keeps no state between calls.
        self._blocks = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305 - CBC, see above

    def __repr__(self) -> str:
        return f"WeComCrypto(receive_id={self._receive_id_text!r})"

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        """Return the msg_signature for a ciphertext under our token."""
        return signature(self._token, timestamp, nonce, encrypted)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        """Check msg_signature in constant time; raise SignatureMismatch if it is wrong."""
        expected = self.sign(timestamp, nonce, encrypted).encode("ascii")
        # Compare bytes: compare_digest refuses non-ASCII str, and the signature comes from outside.
        given = msg_signature.encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(expected, given):
            raise SignatureMismatch("msg_signature does not match")

    def encrypt(self, message: bytes) -> str:
        """Encrypt a message for our receive id and return the base64 ciphertext."""
        prefix = self._random_bytes(RANDOM_BYTES)
        if len(prefix) != RANDOM_BYTES:
            raise CryptoError(f"random_bytes returned {len(prefix)} bytes, not {RANDOM_BYTES}")
        try:
            length = _LENGTH.pack(len(message))
        except struct.error:
            raise InvalidLength("message too long for the 4-byte length field") from None
        plaintext = pad(b"".join((prefix, length, message, self._receive_id)))
        encryptor = self._cipher.encryptor()
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return base64.b64encode(ciphertext).decode("ascii")

    def decrypt(self, encrypted: str) -> bytes:
        """Decrypt a base64 ciphertext, check its padding, length and receive id, and return the message."""
        try:
            ciphertext = base64.b64decode(encrypted, validate=True)
        except ValueError:  # binascii.Error, and non-ASCII str
            raise InvalidBase64("ciphertext is not strict base64") from None
        if not ciphertext or len(ciphertext) % AES_BLOCK:
            raise InvalidCiphertext(f"ciphertext is {len(ciphertext)} bytes, not whole AES blocks")
        blocks = self._blocks.update(ciphertext)
        chained = self._iv + ciphertext[:-AES_BLOCK]
        content = unpad(
            (int.from_bytes(blocks, "big") ^ int.from_bytes(chained, "big")).to_bytes(len(blocks), "big")
        )
        if len(content) < _HEADER:
            raise InvalidLength("decrypted text is shorter than its header")
        (length,) = _LENGTH.unpack_from(content, RANDOM_BYTES)
        end = _HEADER + length
        if end > len(content):
            raise InvalidLength("message length runs past the decrypted text")
        if not hmac.compare_digest(content[end:], self._receive_id):
            raise ReceiveIdMismatch("receive id does not match")
        return content[_HEADER:end]

    def decrypt_verified(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> bytes:
        """Verify msg_signature, then decrypt; the signature is checked before any decryption."""
        self.verify(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)
