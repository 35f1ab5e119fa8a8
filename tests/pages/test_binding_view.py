"""How /me and the phone page show a binding: a claim whose lease ran out shows what it leaves behind."""

from __future__ import annotations

from callback_service.web.pages.views import _binding_view
from handlers.core.binding import Binding, BindingState
from handlers.core.phone import Phone

NOW = 1_750_000_000.0
OLD, NEW = Phone("13800000001"), Phone("13800000002")


def _pending(previous: Phone | None, lease: float) -> Binding:
    return Binding("2021001", NEW, BindingState.PENDING, None, lease, previous, NOW - 10)


def test_a_live_claim_shows_pending_with_its_phone_masked() -> None:
    view = _binding_view(_pending(OLD, NOW + 60), NOW)
    assert (view.state, view.phone_masked) == ("pending", "138****0002")


def test_an_expired_claim_shows_the_phone_it_leaves_bound_or_none() -> None:
    kept = _binding_view(_pending(OLD, NOW - 1), NOW)
    assert (kept.state, kept.phone_masked) == ("bound", "138****0001")
    nothing = _binding_view(_pending(None, NOW - 1), NOW)
    assert (nothing.state, nothing.phone_masked) == ("none", None)
