"""Nodes: kubectl's columns (status from the Ready condition, roles from the role labels)."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver.strategies import base


class Strategy(base.Strategy):
    field_labels = ("spec.unschedulable",)
    columns = [tables.NAME, tables.col("Status"), tables.col("Roles"), tables.AGE, tables.col("Version"),
               tables.col("Internal-IP", priority=1), tables.col("External-IP", priority=1),
               tables.col("OS-Image", priority=1), tables.col("Kernel-Version", priority=1),
               tables.col("Container-Runtime", priority=1)]

    def row(self, n: dict) -> list[Any]:
        st = n.get("status") or {}
        ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
        status = "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"
        if (n.get("spec") or {}).get("unschedulable"):
            status += ",SchedulingDisabled"
        roles = sorted(k.split("/", 1)[1] for k in (n["metadata"].get("labels") or {})
                       if k.startswith("node-role.kubernetes.io/")) or ["<none>"]
        addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
        info = st.get("nodeInfo") or {}
        return [n["metadata"]["name"], status, ",".join(roles), tables.age(n["metadata"].get("creationTimestamp")),
                info.get("kubeletVersion", ""), addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"),
                info.get("osImage", "<unknown>"), info.get("kernelVersion", "<unknown>"),
                info.get("containerRuntimeVersion", "<unknown>")]
