"""WeCom's callbacks as it sends them: shared with the benchmarks (testkit.callbacks)."""

from testkit.callbacks import (
    AES_KEY,
    AGENT_ID,
    CORP_ID,
    TOKEN,
    SignedCallback,
    encrypt_callback,
    envelope,
    event_xml,
    sign_ciphertext,
)

__all__ = [
    "AES_KEY",
    "AGENT_ID",
    "CORP_ID",
    "TOKEN",
    "SignedCallback",
    "encrypt_callback",
    "envelope",
    "event_xml",
    "sign_ciphertext",
]
