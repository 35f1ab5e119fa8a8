"""The typed failures of WeCom message crypto; messages never carry key material or plaintext."""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every failure raised by this package."""


class InvalidKey(CryptoError):
    """The EncodingAESKey is not 43 base64 characters that decode to 32 bytes."""


class SignatureMismatch(CryptoError):
    """The msg_signature does not match the token, timestamp, nonce and ciphertext."""


class InvalidBase64(CryptoError):
    """The ciphertext is not strict base64."""


class InvalidCiphertext(CryptoError):
    """The ciphertext is empty or not a whole number of AES blocks."""


class InvalidPadding(CryptoError):
    """The decrypted text does not end in WeCom's PKCS#7 padding (block 32)."""


class InvalidLength(CryptoError):
    """The message length field is missing or runs past the decrypted text."""


class ReceiveIdMismatch(CryptoError):
    """The decrypted receive id is not ours: the message is a forgery."""
