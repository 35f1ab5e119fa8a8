"""Liveness for monitoring."""

from __future__ import annotations

from importlib import metadata

from aiohttp import web


def _version() -> str:
    try:
        return metadata.version("wecom-bind")
    except metadata.PackageNotFoundError:
        return "unknown"


async def health(request: web.Request) -> web.Response:
    """Answer 200 while the process serves requests."""
    return web.json_response({"status": "ok", "service": "wecom-bind", "version": _version()})
