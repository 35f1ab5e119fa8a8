"""The administrators' console under /admin: the campaign's progress by 院系, who is stuck and why,
one student's record and what to do about it, the lists to chase, and the directory upload.

`setup_admin(app)` adds it to the service when WECOM_BIND_ADMINS lists anyone; otherwise no /admin
route exists and every /admin path is the site's 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web

from callback_service.admin import auth, campaign, views
from callback_service.admin.keys import ADMIN_CAS, ADMIN_SESSIONS, ADMIN_TEMPLATES
from callback_service.compose import CLOCK, HTTP, SETTINGS, cas_client
from callback_service.store import CONSOLE_STORE
from callback_service.web.pages.session import SessionStore

__all__ = ["setup_admin"]


def setup_admin(app: web.Application) -> None:
    """Add the console's routes, templates and resources, when settings name administrators."""
    if not app[SETTINGS].admins:
        return
    templates = aiohttp_jinja2.setup(
        app,
        app_key=ADMIN_TEMPLATES,
        loader=jinja2.PackageLoader("callback_service.admin", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
    )
    # Templates compare to enum members, never to strings (as the students' pages do).
    templates.globals["Stuck"] = campaign.Stuck
    app[views.CAMPAIGN_CACHE] = views.CampaignCache()
    router = app.router
    router.add_get(auth.PREFIX, views.dashboard, name="admin")
    router.add_get(auth.CAS_RETURN_PATH, auth.cas_return, name="admin-cas")
    router.add_post(auth.PREFIX + "/logout", views.logout, name="admin-logout")
    router.add_get(auth.PREFIX + "/stuck", views.stuck, name="admin-stuck")
    router.add_post(auth.PREFIX + "/inbox/{action}", views.inbox_action, name="admin-inbox")
    router.add_post(auth.PREFIX + "/stuck/verify", views.verify_holder, name="admin-verify")
    router.add_get(auth.PREFIX + "/students", views.search, name="admin-search")
    router.add_get(auth.PREFIX + "/students/{member_id}", views.student, name="admin-student")
    router.add_post(auth.PREFIX + "/students/{member_id}/reveal", views.reveal, name="admin-reveal")
    router.add_post(
        auth.PREFIX + "/students/{member_id}/{action}", views.student_action, name="admin-student-action"
    )
    router.add_get(auth.PREFIX + "/export", views.export_page, name="admin-export")
    router.add_get(auth.PREFIX + "/export/chase.csv", views.export_csv, name="admin-export-csv")
    router.add_get(auth.PREFIX + "/directory", views.directory_page, name="admin-directory")
    router.add_post(auth.PREFIX + "/directory", views.directory_upload)
    router.add_post(
        auth.PREFIX + "/directory/confirm", views.directory_confirm, name="admin-directory-confirm"
    )
    # Any other /admin path: CAS for a visitor, 404 for everyone logged in.
    router.add_route("*", auth.PREFIX + "/{tail:.*}", views.elsewhere)
    app.cleanup_ctx.append(_admin_ctx)


async def _admin_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # The console's own service URL, from settings only: tickets for it open no student's session.
    app[ADMIN_CAS] = cas_client(settings, session=app[HTTP], return_path=auth.CAS_RETURN_PATH)
    app[ADMIN_SESSIONS] = SessionStore(
        kv=app[CONSOLE_STORE],
        secret=settings.session_secret.get_secret_value(),
        secure=settings.is_https,
        ttl=auth.IDLE,
        keep=0.0,
        clock=app[CLOCK],
        scope="admin",
        cookie=auth.COOKIE,
        path=auth.PREFIX,
        samesite="Strict",
    )
    yield
