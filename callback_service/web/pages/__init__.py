"""The students' pages: the guide's steps 1 to 3, its chapter 2 as help, the student's state, and
the admission page of second verification (二次验证) when settings turn it on.

`setup_pages(app)` adds the routes, the templates and the resources the pages open at start: the
CAS client, the sessions and the binding rules (over the store and the WeCom contacts client that
create_app opens before them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web

from callback_service.clients.cas import CasClient
from callback_service.clients.sms import create_sms_sender
from callback_service.web.keys import (
    BINDING_FLOW,
    CAS,
    CLOCK,
    HTTP,
    METRICS,
    PAGE_TEMPLATES,
    PAGES_CONFIG,
    SESSIONS,
    SETTINGS,
    SMS_CLOCK,
    SMS_PROOF,
    STORE,
    WECOM_APP,
    WECOM_CONTACTS,
)
from callback_service.web.pages import admission, sms_views, views
from callback_service.web.pages.config import PagesConfig
from callback_service.web.pages.session import SessionStore
from handlers.usecases import sms_proof
from handlers.usecases.binding_flow import BindingFlow
from handlers.usecases.sms_proof import SmsProof

__all__ = ["PagesConfig", "setup_pages"]

CAS_RETURN_PATH = "/bind/cas"


def setup_pages(app: web.Application, config: PagesConfig | None = None) -> None:
    """Add the students' pages to the app; config may be replaced until the app starts."""
    app[PAGES_CONFIG] = config or PagesConfig(departments=app[SETTINGS].departments)
    aiohttp_jinja2.setup(
        app,
        app_key=PAGE_TEMPLATES,
        loader=jinja2.PackageLoader("callback_service.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        # The templates ship with the package: each is compiled once, not checked on disk at each page.
        auto_reload=False,
    )
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
    if app[SETTINGS].second_verification:
        router.add_get("/wecom/admit", admission.admit, name="admit")
    app.cleanup_ctx.append(_pages_ctx)


async def _pages_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    config = app[PAGES_CONFIG]
    app[CAS] = CasClient(
        session=app[HTTP],
        cas_base_url=settings.cas_base_url,
        # The service URL comes from settings only: never from the Host header or a parameter.
        service_url=settings.public_base_url + CAS_RETURN_PATH,
        validate_path=settings.cas_validate_path,
    )
    app[SESSIONS] = SessionStore(
        kv=app[STORE],
        secret=settings.session_secret.get_secret_value(),
        secure=settings.is_https,
        ttl=config.session_ttl,
        keep=config.session_keep,
        clock=app[CLOCK],
    )
    app[BINDING_FLOW] = BindingFlow(
        store=app[STORE],
        contacts=app[WECOM_CONTACTS],
        reader=app[WECOM_APP],
        holders=app[WECOM_APP],
        departments=config.departments,
        lease=config.claim_lease,
        clock=app[CLOCK],
    )
    sms_clock = app.get(SMS_CLOCK, app[CLOCK])
    sender = create_sms_sender(settings, app[HTTP], clock=sms_clock)
    if sender is not None and settings.sms_code_secret is not None and settings.sms_verify_mode != "never":
        for name, text in sms_proof.COUNTERS.items():
            app[METRICS].describe(name, text)
        app[SMS_PROOF] = SmsProof(
            store=app[STORE],
            sender=sender,
            secret=settings.sms_code_secret.get_secret_value().encode(),
            clock=sms_clock,
            counters=app[METRICS],
        )
    yield
    await app[BINDING_FLOW].close()
