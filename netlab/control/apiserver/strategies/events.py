"""Events, core/v1 and events.k8s.io/v1 alike: one storage, each version presented as asked
(the fields both carry converted), creatable in a namespace being deleted, kubectl's columns."""

from __future__ import annotations

import copy
from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver.strategies import base


class Strategy(base.Strategy):
    field_labels = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                    "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                    "reason", "reportingComponent", "source", "type")
    in_terminating_namespace = True
    columns = [tables.col("Last Seen"), tables.col("Type"), tables.col("Reason"), tables.col("Object"),
               tables.col("Message"), tables.col("Subobject", priority=1), tables.col("Source", priority=1),
               tables.col("First Seen", priority=1), tables.col("Count", "integer", priority=1),
               tables.col("Name", priority=1)]

    def present(self, obj: dict) -> dict:
        if obj.get("apiVersion") != self.resource.group_version:
            return convert(obj, self.resource.group_version)
        return obj

    def row(self, e: dict) -> list[Any]:
        obj = e.get("involvedObject") or e.get("regarding") or {}
        last = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
        if last and "." in last:
            last = last.split(".")[0] + "Z"
        source = e.get("source") or {}
        return [tables.age(last), e.get("type", ""), e.get("reason", ""),
                f"{obj.get('kind', '').lower()}/{obj.get('name', '')}", e.get("message") or e.get("note", ""),
                obj.get("fieldPath", ""), ", ".join(x for x in (source.get("component"), source.get("host")) if x),
                tables.age(e.get("firstTimestamp") or last), e.get("count", 1), e["metadata"]["name"]]


def convert(obj: dict, to: str) -> dict:
    """core/v1 Event <-> events.k8s.io/v1 Event (the fields both carry)."""
    o = copy.deepcopy(obj)
    if to == "v1":
        o["apiVersion"] = "v1"
        o.setdefault("involvedObject", o.pop("regarding", {}))
        o.setdefault("message", o.pop("note", ""))
        o.setdefault("source", {"component": o.pop("reportingController", "")})
    else:
        o["apiVersion"] = "events.k8s.io/v1"
        o.setdefault("regarding", o.pop("involvedObject", {}))
        o.setdefault("note", o.pop("message", ""))
        o.setdefault("reportingController", (o.pop("source", {}) or {}).get("component", ""))
    return o
