"""Proving a typed phone by an SMS code: send one within the limits, then judge what the student enters.

The state lives in the store's kv: the challenge (the code's keyed hash, never the code) under the
login session's hash, the count of entries beside it, the send counters of handlers.core.sms_code (a
phone's under its keyed tag, never in clear), and each student's index of what the proof keeps about
them (the tags of the phones they sent codes to, the challenges' keys), which a data request reads and
erases (sms_records_of, forget_sms_of).
Each step that must not race is one atomic store operation: a counter's increment under its limit,
an entry's count, the challenge's single-use pop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any, Final, Protocol

from handlers.core.phone import Phone
from handlers.core.sms_code import (
    CODE_TTL,
    Challenge,
    SmsNotSent,
    SmsTooSoon,
    Verdict,
    code_hash,
    judge,
    limit_failure,
    member_counters,
    new_code,
    phone_counters,
    phone_tag,
    resend_wait,
    send_limits,
)
from handlers.usecases.contracts import KeyValueStore, ProofStore

_log = logging.getLogger(__name__)
# The challenge outlives its code, so that an entry after the 10 minutes reads "expired", not "absent".
_KEEP: Final = 2 * CODE_TTL
_INDEX_PREFIX: Final = "sms-of:"
# The index outlives every counter and challenge it names (the day's counter is the longest).
_INDEX_TTL: Final = max(window for _, window in send_limits(phone_tag="", member_id="", address=""))

SENT: Final = "wecom_bind_sms_codes_sent_total"
VERIFIED: Final = "wecom_bind_sms_codes_verified_total"
FAILED: Final = "wecom_bind_sms_codes_failed_total"
EXPIRED: Final = "wecom_bind_sms_codes_expired_total"
NOT_SENT: Final = "wecom_bind_sms_codes_not_sent_total"
COUNTERS: Final = {
    SENT: "SMS codes sent to a typed phone",
    VERIFIED: "SMS codes entered right (the phone proved)",
    FAILED: "wrong SMS code entries (the fifth ends the code)",
    EXPIRED: "SMS codes entered after their 10 minutes",
    NOT_SENT: "SMS codes not sent, by reason: a limit of ours or the provider's refusal or silence",
}


class SmsSender(Protocol):
    """An SMS provider that sends a verification code through the approved 签名 and template."""

    async def send_code(self, phone: Phone, code: str) -> None:
        """Send the code to the phone; SmsNotSent (handlers.core.sms_code) when it was not sent."""
        ...


class Counters(Protocol):
    """Where the proof counts codes sent, verified, failed and expired (the service's metrics)."""

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        ...


class SmsProof:
    """Sends a code to a typed phone for one login session, and judges the code entered there."""

    def __init__(
        self,
        *,
        store: ProofStore,
        sender: SmsSender,
        secret: bytes,
        clock: Callable[[], float],
        counters: Counters,
        randbelow: Callable[[int], int] = secrets.randbelow,
    ) -> None:
        self._store = store
        self._sender = sender
        self._secret = secret
        self._clock = clock
        self._counters = counters
        self._randbelow = randbelow

    def now(self) -> float:
        """The proof's time (the page counts the code's minutes and the resend's seconds by it)."""
        return self._clock()

    @staticmethod
    def _keys(login: str) -> tuple[str, str]:
        return _challenge_keys(_login_digest(login))

    async def pending(self, login: str) -> Challenge | None:
        """The code this login session is waiting for, if any (the page shows where it went)."""
        return Challenge.from_json(await self._store.kv_get(self._keys(login)[0]))

    async def send(self, *, login: str, member_id: str, phone: Phone, address: str) -> Challenge:
        """Send a new code to the phone, replacing any earlier one of this session.

        SmsTooSoon within the minute of the last; SmsNotSent when a limit or the provider refused.
        """
        challenge_key, attempts_key = self._keys(login)
        now = self._clock()
        wait = resend_wait(await self.pending(login), now)
        if wait:
            raise SmsTooSoon(wait)
        tag = phone_tag(self._secret, phone)
        for limits, window in send_limits(phone_tag=tag, member_id=member_id, address=address):
            counter = await self._store.kv_incr_under(limits, ttl=window)
            if counter is not None:
                failure = limit_failure(counter)
                self._counters.inc(NOT_SENT, reason=failure.name.lower())
                if counter.startswith("sms-minute:"):
                    # Another session sent to this phone or for this student within the minute.
                    raise SmsTooSoon(None)
                raise SmsNotSent(failure, f"limit:{counter.split(':')[0]}")
        # Counted now, whether or not the provider sends: the index names what was counted.
        await self._index(member_id, tag, phone, _login_digest(login))
        code = new_code(self._randbelow)
        challenge = Challenge(
            member_id=member_id,
            phone=phone,
            code_hash=code_hash(self._secret, login=login, member_id=member_id, phone=phone, code=code),
            sent_at=now,
        )
        try:
            await self._sender.send_code(phone, code)
        except SmsNotSent as refused:
            self._counters.inc(NOT_SENT, reason=refused.failure.name.lower())
            raise
        # A new code ends the old one and its count of entries.
        await self._store.kv_apply(
            {challenge_key: (challenge.to_json(), _KEEP)}, deletes=[attempts_key]
        )
        self._counters.inc(SENT)
        _log.info("sms code sent to %s for %s", phone.masked, member_id)
        return challenge

    async def verify(self, *, login: str, member_id: str, phone: Phone, code: str) -> Verdict:
        """Judge six typed digits; RIGHT uses the code up, ENDED and EXPIRED end it."""
        challenge_key, attempts_key = self._keys(login)
        challenge = await self.pending(login)
        if challenge is None or challenge.member_id != member_id or challenge.phone != phone:
            return Verdict.ABSENT
        attempt = await self._store.kv_incr(attempts_key, ttl=_KEEP)
        typed = code_hash(self._secret, login=login, member_id=member_id, phone=phone, code=code)
        verdict = judge(
            challenge, member_id=member_id, phone=phone, typed_hash=typed, attempt=attempt, now=self._clock()
        )
        if verdict is Verdict.RIGHT:
            # The pop is the single use: of two right entries racing, one finds the code gone.
            popped = Challenge.from_json(await self._store.kv_pop(challenge_key))
            if popped is None or popped.code_hash != challenge.code_hash:
                return Verdict.ABSENT
            self._counters.inc(VERIFIED)
        elif verdict in (Verdict.ENDED, Verdict.EXPIRED):
            await self._store.kv_apply({}, deletes=[challenge_key])
            self._counters.inc(EXPIRED if verdict is Verdict.EXPIRED else FAILED)
        elif verdict is Verdict.WRONG:
            self._counters.inc(FAILED)
        _log.info("sms code for %s: %s (entry %d)", phone.masked, verdict.value, attempt)
        return verdict

    async def cancel(self, login: str) -> None:
        """Forget this session's code (the student goes back to change the number)."""
        await self._store.kv_apply({}, deletes=list(self._keys(login)))

    async def _index(self, member_id: str, tag: str, phone: Phone, login_digest: str) -> None:
        # Read, then written: the student's minute counter, just taken, keeps a second send out.
        index = _Index.read(await self._store.kv_get(_INDEX_PREFIX + member_id))
        index.phones[tag] = phone.masked
        if login_digest not in index.logins:
            index.logins.append(login_digest)
        await self._store.kv_apply({_INDEX_PREFIX + member_id: (index.to_json(), _INDEX_TTL)})


def _login_digest(login: str) -> str:
    # Keyed by a hash of the login session's id: the id itself is a bearer secret.
    return hashlib.sha256(b"sms-login\0" + login.encode()).hexdigest()


def _challenge_keys(login_digest: str) -> tuple[str, str]:
    return f"sms-challenge:{login_digest}", f"sms-attempts:{login_digest}"


class _Index:
    """What the proof keeps about one student: the phones' tags (with the masked phone, for an
    export) and the login sessions' digests of the challenges sent for them."""

    def __init__(self, phones: dict[str, str], logins: list[str]) -> None:
        self.phones = phones
        self.logins = logins

    @classmethod
    def read(cls, raw: str | None) -> _Index:
        try:
            data = json.loads(raw) if raw else {}
            phones, logins = data.get("phones", {}), data.get("logins", [])
        except (ValueError, AttributeError):
            return cls({}, [])
        if not isinstance(phones, dict) or not isinstance(logins, list):
            return cls({}, [])
        return cls(
            {str(tag): str(masked) for tag, masked in phones.items()}, [str(login) for login in logins]
        )

    def to_json(self) -> str:
        return json.dumps({"phones": self.phones, "logins": self.logins})


async def sms_records_of(store: KeyValueStore, member_id: str) -> dict[str, Any] | None:
    """What the proof keeps about the student (a data request's export), or None when nothing:
    codes counted today for them and for each phone they sent one to (masked), and a code pending."""
    index = _Index.read(await store.kv_get(_INDEX_PREFIX + member_id))
    tags = list(index.phones)
    day_keys = [member_counters(member_id)[1], *(phone_counters(tag)[1] for tag in tags)]
    challenges = [_challenge_keys(login)[0] for login in index.logins]
    values = await store.kv_get_many([*day_keys, *challenges])
    counts, pending = values[: len(day_keys)], values[len(day_keys) :]
    if not tags and counts[0] is None:
        return None
    return {
        "codes_today": _count(counts[0]),
        "phones": [
            {"phone": index.phones[tag], "codes_today": _count(count)}
            for tag, count in zip(tags, counts[1:], strict=True)
        ],
        "codes_pending": [
            {"phone": challenge.phone.masked,
             "sent_at": dt.datetime.fromtimestamp(challenge.sent_at, tz=dt.UTC).isoformat(timespec="seconds")}
            for challenge in map(Challenge.from_json, pending)
            if challenge is not None
        ],
    }


def _count(raw: str | None) -> int:
    return int(raw) if raw is not None and raw.isdigit() else 0


async def forget_sms_of(store: KeyValueStore, member_id: str) -> int:
    """Delete, in one atomic step, everything the proof keeps about the student (a data erasure): the
    index, their send counters and those of every phone they sent a code to, and their challenges
    (which hold the phone in clear) with the entries' counts; return how many phones it named."""
    key = _INDEX_PREFIX + member_id
    index = _Index.read(await store.kv_get(key))
    deletes = [key, *member_counters(member_id)]
    for tag in index.phones:
        deletes += phone_counters(tag)
    for login in index.logins:
        deletes += _challenge_keys(login)
    await store.kv_apply({}, deletes=deletes)
    return len(index.phones)
