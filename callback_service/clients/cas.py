"""Async client of the university's CAS server: the login redirect and ticket validation."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _safe_fromstring
from yarl import URL

__all__ = [
    "CAS_NAMESPACE",
    "TICKET",
    "CasAuthenticationFailure",
    "CasClient",
    "CasError",
    "CasInvalidRequest",
    "CasInvalidService",
    "CasInvalidTicket",
    "CasPrincipal",
    "CasUnreachable",
    "logout_request_ticket",
    "parse_service_response",
]

CAS_NAMESPACE: Final = "http://www.yale.edu/tp/cas"
TICKET: Final = re.compile(r"[A-Za-z0-9._\-]{1,256}\Z")
"""A ticket as our pages accept it back from CAS; anything else is not looked up."""
# A validation answer is a few hundred bytes; anything near this is not a CAS server talking.
_MAX_RESPONSE_BYTES: Final = 256 * 1024
_SERVICE_RESPONSE: Final = f"{{{CAS_NAMESPACE}}}serviceResponse"
_SUCCESS: Final = f"{{{CAS_NAMESPACE}}}authenticationSuccess"
_FAILURE: Final = f"{{{CAS_NAMESPACE}}}authenticationFailure"
_USER: Final = f"{{{CAS_NAMESPACE}}}user"
_ATTRIBUTES: Final = f"{{{CAS_NAMESPACE}}}attributes"
SAML_PROTOCOL: Final = "urn:oasis:names:tc:SAML:2.0:protocol"
_LOGOUT_REQUEST: Final = f"{{{SAML_PROTOCOL}}}LogoutRequest"
_SESSION_INDEX: Final = f"{{{SAML_PROTOCOL}}}SessionIndex"
# A logoutRequest is a few hundred bytes.
_MAX_LOGOUT_REQUEST: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class CasPrincipal:
    """Who CAS says logged in, with the attributes it released (each possibly multi-valued)."""

    user: str
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))

    def attribute(self, name: str) -> str | None:
        """The first value of an attribute, or None when CAS did not release it."""
        values = self.attributes.get(name)
        return values[0] if values else None


class CasError(Exception):
    """Base of every failure to learn from CAS who logged in."""


class CasAuthenticationFailure(CasError):
    """CAS answered authenticationFailure; carries its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class CasInvalidTicket(CasAuthenticationFailure):
    """INVALID_TICKET: unknown, already used or expired ticket."""


class CasInvalidService(CasAuthenticationFailure):
    """INVALID_SERVICE: the ticket was issued for another service."""


class CasInvalidRequest(CasAuthenticationFailure):
    """INVALID_REQUEST: the ticket or the service was missing."""


class CasUnreachable(CasError):
    """CAS could not be asked, or what it answered was not a CAS validation document."""


_FAILURES_BY_CODE: Final[Mapping[str, type[CasAuthenticationFailure]]] = {
    "INVALID_TICKET": CasInvalidTicket,
    "INVALID_SERVICE": CasInvalidService,
    "INVALID_REQUEST": CasInvalidRequest,
}


