"""Counters and gauges for /metrics, in Prometheus' text format; no client library needed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping


class Metrics:
    """Named counters with optional labels, rendered as Prometheus text."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._help: dict[str, str] = {}

    def describe(self, name: str, help_text: str) -> None:
        """Give a metric its HELP line."""
        self._help[name] = help_text

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        key = tuple(sorted(labels.items()))
        series = self._counters[name]
        series[key] = series.get(key, 0.0) + amount

    def value(self, name: str, **labels: str) -> float:
        """The current value of a counter (0 when never incremented)."""
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self, gauges: Mapping[str, float] | None = None) -> str:
        """The Prometheus text exposition of every counter, and of the gauges given."""
        lines: list[str] = []
        for name in sorted(self._counters):
            if name in self._help:
                lines.append(f"# HELP {name} {self._help[name]}")
            lines.append(f"# TYPE {name} counter")
            for labels, value in sorted(self._counters[name].items()):
                lines.append(f"{name}{_labels(labels)} {value:g}")
        for name, value in sorted((gauges or {}).items()):
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {value:g}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
