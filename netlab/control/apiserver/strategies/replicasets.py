"""ReplicaSets: the API defaults, the selector and template validation, a selector that may not
change, and kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.api.selectors import format_label_selector
from netlab.control.apiserver import podspec, tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base


class Strategy(base.Strategy):
    field_labels = ("status.replicas",)
    generation = True
    columns = [tables.NAME, tables.col("Desired", "integer"), tables.col("Current", "integer"),
               tables.col("Ready", "integer"), tables.AGE, tables.col("Containers", priority=1),
               tables.col("Images", priority=1), tables.col("Selector", priority=1)]

    def prepare_create(self, obj: dict) -> None:
        obj["status"] = {}

    def defaults(self, obj: dict) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("replicas", 1)
        spec.pop("revisionHistoryLimit", None)  # a Deployment's field, not a ReplicaSet's
        podspec.template_defaults(spec)

    def validate(self, obj: dict) -> list[v.FieldError]:
        return podspec.validate_workload(obj.get("spec"))

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        return podspec.immutable_selector(obj, old)

    def row(self, r: dict) -> list[Any]:
        spec, st = r.get("spec") or {}, r.get("status") or {}
        names, images = tables.containers_text((spec.get("template") or {}).get("spec") or {})
        return [r["metadata"]["name"], spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0),
                tables.age(r["metadata"].get("creationTimestamp")), names, images,
                format_label_selector(spec.get("selector"))]
