"""The composition root: the stores, clients and use cases of the service, built from its settings.

`serve` (through the app factory), the CLI's commands, the demo and the benchmarks build what they
need here and nowhere else, so that a new dependency of a use case is wired once. The AppKeys of
what the app keeps for its whole life (the settings, the clock, the HTTP session, the binding flow,
the SMS proof) live here too, beside the code that builds them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from callback_service.callbacks.inbox import Inbox
from callback_service.callbacks.receiver import CallbackReceiver
from callback_service.clients.budget import CallBudget
from callback_service.clients.cas import CasClient
from callback_service.clients.sms import create_sms_sender
from callback_service.clients.wecom import TokenProbe, WeComClient
from callback_service.metrics import WECOM_API_SECONDS, Metrics
from callback_service.store import open_store
from config import Settings
from crypto import WeComCrypto
from handlers.usecases.admission import AdmissionGate, AdmissionWeCom
from handlers.usecases.binding_flow import DEFAULT_LEASE, BindingFlow
from handlers.usecases.callbacks import CallbackHandlers
from handlers.usecases.contacts import ContactsThenApp
from handlers.usecases.contracts import (
    AdmissionStore,
    BindingFlowStore,
    CallbackStore,
    Clock,
    InboxQueue,
    KeyValueStore,
    ProofStore,
    Store,
)
from handlers.usecases.dispatch import Dispatcher
from handlers.usecases.sms_proof import COUNTERS as SMS_COUNTERS
from handlers.usecases.sms_proof import SmsProof

SETTINGS: Final = web.AppKey("settings", Settings)
CLOCK: Final[web.AppKey[Clock]] = web.AppKey("clock")
HTTP: Final = web.AppKey("http", aiohttp.ClientSession)
"""The app's one HTTP session, shared by its WeCom and CAS clients; opened at start."""
BINDING_FLOW: Final = web.AppKey("binding_flow", BindingFlow)
"""The binding flow of the students' pages; opened at start."""
SMS_PROOF: Final = web.AppKey("sms_proof", SmsProof)
"""The SMS proof of a typed phone: set at start only when settings name a provider."""
SMS_CLOCK: Final[web.AppKey[Clock]] = web.AppKey("sms_clock")
"""The SMS step's clock when it is not CLOCK: the demo shares its SMS emulator's, which tests move on."""

HTTP_TIMEOUT: Final = aiohttp.ClientTimeout(total=10, connect=5)
# The CLI's commands read whole member lists (reconcile): a longer total than a page's call.
COMMAND_HTTP_TIMEOUT: Final = aiohttp.ClientTimeout(total=30, connect=5)
CAS_RETURN_PATH: Final = "/bind/cas"
"""Where CAS sends the student back with a ticket: the service URL of every login."""


async def open_settings_store(settings: Settings, *, clock: Clock = time.time) -> Store:
    """Open the store that the settings name (StoreUnavailable when it cannot be reached)."""
    return await open_store(
        settings.store_url.get_secret_value(), clock=clock, allow_volatile=settings.redis_allow_volatile
    )


def http_session(timeout: aiohttp.ClientTimeout = HTTP_TIMEOUT) -> aiohttp.ClientSession:
    """A new HTTP session for the clients of WeCom and CAS (the caller closes it)."""
    return aiohttp.ClientSession(timeout=timeout)


@dataclass(frozen=True, slots=True)
class WeComClients:
    """WeCom's API with each of the two secrets the service holds."""

    app: WeComClient
    """The app's secret: messages, openids and members' status (never hidden from an app)."""
    contacts: WeComClient
    """The contacts-sync secret: writing members, the OAuth code of 二次验证 and authsucc."""
    budget: CallBudget
    """The calls per WeCom API both clients share (WeCom's limits count calls per API for the
    organisation, whichever secret makes them)."""

    def members(self) -> ContactsThenApp:
        """A member's details: the assistant's view, the app's where the assistant may not read (48009)."""
        return ContactsThenApp(self.contacts, self.app)


def wecom_clients(
    settings: Settings,
    *,
    session: aiohttp.ClientSession,
    store: KeyValueStore,
    clock: Clock = time.time,
    metrics: Metrics | None = None,
) -> WeComClients:
    """The two WeCom clients, their tokens cached in the store, their calls paced by one new budget
    (this process's or this command's share of WeCom's limits); each call timed in metrics if given."""
    observe = _wecom_observer(metrics) if metrics is not None else None
    budget = CallBudget(per_minute=settings.wecom_calls_per_minute, per_hour=settings.wecom_calls_per_hour)

    def client(secret: SecretStr, *, contacts: bool) -> WeComClient:
        return WeComClient(
            contacts=contacts,
            session=session,
            api_base=settings.wecom_api_base,
            corp_id=settings.corp_id,
            secret=secret.get_secret_value(),
            store=store,
            clock=clock,
            observe=observe,
            budget=budget,
        )

    return WeComClients(
        app=client(settings.app_secret, contacts=False),
        contacts=client(settings.contacts_secret, contacts=True),
        budget=budget,
    )


