"""HTTP/1.1 requests written byte for byte on a loopback socket, for bytes that aiohttp's client
refuses to send (a cookie or a header that is not UTF-8, a path with control characters)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# Bounded: a request that the server neither answers nor closes fails the test instead of hanging.
_TIMEOUT: Final = 30.0


@dataclass(frozen=True)
class RawAnswer:
    """The status line's code, the head and the body of an answer."""

    status: int
    head: bytes
    body: bytes


async def raw_request(
    port: int,
    method: bytes,
    target: bytes,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    host: str = "127.0.0.1",
) -> RawAnswer:
    """Send one request as given (Host, Content-Length and Connection: close added) and read the
    whole answer; the server closes the connection after it."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + host.encode() + b":" + str(port).encode()]
    lines += [name + b": " + value for name, value in headers]
    if body or method == b"POST":
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    data = await asyncio.wait_for(exchange(), _TIMEOUT)
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise AssertionError(f"not an HTTP answer: {data[:200]!r}")
    return RawAnswer(status=int(parts[1]), head=head, body=rest)
