"""ResourceQuotas: `spec.hard` of valid, non-negative quantities; the status is the quota
controller's (status.hard as the spec has it, status.used counted); kubectl's columns (requests
and limits, each `name: used/hard`)."""

from __future__ import annotations

from typing import Any

from netlab.api import quantity
from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base

SCOPES = ["BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating", "PriorityClass",
          "Terminating"]


def check_resource_list(items: Any, path: str) -> list[v.FieldError]:
    errs = []
    for k, q in (items or {}).items():
        try:
            if quantity.parse(q) < 0:
                errs.append(v.invalid(f"{path}[{k}]", str(q), "must be greater than or equal to 0"))
        except ValueError as e:
            errs.append(v.invalid(f"{path}[{k}]", q, str(e)))
    return errs


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.AGE,
               tables.col("Request", desc="Request represents a minimum amount of cpu/memory that a container may "
                          "consume."),
               tables.col("Limit", desc="Limits control the maximum amount of cpu/memory that a container may use "
                          "independent of contention on the node.")]

    def prepare_create(self, obj: dict) -> None:
        obj["status"] = {}  # the quota controller's, as upstream's PrepareForCreate leaves it

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec") or {}
        errs = check_resource_list(spec.get("hard"), "spec.hard")
        for s in spec.get("scopes") or []:
            if s not in SCOPES:
                errs.append(v.not_supported("spec.scopes", s, SCOPES))
        return errs

    def validate_status(self, obj: dict) -> list[v.FieldError]:
        st = obj.get("status") or {}
        return check_resource_list(st.get("hard"), "status.hard") + check_resource_list(st.get("used"), "status.used")

    def row(self, q: dict) -> list[Any]:
        st = q.get("status") or {}
        hard, used = st.get("hard") or {}, st.get("used") or {}
        requests, limits = [], []
        for r in sorted(hard):
            (limits if r.startswith("limits.") else requests).append(f"{r}: {used.get(r, '0')}/{hard[r]}")
        return [q["metadata"]["name"], tables.age(q["metadata"].get("creationTimestamp")), ", ".join(requests),
                ", ".join(limits)]
