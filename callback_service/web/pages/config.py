"""The tunables of the students' pages, with the defaults production runs on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from handlers.usecases.binding_flow import DEFAULT_LEASE


@dataclass(frozen=True, slots=True)
class PagesConfig:
    """Session lifetime, submit rate limits, how long results are kept, and 院系 → department ids.

    departments maps a directory 院系 name to its WeCom department id, for members created on
    binding; a name it lacks lands in the root department.
    """

    session_ttl: float = 30 * 60.0
    # How long a session's data outlives its login: a phone typed into an expired form waits this long.
    session_keep: float = 24 * 3600.0
    # How long a login started at /bind may take to come back from CAS.
    login_window: float = 10 * 60.0
    submit_window: float = 10 * 60.0
    submits_per_student: int = 10
    # A campus NAT puts hundreds of students behind one address.
    submits_per_ip: int = 200
    ticket_memory: float = 24 * 3600.0
    result_ttl: float = 24 * 3600.0
    result_wait: float = 3.0
    claim_lease: float = DEFAULT_LEASE
    departments: Mapping[str, int] = field(default_factory=dict)
