"""HorizontalPodAutoscalers, autoscaling/v2 and v1: stored as v2 (upstream's storage version),
each version presented as asked; v1's targetCPUUtilizationPercentage is v2's CPU Utilization
metric. v2's defaults (minReplicas 1, a CPU metric at 80% when none is given, the behavior's
policies when a behavior is given), upstream's validation of the replica bounds and the target,
and kubectl's columns."""

from __future__ import annotations

import copy
import json
from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base

V2 = "autoscaling/v2"
V1 = "autoscaling/v1"
# v2 fields v1 cannot carry travel in annotations, as upstream's conversion keeps them
METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
V1_ANNOTATIONS = (METRICS_ANNOTATION, CURRENT_METRICS_ANNOTATION, CONDITIONS_ANNOTATION, BEHAVIOR_ANNOTATION)
DEFAULT_CPU = 80
SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                         {"type": "Percent", "value": 100, "periodSeconds": 15}]}
SCALE_DOWN = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
              "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
METRIC_TYPES = ["ContainerResource", "External", "Object", "Pods", "Resource"]


def _is_cpu_utilization(m: dict) -> bool:
    r = m.get("resource") or {}
    return m.get("type") == "Resource" and r.get("name") == "cpu" and \
        (r.get("target") or {}).get("type") == "Utilization"


def to_v2(obj: dict) -> dict:
    """An autoscaling/v1 object as v2 (what is stored)."""
    o = copy.deepcopy(obj)
    o["apiVersion"] = V2
    spec, status = o.setdefault("spec", {}), o.get("status")
    annotations = o.get("metadata", {}).get("annotations") or {}
    cpu = spec.pop("targetCPUUtilizationPercentage", None)
    metrics = json.loads(annotations.get(METRICS_ANNOTATION, "[]") or "[]")
    if cpu is not None:
        metrics = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": cpu}}}] + [m for m in metrics if not _is_cpu_utilization(m)]
    if metrics:
        spec["metrics"] = metrics
    if BEHAVIOR_ANNOTATION in annotations:
        spec["behavior"] = json.loads(annotations[BEHAVIOR_ANNOTATION])
    if isinstance(status, dict):
        current_cpu = status.pop("currentCPUUtilizationPercentage", None)
        current = json.loads(annotations.get(CURRENT_METRICS_ANNOTATION, "[]") or "[]")
        if current_cpu is not None:
            current = [{"type": "Resource", "resource": {"name": "cpu", "current": {
                "averageUtilization": current_cpu}}}] + current
        if current:
            status["currentMetrics"] = current
        if CONDITIONS_ANNOTATION in annotations:
            status["conditions"] = json.loads(annotations[CONDITIONS_ANNOTATION])
    if annotations:
        for k in V1_ANNOTATIONS:
            annotations.pop(k, None)
        if not annotations:
            o["metadata"].pop("annotations", None)
    return o


