"""The pages' templates compare states to string literals (Jinja has no enums): each literal must be
a value of the enum the view passes, or a renamed state would silently fall through to the else."""

from __future__ import annotations

import enum
import re
from pathlib import Path

import pytest

from callback_service.web.pages.views import ViewState
from handlers.core.guide import ErrorCode
from handlers.usecases.binding_flow import Standing

TEMPLATES = Path(__file__).resolve().parents[2] / "callback_service" / "web" / "templates" / "pages"

COMPARED: dict[str, type[enum.Enum]] = {
    "binding.state": ViewState,
    "standing": Standing,
    "entry.code": ErrorCode,
}


def _literals(expression: str) -> set[str]:
    pattern = re.compile(r"(?<![\w.])" + re.escape(expression) + r"\s*[!=]=\s*\"([^\"]*)\"")
    return {m for path in TEMPLATES.glob("*.html") for m in pattern.findall(path.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("expression", list(COMPARED))
def test_every_state_a_template_compares_to_is_one_the_view_passes(expression: str) -> None:
    found = _literals(expression)
    assert found, f"no template compares {expression}: the table above is out of date"
    strays = found - {str(member.value) for member in COMPARED[expression]}
    assert not strays, f"{expression} compared to what the view never passes: {sorted(strays)}"
