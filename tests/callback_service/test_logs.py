"""Log lines: JSON or text, and one request id on the answer, the request's lines and its event's lines."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from callback_service.callbacks.inbox import INBOX, envelope, open_envelope
from callback_service.client_address import TRUSTED_PROXIES
from callback_service.logs import (
    MALFORMED_REQUESTS,
    REQUEST_ID,
    ClientTextFilter,
    JsonFormatter,
    PathOnlyAccessLogger,
    RequestIdFilter,
    TextFormatter,
    accept_request_id,
    mask_phones,
    new_request_id,
)
from callback_service.web.app import create_app
from tests.callback_service.conftest import NOW, Clock, Recorder
from tests.support.callbacks import encrypt_callback, event_xml
from tests.support.rawhttp import raw_request
from tests.support.world import world_settings

Client = TestClient[web.Request, web.Application]


class Collector(logging.Handler):
    """Keeps each record it is handed, after the request-id filter ran."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[Collector]:
    handler = Collector()
    logger = logging.getLogger("callback_service")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def _record(message: str, **fields: object) -> logging.LogRecord:
    logger = logging.getLogger("callback_service.test")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, (), None, extra=fields)
    RequestIdFilter().filter(record)
    return record


def test_a_json_line_holds_time_level_logger_message_request_id_and_the_fields() -> None:
    token = REQUEST_ID.set("req-1")
    try:
        record = _record("inbox event 7 handled", event="subscribe", member="2021001")
    finally:
        REQUEST_ID.reset(token)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert set(data) == {"time", "level", "logger", "message", "request_id", "event", "member"}
    assert data["level"] == "INFO"
    assert data["logger"] == "callback_service.test"
    assert data["message"] == "inbox event 7 handled"
    assert data["request_id"] == "req-1"
    assert (data["event"], data["member"]) == ("subscribe", "2021001")
    assert data["time"].endswith("+00:00")


def test_a_text_line_is_readable_with_the_request_id_and_fields_at_its_end() -> None:
    token = REQUEST_ID.set("req-2")
    try:
        record = _record("page served", route="/bind")
    finally:
        REQUEST_ID.reset(token)
    line = TextFormatter().format(record)
    assert "INFO callback_service.test: page served" in line
    assert line.endswith("[request_id=req-2 route=/bind]")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_a_line_outside_any_request_has_a_null_request_id() -> None:
    assert json.loads(JsonFormatter().format(_record("worker started")))["request_id"] is None


def test_request_ids_are_kept_when_well_formed_and_never_a_run_of_digits() -> None:
    assert accept_request_id("abc-123.DEF_4:5") == "abc-123.DEF_4:5"
    for hostile in ("", "a b", "x" * 129, "id\nforged", "<script>"):
        assert accept_request_id(hostile) != hostile
    assert len({new_request_id() for _ in range(100)}) == 100


def test_the_envelope_carries_the_request_id_and_gives_the_xml_back() -> None:
    raw = "<xml><Event>subscribe</Event></xml>"
    assert open_envelope(envelope("req-3", raw)) == ("req-3", raw)
    assert open_envelope(envelope(None, raw)) == (None, raw)
    assert open_envelope(raw) == (None, raw)


async def test_every_answer_carries_a_request_id(client: Client) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    missing = await client.get("/no-such-page")
    ids = [response.headers.get("X-Request-Id") for response in (first, second, missing)]
    assert all(ids)
    assert len(set(ids)) == 3
    assert missing.status == 404


@pytest.fixture
async def proxied(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    clock: Clock,
    recorder: Recorder,
    store_url: str,
) -> Client:
    """The app behind a trusted reverse proxy on loopback (the test client's own address)."""
    settings = world_settings(store_url=store_url, trusted_proxies=["127.0.0.1", "::1"])
    app = create_app(settings, clock=clock, dispatcher=recorder.dispatcher(), run_workers=False)
    return await aiohttp_client(app)


async def test_an_untrusted_peer_cannot_choose_the_request_id(client: Client) -> None:
    response = await client.get("/health", headers={"X-Request-Id": "nginx-0af3"})
    assert response.headers["X-Request-Id"] not in ("", "nginx-0af3")


