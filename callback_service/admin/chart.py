"""A bar chart of bindings and follows, laid out here and drawn by the template as inline SVG: no
script and no chart library (the CSP forbids both, and campus networks may block a CDN)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from callback_service.admin.campaign import Bar

WIDTH: Final = 720
"""A desktop's chart; a phone's is NARROW wide in the same units, so that its text stays readable."""
NARROW: Final = 360
HEIGHT: Final = 200
_LEFT: Final = 36
_RIGHT: Final = 8
_TOP: Final = 12
_BOTTOM: Final = 28


@dataclass(frozen=True, slots=True)
class Column:
    """One period's two bars (bindings, follows), in the chart's coordinates, and its label."""

    x: float
    width: float
    bind_y: float
    bind_height: float
    follow_y: float
    follow_height: float
    label: str | None
    title: str


@dataclass(frozen=True, slots=True)
class Gridline:
    """A horizontal line of the scale and its value."""

    y: float
    value: int


@dataclass(frozen=True, slots=True)
class Chart:
    """The laid-out chart: its size, columns and scale; empty when nothing happened."""

    width: int
    height: int
    left: int
    baseline: float
    columns: list[Column]
    gridlines: list[Gridline]
    total_bindings: int
    total_follows: int


def lay_out(bars: Sequence[Bar], *, width: int = WIDTH) -> Chart:
    """Scale the bars to a chart `width` units wide: a round top value, a label every few columns."""
    peak = max((max(bar.bindings, bar.follows) for bar in bars), default=0)
    top = _round_up(peak)
    plot_width = width - _LEFT - _RIGHT
    plot_height = HEIGHT - _TOP - _BOTTOM
    baseline = float(_TOP + plot_height)
    slot = plot_width / max(1, len(bars))
    bar_width = max(1.0, slot * 0.4)
    every = max(1, math.ceil(len(bars) / (width // 60)))
    columns = []
    for index, bar in enumerate(bars):
        x = _LEFT + index * slot + slot * 0.1
        bind_height = plot_height * bar.bindings / top
        follow_height = plot_height * bar.follows / top
        columns.append(
            Column(
                x=round(x, 1),
                width=round(bar_width, 1),
                bind_y=round(baseline - bind_height, 1),
                bind_height=round(bind_height, 1),
                follow_y=round(baseline - follow_height, 1),
                follow_height=round(follow_height, 1),
                # Counted back from the latest period, which is always labelled.
                label=bar.label if (len(bars) - 1 - index) % every == 0 else None,
                title=f"{bar.label}：绑定 {bar.bindings}，关注 {bar.follows}",
            )
        )
    gridlines = [
        Gridline(y=round(baseline - plot_height * step / 4, 1), value=top * step // 4) for step in range(5)
    ]
    return Chart(
        width=width,
        height=HEIGHT,
        left=_LEFT,
        baseline=baseline,
        columns=columns,
        gridlines=gridlines,
        total_bindings=sum(bar.bindings for bar in bars),
        total_follows=sum(bar.follows for bar in bars),
    )


def _round_up(peak: int) -> int:
    """A top of the scale at or above peak that divides into four whole steps: 4, 8, 20, 40, 100..."""
    if peak <= 4:
        return 4
    magnitude = int(10 ** (len(str(peak)) - 1))
    for factor in (1, 2, 4, 5, 8, 10):
        top = factor * magnitude
        if top >= peak and top % 4 == 0:
            return top
    return 20 * magnitude
