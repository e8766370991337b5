"""What the API server's eviction and the disruption controller share about PodDisruptionBudgets,
as upstream's component-helpers (apps/poddisruptionbudget) and intstr hold it: the
DisruptionAllowed condition, and an int-or-percent scaled to a number of pods."""

from __future__ import annotations

import math
import re
from typing import Any

from netlab.kit import clock

SUFFICIENT, INSUFFICIENT, SYNC_FAILED = "SufficientPods", "InsufficientPods", "SyncFailed"
PERCENT = re.compile(r"^[0-9]+%$")


def set_condition(conditions: list[dict], cond: dict) -> list[dict]:
    """apimeta.SetStatusCondition: the transition time moves only when the status changes."""
    out = [dict(c) for c in conditions or []]
    cur = next((c for c in out if c.get("type") == cond["type"]), None)
    if cur is None:
        out.append({"type": cond["type"], "status": cond["status"],
                    **({"observedGeneration": cond["observedGeneration"]} if cond.get("observedGeneration") else {}),
                    "lastTransitionTime": clock.now(), "reason": cond.get("reason", ""),
                    "message": cond.get("message", "")})
        return out
    if cur.get("status") != cond["status"]:
        cur["status"] = cond["status"]
        cur["lastTransitionTime"] = clock.now()
    cur["reason"], cur["message"] = cond.get("reason", ""), cond.get("message", "")
    if cond.get("observedGeneration"):
        cur["observedGeneration"] = cond["observedGeneration"]
    else:
        cur.pop("observedGeneration", None)
    return out


def disruption_allowed_condition(status: dict) -> list[dict]:
    """The status's conditions with DisruptionAllowed as its disruptionsAllowed says."""
    allowed = status.get("disruptionsAllowed", 0) > 0
    return set_condition(status.get("conditions") or [], {
        "type": "DisruptionAllowed", "status": "True" if allowed else "False",
        "reason": SUFFICIENT if allowed else INSUFFICIENT, "observedGeneration": status.get("observedGeneration", 0)})


def conditions_up_to_date(pdb: dict) -> bool:
    status = pdb.get("status") or {}
    cond = next((c for c in status.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
    if cond is None or status.get("observedGeneration", 0) != pdb["metadata"].get("generation", 1):
        return False
    if cond.get("observedGeneration", 0) != status.get("observedGeneration", 0):
        return False
    if status.get("disruptionsAllowed", 0) > 0:
        return cond.get("status") == "True" and cond.get("reason") == SUFFICIENT
    return cond.get("status") == "False" and cond.get("reason") == INSUFFICIENT


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent; raises ValueError for a string that is no percent."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and PERCENT.match(value):
        n = int(value[:-1]) * total
        return math.ceil(n / 100) if round_up else n // 100
    raise ValueError("invalid value for IntOrString: invalid type: string is not a percentage")
