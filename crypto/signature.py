"""The msg_signature of a WeCom callback: SHA-1 over the sorted token, timestamp, nonce and ciphertext."""

from __future__ import annotations

import hashlib


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """Return the hex SHA-1 signature WeCom puts in msg_signature."""
    # Tencent's sample sorts the str values; UTF-8 keeps code point order, so this also agrees
    # with implementations that sort the encoded bytes.
    joined = "".join(sorted((token, timestamp, nonce, encrypted)))
    # A lone surrogate (which a query string can smuggle in) has no UTF-8 form; surrogatepass
    # keeps this total, and no genuine signature can cover such input anyway.
    return hashlib.sha1(joined.encode("utf-8", "surrogatepass")).hexdigest()  # noqa: S324 - WeCom's scheme