def _wecom_observer(metrics: Metrics) -> Callable[[str, int, float], None]:
    def observe(endpoint: str, errcode: int, seconds: float) -> None:
        metrics.observe(WECOM_API_SECONDS, seconds, endpoint=endpoint, errcode=str(errcode))

    return observe


def token_probe(clients: WeComClients, *, clock: Clock = time.time) -> TokenProbe:
    """/ready's question to WeCom: the app's token, and the contacts-sync one watched beside it."""
    return TokenProbe(clients.app, clock=clock, watched=(clients.contacts,))


def receiver(
    settings: Settings, token: SecretStr, key: SecretStr, *, clock: Clock = time.time
) -> CallbackReceiver:
    """The receiver of one callback server, with its own Token and EncodingAESKey."""
    return CallbackReceiver(
        crypto=WeComCrypto(
            token=token.get_secret_value(),
            encoding_aes_key=key.get_secret_value(),
            receive_id=settings.corp_id,
        ),
        corp_id=settings.corp_id,
        timestamp_window=settings.timestamp_window,
        clock=clock,
    )


def contacts_receiver(settings: Settings, *, clock: Clock = time.time) -> CallbackReceiver | None:
    """The contacts-sync assistant's event server's receiver; None without its Token and key."""
    # The assistant pushes change_contact to its own server, with its own Token and key
    # (developer.work.weixin.qq.com/document/path/90970); without them it does not exist.
    if settings.contacts_token is None or settings.contacts_encoding_aes_key is None:
        return None
    return receiver(settings, settings.contacts_token, settings.contacts_encoding_aes_key, clock=clock)


def callback_dispatcher(
    settings: Settings,
    *,
    store: CallbackStore,
    clients: WeComClients,
    metrics: Metrics,
    clock: Clock = time.time,
) -> Dispatcher:
    """The callback handlers' dispatch table."""
    return CallbackHandlers(
        store=store,
        wecom=clients.app,
        counters=metrics,
        agent_id=settings.agent_id,
        # The mobile of a change_contact: the app's view where the assistant may not read (48009).
        members=clients.members(),
        clock=clock,
    ).dispatcher()


def inbox(settings: Settings, *, store: InboxQueue, dispatcher: Dispatcher, metrics: Metrics) -> Inbox:
    """The durable inbox and its workers (not started)."""
    return Inbox(
        store=store,
        dispatcher=dispatcher,
        metrics=metrics,
        workers=settings.workers,
        lease=settings.inbox_lease,
    )


def cas_client(
    settings: Settings, *, session: aiohttp.ClientSession, return_path: str = CAS_RETURN_PATH
) -> CasClient:
    """The CAS client of the students' logins, or with its own return path another front's (the
    console's: tickets for it open no student's session)."""
    return CasClient(
        session=session,
        cas_base_url=settings.cas_base_url,
        # The service URL comes from settings only, never from the Host header or a parameter; each
        # login adds its own state to it (views.bind).
        service_url=settings.public_base_url + return_path,
        validate_path=settings.cas_validate_path,
    )


def binding_flow(
    *,
    store: BindingFlowStore,
    clients: WeComClients,
    departments: Mapping[str, int],
    lease: float = DEFAULT_LEASE,
    clock: Clock = time.time,
) -> BindingFlow:
    """The binding flow: members written with the contacts-sync secret, their status and a phone's
    holder (user/getuserid) read with the app's."""
    return BindingFlow(
        store=store,
        contacts=clients.contacts,
        reader=clients.app,
        holders=clients.app,
        departments=departments,
        lease=lease,
        clock=clock,
    )


def admission_gate(*, store: AdmissionStore, wecom: AdmissionWeCom, metrics: Metrics) -> AdmissionGate:
    """The admission gate of second verification, over the WeCom calls of the mode in use."""
    return AdmissionGate(store=store, wecom=wecom, counters=metrics)


def sms_proof(
    settings: Settings,
    *,
    session: aiohttp.ClientSession,
    store: ProofStore,
    metrics: Metrics,
    clock: Clock = time.time,
) -> SmsProof | None:
    """The SMS proof of a typed phone over the provider the settings name; None without one (or with
    WECOM_BIND_SMS_VERIFY=never). Its counters are described on the metrics."""
    sender = create_sms_sender(settings, session, clock=clock)
    if sender is None or settings.sms_code_secret is None or settings.sms_verify_mode == "never":
        return None
    for name, text in SMS_COUNTERS.items():
        metrics.describe(name, text)
    return SmsProof(
        store=store,
        sender=sender,
        secret=settings.sms_code_secret.get_secret_value().encode(),
        clock=clock,
        counters=metrics,
    )
