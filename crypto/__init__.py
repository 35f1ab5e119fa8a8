"""WeCom message crypto (the WXBizMsgCrypt scheme): signature, AES, padding and their typed errors."""

from crypto.cipher import WeComCrypto, decode_aes_key
from crypto.errors import (
    CryptoError,
    InvalidBase64,
    InvalidCiphertext,
    InvalidKey,
    InvalidLength,
    InvalidPadding,
    ReceiveIdMismatch,
    SignatureMismatch,
)
from crypto.signature import signature

__all__ = [
    "CryptoError",
    "InvalidBase64",
    "InvalidCiphertext",
    "InvalidKey",
    "InvalidLength",
    "InvalidPadding",
    "ReceiveIdMismatch",
    "SignatureMismatch",
    "WeComCrypto",
    "decode_aes_key",
    "signature",
]
