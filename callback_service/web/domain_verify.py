"""WeCom's trusted-domain check (可信域名): GET /WW_verify_<code>.txt answers the file's exact content.

Before the admin console accepts the domain of the OAuth and 二次验证 pages, WeCom fetches the file it
handed out from the domain's root. WECOM_BIND_DOMAIN_VERIFY_FILE names it; it is read once at start,
and any other WW_verify_*.txt is not found.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from callback_service.web.keys import SETTINGS
from config.settings import env_name

DOMAIN_VERIFY: Final[web.AppKey[tuple[str, bytes]]] = web.AppKey("domain_verify")
"""(file name, bytes) of the verification file, read at start."""


def setup_domain_verify(app: web.Application) -> None:
    """Serve the verification file when settings name one."""
    if app[SETTINGS].domain_verify_file is None:
        return
    app.router.add_get("/{name:WW_verify_[A-Za-z0-9]{1,64}\\.txt}", verification_file, name="domain-verify")
    app.cleanup_ctx.append(_read_ctx)


async def _read_ctx(app: web.Application) -> AsyncIterator[None]:
    path = app[SETTINGS].domain_verify_file
    if path is None:
        raise RuntimeError("domain verification set up without a file")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise RuntimeError(f"{env_name('domain_verify_file')}: cannot read {path}: {exc.strerror}") from None
    app[DOMAIN_VERIFY] = (path.name, content)
    yield


async def verification_file(request: web.Request) -> web.Response:
    """GET /WW_verify_<code>.txt: the file's exact content, text/plain; another code is not found."""
    name, content = request.app[DOMAIN_VERIFY]
    if request.match_info["name"] != name:
        raise web.HTTPNotFound(text="not found")
    return web.Response(body=content, content_type="text/plain", headers={"Cache-Control": "no-store"})