def to_v1(obj: dict) -> dict:
    """A stored (v2) object as autoscaling/v1 shows it."""
    o = copy.deepcopy(obj)
    o["apiVersion"] = V1
    spec = o.setdefault("spec", {})
    metrics = spec.pop("metrics", None) or []
    behavior = spec.pop("behavior", None)
    cpu = next((m for m in metrics if _is_cpu_utilization(m)), None)
    others = [m for m in metrics if m is not cpu]
    annotations = {}
    if cpu is not None:
        spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"].get("averageUtilization")
    if others:
        annotations[METRICS_ANNOTATION] = json.dumps(others, separators=(",", ":"))
    if behavior:
        annotations[BEHAVIOR_ANNOTATION] = json.dumps(behavior, separators=(",", ":"))
    status = o.get("status")
    if isinstance(status, dict):
        current = status.pop("currentMetrics", None) or []
        cur_cpu = next((m for m in current if m.get("type") == "Resource" and
                        (m.get("resource") or {}).get("name") == "cpu"), None)
        if cur_cpu and (cur_cpu["resource"].get("current") or {}).get("averageUtilization") is not None:
            status["currentCPUUtilizationPercentage"] = cur_cpu["resource"]["current"]["averageUtilization"]
        rest = [m for m in current if m is not cur_cpu]
        if rest:
            annotations[CURRENT_METRICS_ANNOTATION] = json.dumps(rest, separators=(",", ":"))
        conditions = status.pop("conditions", None)
        if conditions:
            annotations[CONDITIONS_ANNOTATION] = json.dumps(conditions, separators=(",", ":"))
    if annotations:
        o["metadata"]["annotations"] = {**(o["metadata"].get("annotations") or {}), **annotations}
    return o


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("Reference"), tables.col("Targets"), tables.col("MinPods"),
               tables.col("MaxPods", "integer"), tables.col("Replicas", "integer"), tables.AGE]

    def decode(self, obj: dict) -> None:
        if self.resource.version == "v1":
            v2 = to_v2(obj)
            obj.clear()
            obj.update(v2)

    def defaults(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("minReplicas", 1)
        if not spec.get("metrics"):
            spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": DEFAULT_CPU}}}]
        behavior = spec.get("behavior")
        if isinstance(behavior, dict):
            for direction, default in (("scaleUp", SCALE_UP), ("scaleDown", SCALE_DOWN)):
                rules = behavior.setdefault(direction, {})
                for k, val in default.items():
                    if rules.get(k) is None:
                        rules[k] = copy.deepcopy(val)

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec") or {}
        errs = []
        ref = spec.get("scaleTargetRef") or {}
        for k in ("kind", "name"):
            if not ref.get(k):
                errs.append(v.required(f"spec.scaleTargetRef.{k}"))
        lo, hi = spec.get("minReplicas"), spec.get("maxReplicas")
        if isinstance(lo, int) and lo < 1:
            errs.append(v.invalid("spec.minReplicas", lo, "must be greater than or equal to 1"))
        if not isinstance(hi, int) or hi < 1:
            errs.append(v.invalid("spec.maxReplicas", hi if hi is not None else 0, "must be greater than 0"))
        elif isinstance(lo, int) and hi < lo:
            errs.append(v.invalid("spec.maxReplicas", hi, "must be greater than or equal to `minReplicas`"))
        for i, m in enumerate(spec.get("metrics") or []):
            if m.get("type") not in METRIC_TYPES:
                errs.append(v.not_supported(f"spec.metrics[{i}].type", m.get("type"), METRIC_TYPES))
            target = ((m.get("resource") or {}).get("target") or {}) if m.get("type") == "Resource" else {}
            util = target.get("averageUtilization")
            if isinstance(util, int) and util < 1:
                errs.append(v.invalid(f"spec.metrics[{i}].resource.target.averageUtilization", util,
                                      "must be greater than 0"))
        return errs

    def present(self, obj: dict) -> dict:
        return to_v1(obj) if self.resource.version == "v1" else obj

    def row(self, o: dict) -> list[Any]:
        if o.get("apiVersion") == V1:
            o = to_v2(o)
        spec, status = o.get("spec") or {}, o.get("status") or {}
        ref = spec.get("scaleTargetRef") or {}
        lo = spec.get("minReplicas")
        return [o["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}",
                targets(spec.get("metrics") or [], status.get("currentMetrics") or []),
                "<unset>" if lo is None else str(lo), spec.get("maxReplicas", 0), status.get("currentReplicas", 0),
                tables.age(o["metadata"].get("creationTimestamp"))]


def _q(x: Any) -> str:
    return "" if x is None else str(x)


def targets(specs: list[dict], statuses: list[dict]) -> str:
    """upstream's formatHPAMetrics: `cpu: 20%/50%`, at most two, then `+ N more...`."""
    if not specs:
        return "<none>"
    out = []
    for i, m in enumerate(specs):
        t = m.get("type")
        st = statuses[i] if i < len(statuses) else {}
        key = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
               "Object": "object", "External": "external"}.get(t)
        sp, cur = (m.get(key) or {}) if key else {}, (st.get(key) or {}).get("current") if key else None
        target = sp.get("target") or {}
        if t in ("Resource", "ContainerResource"):
            name = sp.get("name", "")
            if target.get("averageValue") is not None:
                current = _q(cur.get("averageValue")) if cur else "<unknown>"
                out.append(f"{name}: {current}/{target['averageValue']}")
            else:
                current = f"{cur['averageUtilization']}%" if cur and cur.get("averageUtilization") is not None \
                    else "<unknown>"
                goal = f"{target['averageUtilization']}%" if target.get("averageUtilization") is not None else "<auto>"
                out.append(f"{name}: {current}/{goal}")
        elif t == "Pods":
            out.append(f"{_q(cur.get('averageValue')) if cur else '<unknown>'}/{_q(target.get('averageValue'))}")
        elif t in ("Object", "External"):
            if target.get("averageValue") is not None:
                current = _q(cur.get("averageValue")) if cur and cur.get("averageValue") is not None else "<unknown>"
                out.append(f"{current}/{target['averageValue']} (avg)")
            else:
                out.append(f"{_q(cur.get('value')) if cur else '<unknown>'}/{_q(target.get('value'))}")
        else:
            out.append("<unknown type>")
    if len(out) > 2:
        return ", ".join(out[:2]) + f" + {len(out) - 2} more..."
    return ", ".join(out)
