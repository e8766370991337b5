"""Pods: the pod spec's defaults and validation, the little an update may change, the initial
status and QoS class, graceful deletion through the kubelet, and kubectl's columns."""

from __future__ import annotations

import copy
from typing import Any

from netlab.control.apiserver import podspec, tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base
from netlab.kit import clock

TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]


class Strategy(base.Strategy):
    field_labels = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                    "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName")
    generation = True
    columns = [tables.NAME, tables.col("Ready"), tables.col("Status"), tables.col("Restarts", "string"), tables.AGE,
               tables.col("IP", priority=1), tables.col("Node", priority=1), tables.col("Nominated Node", priority=1),
               tables.col("Readiness Gates", priority=1)]

    def prepare_create(self, obj: dict) -> None:
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", podspec.qos_class(obj.get("spec") or {}))

    def defaults(self, obj: dict) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        podspec.defaults(spec)
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            res = c.get("resources") if isinstance(c, dict) else None
            if isinstance(res, dict) and isinstance(res.get("limits"), dict):
                # a limit without a request is the request too, as upstream's SetDefaults_Pod
                for k, q in res["limits"].items():
                    res.setdefault("requests", {}).setdefault(k, q)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("priority", 0)
        spec.setdefault("tolerations", copy.deepcopy(TOLERATIONS))

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [v.required("spec")]
        return podspec.validate(spec, "spec")

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        old_gates = [g.get("name") for g in (old.get("spec") or {}).get("schedulingGates") or []]
        for g in (obj.get("spec") or {}).get("schedulingGates") or []:
            if g.get("name") not in old_gates:  # gates may only be removed, as upstream allows
                return [v.forbidden("spec.schedulingGates",
                                    f"only deletion is allowed, but found new scheduling gate '{g.get('name')}'")]
        if _mutable_view(obj.get("spec") or {}) != _mutable_view(old.get("spec") or {}):
            return [v.forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,"
                                "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                                "(only additions to existing tolerations),"
                                "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                                "previously negative)")]
        return []

    def delete(self, obj: dict, grace: int | None, finalizers: list[str]) -> tuple[str, dict]:
        """A pod on a node is deleted gracefully: marked here, the kubelet stops it and then
        deletes it with grace 0."""
        spec, meta = obj.get("spec") or {}, obj["metadata"]
        if not spec.get("nodeName"):
            return super().delete(obj, grace, finalizers)
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        current = meta.get("deletionGracePeriodSeconds")
        if grace > 0 and (current is None or grace < current):
            meta["deletionTimestamp"] = clock.now(grace)
            meta["deletionGracePeriodSeconds"] = grace
            return base.UPDATE, obj
        if grace > 0:
            return base.KEEP, obj
        if finalizers:  # stopped (grace 0), but kept until its finalizers are gone, as upstream
            if meta.get("deletionGracePeriodSeconds") == 0 and meta.get("finalizers") == finalizers:
                return base.KEEP, obj
            meta.setdefault("deletionTimestamp", clock.now())
            meta["deletionGracePeriodSeconds"] = 0
            meta["finalizers"] = finalizers
            return base.UPDATE, obj
        return super().delete(obj, grace, finalizers)

    def deletion_done(self, obj: dict) -> bool:
        """A pod on a node goes once its kubelet has stopped it (grace 0) and no finalizer holds it."""
        meta = obj["metadata"]
        return super().deletion_done(obj) and (not (obj.get("spec") or {}).get("nodeName")
                                               or meta.get("deletionGracePeriodSeconds") == 0)

    def row(self, p: dict) -> list[Any]:
        spec, st = p.get("spec") or {}, p.get("status") or {}
        statuses = st.get("containerStatuses") or []
        total = len(spec.get("containers") or [])
        ready = sum(1 for c in statuses if c.get("ready"))
        restarts = sum(c.get("restartCount", 0) for c in statuses)
        reason = st.get("reason") or st.get("phase") or "Pending"
        if any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
               for c in st.get("conditions") or []):
            reason = "SchedulingGated"
        init = st.get("initContainerStatuses") or []
        for i, c in enumerate(init):
            s = c.get("state") or {}
            if s.get("terminated", {}).get("exitCode", 0) != 0:
                reason = f"Init:{s['terminated'].get('reason') or 'Error'}"
                break
            if s.get("waiting", {}).get("reason") not in (None, "PodInitializing"):
                reason = f"Init:{s['waiting']['reason']}"
                break
            if not s.get("terminated"):
                reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
                break
        else:
            for c in reversed(statuses):
                s = c.get("state") or {}
                if s.get("waiting", {}).get("reason"):
                    reason = s["waiting"]["reason"]
                elif s.get("terminated", {}).get("reason"):
                    reason = s["terminated"]["reason"]
                elif s.get("terminated"):
                    reason = f"ExitCode:{s['terminated'].get('exitCode')}"
        if p["metadata"].get("deletionTimestamp"):
            reason = "Terminating"
        gates = spec.get("readinessGates") or []
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        return [p["metadata"]["name"], f"{ready}/{total}", reason, restarts,
                tables.age(p["metadata"].get("creationTimestamp")), st.get("podIP") or "<none>",
                spec.get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>",
                f"{sum(conds.get(g.get('conditionType')) == 'True' for g in gates)}/{len(gates)}" if gates else "<none>"]


def _mutable_view(spec: dict) -> dict:
    """The spec without what an update may change."""
    s = copy.deepcopy(spec)
    for field in ("containers", "initContainers"):
        for c in s.get(field) or []:
            c.pop("image", None)
    for field in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "nodeName",
                  "schedulingGates"):
        s.pop(field, None)
    return s
