"""ControllerRevisions: the history StatefulSets and DaemonSets keep (a revision number and the
template as a patch in `data`), `data` required and fixed once written, and kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("Controller", desc="Controller of the object"),
               tables.col("Revision", desc="Revision indicates the revision of the state represented by Data."),
               tables.AGE]

    def defaults(self, obj: dict) -> None:
        obj.setdefault("revision", 0)  # not omitted when zero, as upstream's JSON has it

    def validate(self, obj: dict) -> list[v.FieldError]:
        errs = []
        if obj.get("data") is None:
            errs.append(v.FieldError("data", "FieldValueRequired", "Required value: data is mandatory"))
        revision = obj.get("revision", 0)
        if not isinstance(revision, int) or revision < 0:
            errs.append(v.invalid("revision", revision, "must be greater than or equal to 0"))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        if obj.get("data") != old.get("data"):
            return [v.invalid("data", obj.get("data"), "field is immutable")]
        return []

    def row(self, r: dict) -> list[Any]:
        ref = next((o for o in r["metadata"].get("ownerReferences") or [] if o.get("controller")), None)
        controller = "<none>"
        if ref:
            group = ref.get("apiVersion", "").rpartition("/")[0]
            kind = ref.get("kind", "").lower() + (f".{group}" if group else "")
            controller = f"{kind}/{ref.get('name', '')}" if kind else ref.get("name", "")
        return [r["metadata"]["name"], controller, r.get("revision", 0),
                tables.age(r["metadata"].get("creationTimestamp"))]
