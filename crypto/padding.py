"""PKCS#7 padding as WeCom uses it: block size 32, not AES's 16."""

from __future__ import annotations

import hmac
from typing import Final

from crypto.errors import InvalidPadding

BLOCK_SIZE: Final = 32


def pad(data: bytes) -> bytes:
    """Pad data to a multiple of 32 bytes, always adding 1 to 32 bytes."""
    count = BLOCK_SIZE - len(data) % BLOCK_SIZE
    return data + bytes((count,)) * count


def unpad(data: bytes) -> bytes:
    """Strip and check the padding that `pad` added; raise InvalidPadding if it is not exact."""
    if not data:
        raise InvalidPadding("nothing to unpad")
    count = data[-1]
    if not 1 <= count <= min(BLOCK_SIZE, len(data)):
        raise InvalidPadding("pad length out of range")
    if not hmac.compare_digest(data[-count:], bytes((count,)) * count):
        raise InvalidPadding("pad bytes differ")
    return data[:-count]
