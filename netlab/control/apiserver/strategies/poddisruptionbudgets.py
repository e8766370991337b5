"""PodDisruptionBudgets (policy/v1): minAvailable or maxUnavailable (an integer or a percent, not
both), the selector, the unhealthy pod eviction policy, a status (written by the disruption
controller and by evictions) that starts at zero, a spec that may change (and then bumps the
generation), and kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base
from netlab.control.pdbhelper import PERCENT

POLICIES = ["AlwaysAllow", "IfHealthyBudget"]
SELECTOR_OPERATORS = ["DoesNotExist", "Exists", "In", "NotIn"]
PERCENT_MESSAGE = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', "
                   "regex used for validation is '[0-9]+%')")


def go_int_or_string(value: Any) -> str:
    """An intstr.IntOrString as Go's %#v prints it in a field error."""
    if isinstance(value, str):
        return f'intstr.IntOrString{{Type:1, IntVal:0, StrVal:"{value}"}}'
    return f'intstr.IntOrString{{Type:0, IntVal:{value}, StrVal:""}}'


def _int_or_percent(value: Any, path: str) -> list[v.FieldError]:
    """ValidatePositiveIntOrPercent and IsNotMoreThan100Percent."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return [v.FieldError(path, "FieldValueInvalid", f"Invalid value: {value}: must be an integer or percentage "
                             "(e.g '5%')")]
    if isinstance(value, int):
        return [] if value >= 0 else [v.invalid(path, value, "must be greater than or equal to 0")]
    if not PERCENT.match(value):
        return [v.FieldError(path, "FieldValueInvalid", f"Invalid value: {go_int_or_string(value)}: {PERCENT_MESSAGE}")]
    if int(value[:-1]) > 100:
        return [v.FieldError(path, "FieldValueInvalid",
                             f"Invalid value: {go_int_or_string(value)}: must not be greater than 100%")]
    return []


def zero_status() -> dict:
    return {"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}


class Strategy(base.Strategy):
    generation = True
    columns = [tables.NAME, tables.col("Min Available", desc="The minimum number of pods that must be available."),
               tables.col("Max Unavailable", desc="The maximum number of pods that may be unavailable."),
               tables.col("Allowed Disruptions", "integer",
                          desc="Calculated number of pods that may be disrupted at this time."), tables.AGE]

    def prepare_create(self, obj: dict) -> None:
        obj["status"] = zero_status()

    def defaults(self, obj: dict) -> None:
        status = obj.setdefault("status", {})
        if isinstance(status, dict):  # the fields the API always has (the Python client requires them)
            for k, val in zero_status().items():
                status.setdefault(k, val)

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = {}
        errs: list[v.FieldError] = []
        low, high = spec.get("minAvailable"), spec.get("maxUnavailable")
        if low is not None and high is not None:
            errs.append(v.FieldError("spec", "FieldValueInvalid", "Invalid value: policy.PodDisruptionBudgetSpec{...}: "
                                     "minAvailable and maxUnavailable cannot be both set"))
        if low is not None:
            errs += _int_or_percent(low, "spec.minAvailable")
        if high is not None:
            errs += _int_or_percent(high, "spec.maxUnavailable")
        for i, e in enumerate((spec.get("selector") or {}).get("matchExpressions") or []):
            p = f"spec.selector.matchExpressions[{i}]"
            op = e.get("operator")
            if op not in SELECTOR_OPERATORS:
                errs.append(v.invalid(f"{p}.operator", op, "not a valid selector operator"))
            elif op in ("In", "NotIn") and not e.get("values"):
                errs.append(v.FieldError(f"{p}.values", "FieldValueRequired",
                                         "Required value: must be specified when `operator` is 'In' or 'NotIn'"))
            elif op in ("Exists", "DoesNotExist") and e.get("values"):
                errs.append(v.forbidden(f"{p}.values", "may not be specified when `operator` is 'Exists' or "
                                        "'DoesNotExist'"))
        errs += v.check_labels((spec.get("selector") or {}).get("matchLabels"), "spec.selector.matchLabels")
        policy = spec.get("unhealthyPodEvictionPolicy")
        if policy is not None and policy not in POLICIES:
            errs.append(v.not_supported("spec.unhealthyPodEvictionPolicy", policy, POLICIES))
        return errs

    def row(self, p: dict) -> list[Any]:
        spec, st = p.get("spec") or {}, p.get("status") or {}
        low, high = spec.get("minAvailable"), spec.get("maxUnavailable")
        return [p["metadata"]["name"], "N/A" if low is None else str(low), "N/A" if high is None else str(high),
                st.get("disruptionsAllowed", 0), tables.age(p["metadata"].get("creationTimestamp"))]