async def test_the_proxy_request_id_is_kept_and_a_forged_one_replaced(proxied: Client) -> None:
    client = proxied
    kept = await client.get("/health", headers={"X-Request-Id": "nginx-0af3"})
    assert kept.headers["X-Request-Id"] == "nginx-0af3"
    replaced = await client.get("/health", headers={"X-Request-Id": "evil value"})
    assert replaced.headers["X-Request-Id"] not in ("", "evil value")


async def test_the_event_lines_carry_the_id_of_the_request_that_delivered_it(
    proxied: Client, recorder: Recorder, collected: Collector
) -> None:
    client = proxied
    signed = encrypt_callback(event_xml("subscribe", "2021001", create_time=NOW), timestamp=NOW)
    response = await client.post(
        "/wecom/callback", params=signed.query, data=signed.body, headers={"X-Request-Id": "wecom-push-1"}
    )
    assert response.status == 200
    assert response.headers["X-Request-Id"] == "wecom-push-1"
    assert REQUEST_ID.get() is None  # the worker below runs in this task: nothing is inherited
    assert await client.app[INBOX].drain() == 1
    assert [event.kind for event in recorder.events] == ["subscribe"]
    handled = [record for record in collected.records if "handled" in record.getMessage()]
    assert len(handled) == 1
    assert getattr(handled[0], "request_id", None) == "wecom-push-1"
    assert getattr(handled[0], "event", None) == "subscribe"


def test_a_forked_worker_makes_ids_of_its_own() -> None:
    parent = new_request_id()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the worker of `serve --processes`
        os.write(write_end, new_request_id().encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        forked = pipe.read()
    os.waitpid(child, 0)
    assert forked
    assert forked != parent
    assert forked.rpartition("r")[0] != parent.rpartition("r")[0]


def _access_line(trusted: list[str]) -> str:
    app = web.Application()
    app[TRUSTED_PROXIES] = world_settings(trusted_proxies=trusted).trusted_proxies
    # aiohttp's own helper for a request without a server; the peer is the proxy on loopback.
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        ("127.0.0.1", 40000) if name == "peername" else default
    )
    request = make_mocked_request(
        "POST", "/wecom/callback", headers={"X-Forwarded-For": "203.0.113.9"}, app=app, transport=transport
    )
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("test.access")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    PathOnlyAccessLogger(logger, "").log(request, web.Response(text="success"), 0.001)
    return lines[0]


def test_the_access_line_names_the_client_behind_a_trusted_proxy_and_the_peer_otherwise() -> None:
    assert _access_line(["127.0.0.1"]).startswith("203.0.113.9 ")
    assert _access_line([]).startswith("127.0.0.1 ")


