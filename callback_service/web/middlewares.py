"""Turns domain failures into HTTP answers at the edge, never leaking internals."""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from handlers.contracts import StoreUnavailable

log: Final = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer 503 for a store outage and a bare 500 for a bug; the details go to our log only."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except StoreUnavailable:
        log.warning("store unavailable during %s %s", request.method, request.path)
        return web.Response(status=503, text="service temporarily unavailable, please retry")
    except Exception:
        log.exception("unhandled error during %s %s", request.method, request.path)
        return web.Response(status=500, text="internal error")
