"""Logging: JSON lines or readable text, a request id on every line, and a query-free access log.

What a client sends reaches the log through aiohttp (the access line's path, the parser's errors,
which quote the request's bytes): phone-shaped digits in it are masked, as everywhere in our logs.

The request id lives in a context variable: the request middleware sets it for a request, and the
inbox's worker sets it for the event that request stored, so every line of both carries it. A
handler filter copies it onto the record, which costs nothing for a record that the level drops.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import itertools
import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from typing import Final, Literal

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from callback_service.client_address import UNKNOWN, client_of
from handlers.core.phone import mask_phone

LogFormat = Literal["json", "text"]

REQUEST_ID_HEADER: Final = "X-Request-Id"
REQUEST_ID: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar("request_id", default=None)
# What a proxy's id may look like; anything else is replaced by our own (it reaches every log line).
_VALID_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# A mainland mobile as a client may put it in a URL: 11 digits from 13 to 19, dashes or spaces
# between them allowed, not inside a longer run of digits.
_PHONE_SHAPED: Final = re.compile(r"(?<!\d)1[3-9]\d(?:[ -]?\d){8}(?!\d)")
# The loggers that write what clients send (aiohttp.access, aiohttp.server, aiohttp.web...).
_CLIENT_TEXT_LOGGERS: Final = "aiohttp"

# The attributes every LogRecord has; any other attribute came from `extra=` and is an event's field.
_RECORD_ATTRIBUTES: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "request_id"}


class _RequestIds:
    """Request ids: a random prefix per process and a counter, so that making one costs no syscall
    (reading the kernel's randomness per request was a twentieth of a callback's cost)."""

    def __init__(self) -> None:
        self.reset()
        # A forked worker (serve --processes) must not repeat its parent's ids.
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        """Start a new series: a fresh random prefix, the counter at zero."""
        self._prefix = secrets.token_urlsafe(9)
        self._count = itertools.count()

    def next(self) -> str:
        """The next id: the prefix, then the counter in hex after a letter, so that no id reads as a
        run of digits (a phone) to someone scanning the logs."""
        return f"{self._prefix}r{next(self._count):x}"


_REQUEST_IDS: Final = _RequestIds()


def new_request_id() -> str:
    """A fresh request id, unique to this process and run."""
    return _REQUEST_IDS.next()


def accept_request_id(value: str | None) -> str:
    """The proxy's request id when it is well formed, else a fresh one."""
    if value and _VALID_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()


class RequestIdFilter(logging.Filter):
    """Copies the current request id onto each record that a handler is about to emit."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Set record.request_id (None outside a request or event); never drops a record."""
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


def mask_phones(text: str) -> str:
    """The text with every phone-shaped run of digits masked (138****1234)."""
    return _PHONE_SHAPED.sub(lambda found: mask_phone(re.sub(r"\D", "", found.group())), text)


class ClientTextFilter(logging.Filter):
    """Masks phone-shaped digits in the records of aiohttp's loggers, which quote what clients sent
    (a path, a query, a malformed request line); our own records never hold a full phone."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message, fields and traceback text, masked; never drops a record."""
        if not record.name.startswith(_CLIENT_TEXT_LOGGERS):
            return True
        message = record.getMessage()
        masked = mask_phones(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_phones(record.exc_text)
        for name, value in record_fields(record).items():  # aiohttp's default access log's fields
            text = value if isinstance(value, str) else repr(value) if isinstance(value, Mapping) else None
            if text is not None and (masked := mask_phones(text)) != text:
                setattr(record, name, masked)
        return True


_MALFORMED_SHOWN: Final = 200
"""Characters of the parser's complaint a malformed request's line keeps (it quotes the bytes)."""


class MalformedRequestFilter(logging.Filter):
    """Turns aiohttp's ERROR with a traceback for each request its parser refuses (a bad request line,
    header, length or encoding: a 400 it answers itself) into one WARNING line without one, naming
    the client and what was malformed, masked; an error of a handler stays an ERROR with its traceback.

    A filter of the `aiohttp.server` logger (configure_logging adds it), so that it runs before any
    handler's filters and formatter see the record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a parser's refusal; never drops a record."""
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
        complaint = " ".join(str(exc.message or type(exc).__name__).split())
        if len(complaint) > _MALFORMED_SHOWN:
            complaint = complaint[:_MALFORMED_SHOWN] + "…"
        record.msg = "malformed request from %s (%d, %s): %s"
        record.args = (peer, exc.code, type(exc).__name__, mask_phones(complaint))
        if record.levelno > logging.WARNING:  # aiohttp's DEBUG for a first line that is not HTTP stays
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.exc_info, record.exc_text = None, None
        return True


MALFORMED_REQUESTS: Final = MalformedRequestFilter()
"""The one instance configure_logging adds to `aiohttp.server` (adding it again is a no-op)."""


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields a log call gave in `extra=`: the event's or the page's."""
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        line.update(record_fields(record))
        if record.exc_info:
            # The text ClientTextFilter masked, when it ran: formatted afresh, a phone would be back.
            line["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Readable lines: time, level, logger, message, then the request id and the fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record as a readable line (and its traceback, if any)."""
        text = super().format(record)
        extras = [f"{key}={value}" for key, value in record_fields(record).items()]
        request_id = getattr(record, "request_id", None)
        if request_id:
            extras.insert(0, f"request_id={request_id}")
        if not extras:
            return text
        head, newline, tail = text.partition("\n")
        return f"{head}  [{' '.join(extras)}]{newline}{tail}"


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Logs method, path, status and time; the query is left out, since it may carry a ticket or code,
    and phone-shaped digits in the path are masked."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write one access line, with the request's id and its route as fields."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        match_info = None
        if isinstance(request, web.Request):
            # A request the parser refused never reached the router, and aiohttp asserts that its
            # match and its app (the trusted proxies) are not there to read: its peer is the client.
            with contextlib.suppress(AssertionError):
                match_info = request.match_info
        refused = isinstance(request, web.Request) and match_info is None
        info = match_info.route.resource if match_info is not None else None
        self.logger.info(
            '%s "%s %s" %d %.1fms',
            (request.remote or UNKNOWN) if refused else client_of(request),
            request.method,
            mask_phones(request.path),
            response.status,
            time * 1000,
            extra={
                "request_id": response.headers.get(REQUEST_ID_HEADER),
                "route": info.canonical if info is not None else None,
                "status": response.status,
                "duration_ms": round(time * 1000, 1),
            },
        )


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Send log lines to stderr at the given level, as JSON lines or readable text."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(ClientTextFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("aiohttp.server").addFilter(MALFORMED_REQUESTS)
