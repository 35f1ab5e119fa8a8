"""The service's metrics on prometheus-client, in a registry of each app's own (tests build many apps)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

CALLBACK_SECONDS: Final = "wecom_bind_callback_ack_seconds"
HANDLER_SECONDS: Final = "wecom_bind_handler_seconds"
PAGE_SECONDS: Final = "wecom_bind_page_seconds"
WECOM_API_SECONDS: Final = "wecom_bind_wecom_api_seconds"

# Seconds: the callback's acknowledgement is a few ms; handlers and WeCom calls take up to WeCom's timeouts.
_FAST_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_HISTOGRAMS: Final = {
    CALLBACK_SECONDS: ("callback POSTs: from the request to the acknowledgement", (), _FAST_BUCKETS),
    HANDLER_SECONDS: ("inbox handlers: one event's handling", ("event",), _SLOW_BUCKETS),
    PAGE_SECONDS: ("pages and other routes: from the request to the answer", ("route",), _FAST_BUCKETS),
    WECOM_API_SECONDS: ("WeCom API calls, by endpoint and errcode (-1: no answer)",
                        ("endpoint", "errcode"), _SLOW_BUCKETS),
}
_GAUGES: Final = {
    "wecom_bind_inbox_pending": "events waiting in the inbox (ready or due to retry)",
    "wecom_bind_inbox_leased": "events a worker holds",
    "wecom_bind_inbox_dead": "dead letters",
    "wecom_bind_inbox_oldest_pending_age_seconds": "the age of the oldest event not yet handled (0: none)",
}


class Metrics:
    """Counters, histograms and scrape-time gauges of one app, rendered as Prometheus text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._help: dict[str, str] = {}
        self._counters: dict[str, Counter] = {}
        self._lock = threading.Lock()
        self._histograms = {
            name: Histogram(_base(name), text, labelnames=labels, buckets=buckets, registry=self.registry)
            for name, (text, labels, buckets) in _HISTOGRAMS.items()
        }
        self._gauges = {name: Gauge(name, text, registry=self.registry) for name, text in _GAUGES.items()}
        # Each histogram's child per label values: prometheus-client checks and locks at each labels().
        self._observers: dict[tuple[object, ...], Histogram] = {}

    def describe(self, name: str, help_text: str) -> None:
        """Give a counter its HELP line (before its first increment)."""
        self._help[name] = help_text

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter; its label names are those of its first increment."""
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counter(name, tuple(sorted(labels)))
        (counter.labels(**labels) if labels else counter).inc(amount)

    def _counter(self, name: str, labelnames: tuple[str, ...]) -> Counter:
        with self._lock:
            counter = self._counters.get(name)
            if counter is None:
                counter = Counter(_base(name, "_total"), self._help.get(name, name), labelnames=labelnames,
                                  registry=self.registry)
                self._counters[name] = counter
            return counter

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """Record a latency in one of the histograms (the *_SECONDS names of this module)."""
        key = (name, *labels.items())
        observer = self._observers.get(key)
        if observer is None:
            histogram = self._histograms[name]
            observer = self._observers[key] = histogram.labels(**labels) if labels else histogram
        observer.observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        """The current value of a counter (0 when never incremented)."""
        sample = self.registry.get_sample_value(name, labels)
        return 0.0 if sample is None else sample

    def render(self, gauges: Mapping[str, float] | None = None) -> str:
        """The Prometheus text exposition, with the scrape-time gauges set to the values given."""
        for name, value in (gauges or {}).items():
            self._gauges[name].set(value)
        return generate_latest(self.registry).decode("utf-8")


def _base(name: str, suffix: str = "") -> str:
    # prometheus-client adds _total to a counter's name itself.
    return name.removesuffix(suffix) if suffix else name


METRICS: Final = web.AppKey("metrics", Metrics)
"""The app's metrics: one registry per app, so that tests and processes never share counters."""