class CasClient:
    """Builds the CAS login and logout URLs for one service, and validates its tickets."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        cas_base_url: str,
        service_url: str,
        validate_path: str = "/p3/serviceValidate",
        timeout: float = 5.0,
    ) -> None:
        self._session = session
        # Normalised once, so the query appended later can be passed on already encoded.
        self._base = str(URL(cas_base_url.rstrip("/")))
        self._service_url = service_url
        self._validate_path = "/" + validate_path.lstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def service_url(self) -> str:
        """The service URL that tickets are requested for and validated against (without a state)."""
        return self._service_url

    def service_for(self, state: str | None) -> str:
        """The service URL of one login: the settings' URL with the login's state in its query.

        CAS binds each ticket to the exact service URL it was issued for (CAS protocol 2.5.1), so a
        ticket minted for another login's state does not validate against this one.
        """
        if state is None:
            return self._service_url
        joiner = "&" if "?" in self._service_url else "?"
        return f"{self._service_url}{joiner}{_encode_query({'state': state})}"

    def login_url(self, *, state: str | None = None) -> str:
        """The CAS login page that returns to our service (and the login's state) with a ticket."""
        return f"{self._base}/login?{_encode_query({'service': self.service_for(state)})}"

    def logout_url(self, return_url: str | None = None) -> str:
        """The CAS logout page, offering a way back to return_url if given."""
        if return_url is None:
            return f"{self._base}/logout"
        return f"{self._base}/logout?{_encode_query({'service': return_url})}"

    async def validate(self, ticket: str, *, state: str | None = None) -> CasPrincipal:
        """Validate a service ticket with CAS, server to server, and say who it belongs to; state is
        the login's, so that the service URL sent is the one the ticket was issued for."""
        query = _encode_query({"ticket": ticket, "service": self.service_for(state)})
        url = URL(f"{self._base}{self._validate_path}?{query}", encoded=True)
        try:
            async with self._session.get(url, timeout=self._timeout, allow_redirects=False) as response:
                if response.status != 200:
                    raise CasUnreachable(f"CAS answered HTTP {response.status}")
                body = await _read_bounded(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CasUnreachable(f"CAS could not be reached: {type(exc).__name__}") from exc
        return parse_service_response(body)


def parse_service_response(body: bytes) -> CasPrincipal:
    """Read a CAS 2.0/3.0 serviceResponse document, failing closed on anything doubtful."""
    try:
        root = _safe_fromstring(body, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException) as exc:
        raise CasUnreachable(f"CAS answer is not a safe XML document: {exc}") from exc
    if root.tag != _SERVICE_RESPONSE:
        raise CasUnreachable(f"CAS answer is not a serviceResponse: {root.tag!r}")
    # Failure is looked for first and anywhere: a document that also claims success is a failure.
    failure = next(root.iter(_FAILURE), None)
    if failure is not None:
        code = (failure.get("code") or "").strip()
        message = " ".join((failure.text or "").split())
        raise _FAILURES_BY_CODE.get(code, CasAuthenticationFailure)(code, message)
    successes = root.findall(_SUCCESS)
    if len(successes) != 1 or len(root) != 1:
        raise CasUnreachable("CAS answer holds no single authenticationSuccess")
    success = successes[0]
    users = success.findall(_USER)
    user = (users[0].text or "").strip() if len(users) == 1 else ""
    if not user:
        raise CasUnreachable("CAS authenticationSuccess names no user")
    return CasPrincipal(user=user, attributes=_read_attributes(success.find(_ATTRIBUTES)))


def logout_request_ticket(document: str) -> str | None:
    """The ticket named by a CAS single-logout request (the SessionIndex of a SAML LogoutRequest),
    or None for anything else: malformed, oversized, with a DTD or entities, or not a LogoutRequest."""
    if not document or len(document) > _MAX_LOGOUT_REQUEST:
        return None
    try:
        root = _safe_fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError):
        return None
    if root.tag != _LOGOUT_REQUEST:
        return None
    indexes = root.findall(_SESSION_INDEX)
    if len(indexes) != 1:
        return None
    ticket = (indexes[0].text or "").strip()
    return ticket or None


def _read_attributes(element: ET.Element | None) -> dict[str, tuple[str, ...]]:
    values: dict[str, list[str]] = {}
    if element is not None:
        for child in element:
            name = child.tag.rpartition("}")[2]
            values.setdefault(name, []).append((child.text or "").strip())
    return {name: tuple(found) for name, found in values.items()}


def _encode_query(params: Mapping[str, str]) -> str:
    # Every reserved character is escaped, so the service URL comes back exactly as given.
    return urlencode(params, safe="", quote_via=quote)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > _MAX_RESPONSE_BYTES:
            raise CasUnreachable("CAS answer is too large")
        chunks.append(chunk)
    return b"".join(chunks)


CAS: Final = web.AppKey("cas", CasClient)
"""The CAS client of the students' pages."""
