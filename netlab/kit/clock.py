"""Time as the API writes it: RFC 3339 in UTC, to the second (metav1.Time) or the microsecond
(metav1.MicroTime, for Leases and events.k8s.io Events)."""

from __future__ import annotations

import datetime

SECONDS = "%Y-%m-%dT%H:%M:%SZ"
MICROS = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def now(offset: float = 0.0) -> str:
    """metav1.Time of now (plus `offset` seconds)."""
    return (utcnow() + datetime.timedelta(seconds=offset)).strftime(SECONDS)


def now_micro() -> str:
    return utcnow().strftime(MICROS)


def parse(ts: str) -> datetime.datetime:
    """A metav1.Time or MicroTime back to an aware datetime."""
    fmt = MICROS if "." in ts else SECONDS
    return datetime.datetime.strptime(ts, fmt).replace(tzinfo=datetime.timezone.utc)


def seconds_since(ts: str) -> float:
    return (utcnow() - parse(ts)).total_seconds()
