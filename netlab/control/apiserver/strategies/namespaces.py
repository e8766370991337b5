"""Namespaces: DNS-label names, the `kubernetes` finalizer and the name label, a deletion that
marks the namespace Terminating (the namespace controller empties it and removes the finalizer),
the system namespaces that may not be deleted, and kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver.errors import APIError
from netlab.control.apiserver.strategies import base
from netlab.kit import clock

SYSTEM = ("default", "kube-system", "kube-public", "kube-node-lease")


class Strategy(base.Strategy):
    field_labels = ("status.phase",)
    name_rule = "label"
    generation = True
    columns = [tables.NAME, tables.col("Status"), tables.AGE]

    def defaults(self, obj: dict) -> None:
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")

    def delete(self, obj: dict, grace: int | None, finalizers: list[str]) -> tuple[str, dict]:
        meta = obj["metadata"]
        if meta["name"] in SYSTEM:
            raise APIError(403, "Forbidden", f'namespaces "{meta["name"]}" is forbidden: this namespace may not be '
                           "deleted")
        if meta.get("deletionTimestamp"):
            return base.KEEP, obj
        meta["deletionTimestamp"] = clock.now()
        obj.setdefault("status", {})["phase"] = "Terminating"
        if finalizers:
            meta["finalizers"] = finalizers
        else:
            meta.pop("finalizers", None)
        return base.UPDATE, obj

    def deletion_done(self, obj: dict) -> bool:
        return super().deletion_done(obj) and not (obj.get("spec") or {}).get("finalizers")

    def row(self, n: dict) -> list[Any]:
        return [n["metadata"]["name"], (n.get("status") or {}).get("phase", ""),
                tables.age(n["metadata"].get("creationTimestamp"))]
