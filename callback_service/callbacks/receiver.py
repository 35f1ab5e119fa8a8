"""The callback receiver, in layers: signature, then freshness, then cipher, then envelope, then event.

It knows nothing of HTTP: it raises `CallbackForbidden` (answer 403) or `CallbackMalformed`
(answer 400), and the view maps them. Neither carries details to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from callback_service.callbacks.xml import MalformedXml, parse_envelope, parse_event
from crypto import (
    CryptoError,
    ReceiveIdMismatch,
    SignatureMismatch,
    WeComCrypto,
)
from handlers.core.events import Event

log: Final = logging.getLogger(__name__)


class CallbackRejected(Exception):
    """A callback that is refused; `reason` is for our logs only, never for the caller."""

    status: int = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallbackForbidden(CallbackRejected):
    """A forged or stale callback: bad signature, timestamp outside the window, wrong receive id."""

    status = 403


class CallbackMalformed(CallbackRejected):
    """A callback that is not what WeCom sends: missing parameters, bad XML, bad base64 or padding."""

    status = 400


class CallbackReceiver:
    """Verifies, decrypts and parses WeCom callbacks for one corp."""

    def __init__(
        self,
        *,
        crypto: WeComCrypto,
        corp_id: str,
        timestamp_window: int,
        clock: Callable[[], float],
    ) -> None:
        self._crypto = crypto
        self._corp_id = corp_id
        self._window = timestamp_window
        self._clock = clock

    def verify_url(self, *, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Check a URL-verification request and return the plaintext to echo back."""
        plaintext = self._open(msg_signature, timestamp, nonce, echostr)
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise CallbackMalformed("echostr is not UTF-8") from None

    def receive(self, *, msg_signature: str, timestamp: str, nonce: str, body: bytes) -> Event:
        """Check a callback POST and return its event."""
        try:
            envelope = parse_envelope(body)
        except MalformedXml as exc:
            raise CallbackMalformed(f"envelope: {exc}") from None
        plaintext = self._open(msg_signature, timestamp, nonce, envelope.encrypt)
        try:
            event = parse_event(plaintext)
        except MalformedXml as exc:
            raise CallbackMalformed(f"message: {exc}") from None
        if event.corp_id != self._corp_id:
            raise CallbackForbidden("message addressed to another corp")
        return event

    def _open(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> bytes:
        if not (msg_signature and timestamp and nonce and encrypted):
            raise CallbackMalformed("missing parameter")
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise CallbackMalformed("timestamp is not an integer") from None
        try:
            self._crypto.verify(msg_signature, timestamp, nonce, encrypted)
        except SignatureMismatch:
            raise CallbackForbidden("signature mismatch") from None
        # Freshness is checked after the signature, so an attacker cannot probe our clock. Compared,
        # not subtracted: a float minus an int of hundreds of digits raises OverflowError.
        now = self._clock()
        if not now - self._window <= sent_at <= now + self._window:
            raise CallbackForbidden("timestamp outside the window")
        try:
            return self._crypto.decrypt(encrypted)
        except ReceiveIdMismatch:
            raise CallbackForbidden("receive id mismatch") from None
        except CryptoError as exc:
            raise CallbackMalformed(type(exc).__name__) from None
