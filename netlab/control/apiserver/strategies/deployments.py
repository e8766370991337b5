"""Deployments: the API defaults (rolling update 25%/25%, revision history, progress deadline),
the selector and template validation, a selector that may not change, and kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.api.selectors import format_label_selector
from netlab.control.apiserver import podspec, tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base


class Strategy(base.Strategy):
    generation = True
    columns = [tables.NAME, tables.col("Ready"), tables.col("Up-to-date", "integer"), tables.col("Available", "integer"),
               tables.AGE, tables.col("Containers", priority=1), tables.col("Images", priority=1),
               tables.col("Selector", priority=1)]

    def prepare_create(self, obj: dict) -> None:
        obj["status"] = {}

    def defaults(self, obj: dict) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        podspec.template_defaults(spec)

    def validate(self, obj: dict) -> list[v.FieldError]:
        return podspec.validate_workload(obj.get("spec"))

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        return podspec.immutable_selector(obj, old)

    def row(self, d: dict) -> list[Any]:
        spec, st = d.get("spec") or {}, d.get("status") or {}
        names, images = tables.containers_text((spec.get("template") or {}).get("spec") or {})
        return [d["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
                st.get("updatedReplicas", 0), st.get("availableReplicas", 0),
                tables.age(d["metadata"].get("creationTimestamp")), names, images,
                format_label_selector(spec.get("selector"))]

