"""Every piece of application state, as typed AppKeys declared in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import aiohttp
import jinja2
from aiohttp import web

from callback_service.callbacks.inbox import Inbox
from callback_service.callbacks.receiver import CallbackReceiver
from callback_service.clients.budget import CallBudget
from callback_service.clients.cas import CasClient
from callback_service.clients.wecom import TokenProbe, WeComClient
from callback_service.metrics import Metrics
from config import Settings
from handlers.usecases.binding_flow import BindingFlow
from handlers.usecases.contracts import Store
from handlers.usecases.dispatch import Dispatcher
from handlers.usecases.sms_proof import SmsProof

if TYPE_CHECKING:
    # The pages package imports these keys: its types are named here for the checker only.
    from callback_service.web.pages.config import PagesConfig
    from callback_service.web.pages.session import SessionStore

SETTINGS: Final = web.AppKey("settings", Settings)
CLOCK: Final[web.AppKey[Callable[[], float]]] = web.AppKey("clock")
RECEIVER: Final = web.AppKey("receiver", CallbackReceiver)
# The contacts-sync assistant's event server: set only when its Token and key are.
CONTACTS_RECEIVER: Final = web.AppKey("contacts_receiver", CallbackReceiver)
METRICS: Final = web.AppKey("metrics", Metrics)
# Opened when the app starts, each in its own cleanup_ctx:
STORE: Final[web.AppKey[Store]] = web.AppKey("store")
HTTP: Final = web.AppKey("http", aiohttp.ClientSession)
DISPATCHER: Final = web.AppKey("dispatcher", Dispatcher)
INBOX: Final = web.AppKey("inbox", Inbox)
# WeCom's API with each secret: the app's (messages, OAuth, authsucc) and the contacts-sync one.
WECOM_APP: Final = web.AppKey("wecom_app", WeComClient)
WECOM_CONTACTS: Final = web.AppKey("wecom_contacts", WeComClient)
# This process's budget of calls per WeCom API, shared by both clients (and so by pages and workers).
WECOM_BUDGET: Final = web.AppKey("wecom_budget", CallBudget)
# /ready's question to WeCom with the app's secret, remembered for a minute while it fails.
WECOM_READY: Final = web.AppKey("wecom_ready", TokenProbe)
# The students' pages (callback_service.web.pages): set by setup_pages, the rest opened at start.
PAGES_CONFIG: Final[web.AppKey[PagesConfig]] = web.AppKey("pages_config")
PAGE_TEMPLATES: Final = web.AppKey("page_templates", jinja2.Environment)
SESSIONS: Final[web.AppKey[SessionStore]] = web.AppKey("sessions")
CAS: Final = web.AppKey("cas", CasClient)
BINDING_FLOW: Final = web.AppKey("binding_flow", BindingFlow)
# The SMS proof of a typed phone: set at start only when settings name a provider.
SMS_PROOF: Final = web.AppKey("sms_proof", SmsProof)
# The SMS step's clock when it is not CLOCK: the demo shares its SMS emulator's, which tests move on.
SMS_CLOCK: Final[web.AppKey[Callable[[], float]]] = web.AppKey("sms_clock")
