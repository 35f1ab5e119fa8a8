"""The students' pages: the guide's steps 1 to 3, its chapter 2 as help, the student's state, and
the admission page of second verification (二次验证) when settings turn it on.

`setup_pages(app)` adds the routes, the templates and the resources the pages open at start: the
CAS client, the sessions and the binding rules (over the store and the WeCom contacts client that
create_app opens before them).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from typing import Final

import aiohttp_jinja2
import jinja2
from aiohttp import web

from callback_service import compose
from callback_service.clients.budget import WECOM_BUDGET
from callback_service.clients.cas import CAS
from callback_service.clients.wecom import WECOM_APP, WECOM_CONTACTS
from callback_service.compose import (
    BINDING_FLOW,
    CAS_RETURN_PATH,
    CLOCK,
    HTTP,
    SETTINGS,
    SMS_CLOCK,
    SMS_PROOF,
    WeComClients,
)
from callback_service.metrics import METRICS
from callback_service.store import PAGES_STORE
from callback_service.web.pages import admission, sms_views, views
from callback_service.web.pages.config import PAGES_CONFIG, PagesConfig
from callback_service.web.pages.render import PAGE_TEMPLATES
from callback_service.web.pages.session import SESSIONS, SessionStore
from handlers.core.guide import ErrorCode
from handlers.usecases.binding_flow import Standing

__all__ = ["TEMPLATE_ENUMS", "PagesConfig", "setup_pages"]

TEMPLATE_ENUMS: Final[Mapping[str, type[enum.Enum]]] = {
    "ViewState": views.ViewState,
    "PrefillSource": views.PrefillSource,
    "Standing": Standing,
    "ErrorCode": ErrorCode,
}
"""The enums the views pass, as globals of the templates: a page compares a state to a member
(`binding.state == ViewState.BOUND`), never to a string, and tests/pages/test_template_states.py
checks every member a template names."""


def setup_pages(app: web.Application, config: PagesConfig | None = None) -> None:
    """Add the students' pages to the app; config may be replaced until the app starts."""
    settings = app[SETTINGS]
    app[PAGES_CONFIG] = config or PagesConfig(
        departments=settings.departments, submits_per_ip=settings.submits_per_address
    )
    templates = aiohttp_jinja2.setup(
        app,
        app_key=PAGE_TEMPLATES,
        loader=jinja2.PackageLoader("callback_service.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        # The templates ship with the package: each is compiled once, not checked on disk at each page.
        auto_reload=False,
    )
    templates.globals.update(TEMPLATE_ENUMS)
    router = app.router
    router.add_get("/bind", views.bind, name="bind")
    router.add_get(CAS_RETURN_PATH, views.bind_cas, name="bind-cas")
    # CAS single logout POSTs its logoutRequest to the service URL, server to server.
    router.add_post(CAS_RETURN_PATH, views.cas_logout_request)
    router.add_get("/bind/phone", views.bind_phone, name="bind-phone")
    router.add_post("/bind/phone", views.bind_phone_submit)
    router.add_get("/bind/result/{form}", views.bind_result, name="bind-result")
    router.add_get("/bind/code", sms_views.code_page, name="bind-code")
    router.add_post("/bind/code", sms_views.code_submit)
    router.add_post("/bind/code/resend", sms_views.code_resend, name="bind-code-resend")
    router.add_post("/bind/code/change", sms_views.code_change, name="bind-code-change")
    router.add_get("/bind/qr.png", views.bind_qr, name="bind-qr")
    router.add_get("/bind/follow-qr.png", views.follow_qr, name="bind-follow-qr")
    router.add_get("/help", views.help_page, name="help")
    router.add_get("/me", views.me, name="me")
    router.add_post("/logout", views.logout, name="logout")
    router.add_get("/logout", views.logout_page)
    # Without second verification WeCom never sends anyone here: the route does not exist.
    if settings.second_verification:
        router.add_get("/wecom/admit", admission.admit, name="admit")
    app.cleanup_ctx.append(_pages_ctx)


async def _pages_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    config = app[PAGES_CONFIG]
    app[CAS] = compose.cas_client(settings, session=app[HTTP])
    app[SESSIONS] = SessionStore(
        kv=app[PAGES_STORE],
        secret=settings.session_secret.get_secret_value(),
        secure=settings.is_https,
        ttl=config.session_ttl,
        keep=config.session_keep,
        login_window=config.login_window,
        clock=app[CLOCK],
    )
    app[BINDING_FLOW] = compose.binding_flow(
        store=app[PAGES_STORE],
        clients=WeComClients(app=app[WECOM_APP], contacts=app[WECOM_CONTACTS], budget=app[WECOM_BUDGET]),
        departments=config.departments,
        lease=config.claim_lease,
        clock=app[CLOCK],
    )
    sms_clock = app.get(SMS_CLOCK, app[CLOCK])
    proof = compose.sms_proof(
        settings, session=app[HTTP], store=app[PAGES_STORE], metrics=app[METRICS], clock=sms_clock
    )
    if proof is not None:
        app[SMS_PROOF] = proof
    yield
    await app[BINDING_FLOW].close()
