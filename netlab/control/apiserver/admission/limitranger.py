"""LimitRanger: a new pod's containers get the default requests and limits of their namespace's
LimitRanges (type Container), recorded in the `kubernetes.io/limit-ranger` annotation; then a pod
whose containers (type Container) or sum (type Pod) fall outside min/max, or exceed
maxLimitRequestRatio, is refused with upstream's 403 and words. PersistentVolumeClaims are held to
the type PersistentVolumeClaim's min/max storage."""

from __future__ import annotations

from fractions import Fraction

from netlab.api import quantity
from netlab.api.resources import Resource
from netlab.control.apiserver.errors import APIError
from netlab.control.apiserver.store import Store, key

ANNOTATION = "kubernetes.io/limit-ranger"


def forbidden(r: Resource, name: str, problems: list[str]) -> APIError:
    text = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
    return APIError(403, "Forbidden", f'{r.plural} "{name}" is forbidden: {text}', {"name": name, "kind": r.plural})


def _q(value) -> Fraction | None:
    try:
        return quantity.parse(value)
    except ValueError:
        return None


def min_problem(kind: str, res: str, enforced: str, req: dict, lim: dict) -> str | None:
    e = quantity.parse(enforced)
    if res not in req:
        return f"minimum {res} usage per {kind} is {quantity.canonical(enforced)}.  No request is specified"
    if (_q(req[res]) or 0) < e:
        return f"minimum {res} usage per {kind} is {quantity.canonical(enforced)}, but request is {req[res]}"
    if res in lim and (_q(lim[res]) or 0) < e:
        return f"minimum {res} usage per {kind} is {quantity.canonical(enforced)}, but limit is {lim[res]}"
    return None


def max_problem(kind: str, res: str, enforced: str, req: dict, lim: dict) -> str | None:
    e = quantity.parse(enforced)
    if res not in lim:
        return f"maximum {res} usage per {kind} is {quantity.canonical(enforced)}.  No limit is specified"
    if (_q(lim[res]) or 0) > e:
        return f"maximum {res} usage per {kind} is {quantity.canonical(enforced)}, but limit is {lim[res]}"
    if res in req and (_q(req[res]) or 0) > e:
        return f"maximum {res} usage per {kind} is {quantity.canonical(enforced)}, but request is {req[res]}"
    return None


def ratio_problem(kind: str, res: str, enforced: str, req: dict, lim: dict) -> str | None:
    e = quantity.parse(enforced)
    if res not in lim or not _q(lim[res]):
        return None
    if res not in req or not _q(req[res]):
        return f"{res} max limit to request ratio per {kind} is {quantity.canonical(enforced)}, but no request " \
               "is specified or request is 0"
    ratio = _q(lim[res]) / _q(req[res])
    if ratio > e:
        shown = f"{float(ratio):.6f}".rstrip("0").rstrip(".")
        return f"{res} max limit to request ratio per {kind} is {quantity.canonical(enforced)}, but provided ratio " \
               f"is {shown}"
    return None


def item_problems(kind: str, item: dict, req: dict, lim: dict) -> list[str]:
    out = []
    for field, check in (("min", min_problem), ("max", max_problem), ("maxLimitRequestRatio", ratio_problem)):
        for res, enforced in sorted((item.get(field) or {}).items()):
            if (p := check(kind, res, enforced, req, lim)) is not None:
                out.append(p)
    return out


def pod_sum(spec: dict, part: str) -> dict:
    """A pod's requests or limits as the Pod type counts them: its containers' sum, or its largest
    init container's where larger."""
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        for k, val in ((c.get("resources") or {}).get(part) or {}).items():
            total[k] = total.get(k, 0) + (_q(val) or 0)
    for c in spec.get("initContainers") or []:
        for k, val in ((c.get("resources") or {}).get(part) or {}).items():
            total[k] = max(total.get(k, 0), _q(val) or 0)
    return {k: quantity.format(val, k not in ("cpu",)) for k, val in total.items()}


class Plugin:
    def __init__(self, store: Store):
        self.store = store

    def ranges(self, namespace: str) -> list[dict]:
        items, _ = self.store.list(key("limitranges", namespace))
        return sorted(items, key=lambda lr: lr["metadata"]["name"])

    def admit(self, r: Resource, obj: dict) -> None:
        if r.group or r.plural != "pods":
            return
        spec = obj.get("spec") or {}
        notes = []
        for lr in self.ranges(obj["metadata"]["namespace"]):
            for item in (lr.get("spec") or {}).get("limits") or []:
                if item.get("type") != "Container":
                    continue
                for field in ("initContainers", "containers"):
                    for c in spec.get(field) or []:
                        res = c.setdefault("resources", {})
                        set_req = [k for k in (item.get("defaultRequest") or {}) if k not in (res.get("requests") or {})]
                        set_lim = [k for k in (item.get("default") or {}) if k not in (res.get("limits") or {})]
                        for k in set_req:
                            res.setdefault("requests", {})[k] = item["defaultRequest"][k]
                        for k in set_lim:
                            res.setdefault("limits", {})[k] = item["default"][k]
                        if set_req and set_lim:
                            notes.append(f"{', '.join(set_req)} request for {_kind(field)} {c.get('name')}; "
                                         f"{', '.join(set_lim)} limit for {_kind(field)} {c.get('name')}")
                        elif set_req:
                            notes.append(f"{', '.join(set_req)} request for {_kind(field)} {c.get('name')}")
                        elif set_lim:
                            notes.append(f"{', '.join(set_lim)} limit for {_kind(field)} {c.get('name')}")
        if notes:
            obj["metadata"].setdefault("annotations", {})[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)

    def validate(self, r: Resource, obj: dict) -> None:
        if r.group or r.plural not in ("pods", "persistentvolumeclaims"):
            return
        problems: list[str] = []
        spec = obj.get("spec") or {}
        for lr in self.ranges(obj["metadata"]["namespace"]):
            for item in (lr.get("spec") or {}).get("limits") or []:
                kind = item.get("type")
                if r.plural == "pods" and kind == "Container":
                    for field in ("initContainers", "containers"):
                        for c in spec.get(field) or []:
                            res = c.get("resources") or {}
                            problems += item_problems(kind, item, res.get("requests") or {}, res.get("limits") or {})
                elif r.plural == "pods" and kind == "Pod":
                    problems += item_problems(kind, item, pod_sum(spec, "requests"), pod_sum(spec, "limits"))
                elif r.plural == "persistentvolumeclaims" and kind == "PersistentVolumeClaim":
                    res = spec.get("resources") or {}
                    requests = res.get("requests") or {}
                    for res_name, enforced in sorted((item.get("min") or {}).items()):
                        if res_name in requests and (_q(requests[res_name]) or 0) < quantity.parse(enforced):
                            problems.append(f"minimum {res_name} usage per {kind} is {quantity.canonical(enforced)}, "
                                            f"but request is {requests[res_name]}")
                    for res_name, enforced in sorted((item.get("max") or {}).items()):
                        if res_name in requests and (_q(requests[res_name]) or 0) > quantity.parse(enforced):
                            problems.append(f"maximum {res_name} usage per {kind} is {quantity.canonical(enforced)}, "
                                            f"but request is {requests[res_name]}")
        if problems:
            raise forbidden(r, obj["metadata"].get("name", ""), problems)


def _kind(field: str) -> str:
    return "init container" if field == "initContainers" else "container"
