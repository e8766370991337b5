"""Server-side Tables (meta.k8s.io/v1): the machinery and the cell helpers several kinds share.
Each kind's columns and rows, as upstream's printers give them (so `kubectl get` prints what a
real cluster prints; priority-1 columns only with -o wide), are in its strategy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netlab.kit import clock


def human_duration(seconds: float) -> str:
    """upstream's duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        return f"{h // 24 // 365}y{(h // 24) % 365}d"
    return f"{h // 24 // 365}y"


def age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    return human_duration(clock.seconds_since(ts))


def col(name: str, type_: str = "string", priority: int = 0, fmt: str = "", desc: str = "") -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": desc or name, "priority": priority}


def labels_text(labels: dict | None) -> str:
    """A label map as kubectl prints it (labels.FormatLabels): sorted `k=v`, `<none>` if empty.
    LabelSelectors print with selectors.format_label_selector."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def containers_text(spec: dict) -> tuple[str, str]:
    cs = spec.get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def first_of(items: list[str], limit: int = 3) -> str:
    if not items:
        return "<none>"
    if len(items) <= limit:
        return ",".join(items)
    return ",".join(items[:limit]) + f" + {len(items) - limit} more..."


def name_age_row(o: dict) -> list[Any]:
    return [o["metadata"]["name"], age(o["metadata"].get("creationTimestamp"))]


NAME = col("Name", fmt="name", desc="Name must be unique within a namespace.")
AGE = col("Age", desc="CreationTimestamp is a timestamp representing the server time when this object was created.")


def table(columns: list[dict], row: Callable[[dict], list[Any]], objects: list[dict], resource_version: str,
          include_object: str = "Metadata", headers: bool = True) -> dict:
    rows = []
    for o in objects:
        if include_object == "Object":
            embedded = o
        elif include_object == "None":
            embedded = None
        else:
            embedded = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
        rows.append({"cells": row(o), "object": embedded})
    out = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
           "rows": rows}
    out["columnDefinitions"] = columns if headers else []
    return out
