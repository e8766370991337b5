"""Label selectors as NetworkPolicy uses them (metav1.LabelSelector): matching and a short text for
rule comments. An empty selector ({}) matches everything; whether a *missing* one means "all" or
"none" depends on where it stands, so callers decide that before asking here."""

from __future__ import annotations

from collections.abc import Mapping

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def matches(selector: Mapping, labels: Mapping[str, str]) -> bool:
    """Whether `labels` satisfy every requirement of `selector`. An unknown operator matches
    nothing, as upstream turns such a selector into an error (and the peer into no pods)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            return False
        if not ok:
            return False
    return True


def describe(selector: Mapping) -> str:
    """kubectl's form (`app=web,tier in (a,b),!legacy`); `{}` for the empty selector (all)."""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), ",".join(expr.get("values") or [])
        terms.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": f"{key}",
                      "DoesNotExist": f"!{key}"}.get(op, f"{key} {op} ({values})"))
    return ",".join(terms) or "{}"
