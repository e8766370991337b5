"""Prometheus metrics for the long-running components, through prometheus_client: one registry per
process (never the library's global one, which also holds the process and platform collectors),
exposed in the text format upstream's components serve (version 0.0.4), without the `_created`
series that client_golang does not write either.

    reg = Registry()
    syncs = reg.histogram("kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds",
                          buckets=exponential_buckets(0.001, 2, 15))
    text = reg.text()

A hot path that must not take a lock per sample (the DNS server's counters) keeps plain numbers
and hands them over in a `collect()` of its own: `reg.register(collector)`, whose samples are
families from `prometheus_client.core` (CounterMetricFamily, HistogramMetricFamily, ...)."""

from __future__ import annotations

import os

os.environ.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "True")  # read when prometheus_client is imported

import prometheus_client  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram  # noqa: E402
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily  # noqa: E402, F401

prometheus_client.disable_created_metrics()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exponential_buckets(start: float, factor: float, count: int) -> list[float]:
    """client_golang's ExponentialBuckets (rounded so that the `le` labels read as upstream's)."""
    return [round(start * factor ** i, 12) for i in range(count)]


class Registry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

    def histogram(self, name: str, help_: str, buckets: list[float], labels: tuple[str, ...] = ()) -> Histogram:
        return Histogram(name, help_, labels, buckets=buckets, registry=self.registry)

    def counter(self, name: str, help_: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, help_, labels, registry=self.registry)

    def gauge(self, name: str, help_: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, help_, labels, registry=self.registry)

    def register(self, collector) -> None:
        self.registry.register(collector)

    def text(self) -> str:
        return prometheus_client.generate_latest(self.registry).decode()