@pytest.mark.parametrize(
    "target",
    [
        b"/13800000001",
        b"/bind/result/13800000001abcdefghijklmnop",
        b"/x/138-0000-0001/y?phone=13800000001",
        b"/%31%33%38%30%30%30%30%30%30%30%31",
        b"/13800000001 \x01junk",  # a request line the parser refuses: aiohttp.server logs its bytes
    ],
)
async def test_a_phone_a_client_puts_in_a_url_reaches_the_log_masked(
    aiohttp_server: Callable[..., Awaitable[TestServer]], target: bytes
) -> None:
    lines: list[str] = []
    phone_heard = asyncio.Event()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))
            if any(shape in lines[-1] for shape in ("138****0001", "13800000001", "138-0000-0001")):
                phone_heard.set()

    # The service's handler, as configure_logging sets it up.
    handler = Keep()
    handler.setFormatter(TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(ClientTextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    # Another test of the run may have set the levels (the CLI's configure_logging): INFO here.
    aiohttp_loggers = [logging.getLogger(name) for name in ("aiohttp.access", "aiohttp.server")]
    levels = [logger.level for logger in aiohttp_loggers]
    for logger in aiohttp_loggers:
        logger.setLevel(logging.INFO)
    try:
        app = create_app(world_settings(), run_workers=False)
        server = await aiohttp_server(app, access_log_class=PathOnlyAccessLogger)
        answer = await raw_request(server.port or 0, b"GET", target)
        assert answer.status in (302, 400, 404)
        # The access line is written just after the answer (the logging runs on the loop's thread).
        await asyncio.wait_for(phone_heard.wait(), 10)
    finally:
        root.removeHandler(handler)
        for logger, level in zip(aiohttp_loggers, levels, strict=True):
            logger.setLevel(level)
    written = "\n".join(lines)
    assert "138****0001" in written
    assert "13800000001" not in written
    assert "138-0000-0001" not in written


@pytest.mark.parametrize(
    ("target", "headers", "what"),
    [
        (b"/13800000001 \x01junk", [], "Bad status line"),  # a request line the parser refuses
        (b"/bind", [(b"X-Phone\x01", b"13800000001")], "Invalid header"),
        (b"/bind", [(b"X-Long", b"1" * 9000)], "Got more than"),  # a header past aiohttp's limit
        (b"/bind", [(b"Transfer-Encoding", b"chunked, gzip")], "encoding"),
    ],
)
async def test_a_malformed_request_is_one_warning_line_without_a_traceback(
    aiohttp_server: Callable[..., Awaitable[TestServer]], target: bytes, headers: list[tuple[bytes, bytes]],
    what: str,
) -> None:
    records: list[logging.LogRecord] = []
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ClientTextFilter())
    loggers = [logging.getLogger(name) for name in ("aiohttp.server", "aiohttp.access")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
    loggers[0].addFilter(MALFORMED_REQUESTS)  # as configure_logging does
    try:
        app = create_app(world_settings(), run_workers=False)
        server = await aiohttp_server(app, access_log_class=PathOnlyAccessLogger)
        answer = await raw_request(server.port or 0, b"GET", target, headers=headers)
        assert answer.status == 400
        for _ in range(100):  # bounded: the lines are written as the answer goes
            if len(records) >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        loggers[0].removeFilter(MALFORMED_REQUESTS)
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
    # One line of the server's, and the access line (which a refused request used to break).
    assert sorted(record.name for record in records) == ["aiohttp.access", "aiohttp.server"]
    [record] = [record for record in records if record.name == "aiohttp.server"]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    line = lines[records.index(record)]
    assert "Traceback" not in line
    assert "\n" not in line
    message = json.loads(line)["message"]
    assert message.startswith("malformed request from 127.0.0.1 (400, ")
    assert what.lower() in message.lower()
    assert "13800000001" not in "".join(lines)
    [access] = [json.loads(line) for line in lines if json.loads(line)["logger"] == "aiohttp.access"]
    assert access["status"] == 400
    assert access["message"].startswith("127.0.0.1 ")


def test_a_json_line_keeps_the_traceback_that_the_client_text_filter_masked() -> None:
    logger = logging.getLogger("aiohttp.web")
    try:
        raise ValueError("bad path /13800000001")
    except ValueError as exc:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (),
                                   (type(exc), exc, exc.__traceback__))
    ClientTextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert "/138****0001" in line["exception"]
    assert "13800000001" not in line["exception"]


def test_an_error_that_is_not_the_parsers_keeps_its_level_and_traceback() -> None:
    logger = logging.getLogger("aiohttp.server")
    try:
        raise RuntimeError("a handler's bug")
    except RuntimeError as exc:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "Error handling request from %s",
                                   ("127.0.0.1",), (type(exc), exc, exc.__traceback__))
    assert MALFORMED_REQUESTS.filter(record)
    assert (record.levelno, record.getMessage()) == (logging.ERROR, "Error handling request from 127.0.0.1")
    assert record.exc_info is not None


def test_mask_phones_masks_phone_shaped_runs_only() -> None:
    assert mask_phones("/13800000001/x") == "/138****0001/x"
    assert mask_phones("/138 0000 0001") == "/138****0001"
    assert mask_phones("/1380000000123") == "/1380000000123"  # a longer run of digits: not a phone
    assert mask_phones("/12800000001") == "/12800000001"
