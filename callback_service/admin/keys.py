"""The console's application state, as typed AppKeys beside the package that owns it."""

from __future__ import annotations

from typing import Final

import jinja2
from aiohttp import web

from callback_service.clients.cas import CasClient
from callback_service.web.pages.session import SessionStore

ADMIN_TEMPLATES: Final = web.AppKey("admin_templates", jinja2.Environment)
# Opened when the app starts: the console's own CAS service URL and its own sessions.
ADMIN_CAS: Final = web.AppKey("admin_cas", CasClient)
ADMIN_SESSIONS: Final = web.AppKey("admin_sessions", SessionStore)
