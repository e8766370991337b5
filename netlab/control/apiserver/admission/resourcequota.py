"""ResourceQuota admission: a create that would take its namespace past a quota's `hard` is
refused with upstream's 403 (`exceeded quota: <name>, requested: ..., used: ..., limited: ...`),
and a pod that leaves out a compute resource a quota limits with `failed quota: <name>: must
specify ...`. What is used is counted from the store itself (the quota controller writes the same
count into status.used), so back-to-back creates are each counted."""

from __future__ import annotations

from netlab.api import quantity, quota
from netlab.api.resources import RESOURCES, Resource
from netlab.control.apiserver.errors import APIError
from netlab.control.apiserver.store import Store, key


def forbidden(r: Resource, name: str, message: str) -> APIError:
    return APIError(403, "Forbidden", f'{r.plural} "{name}" is forbidden: {message}', {"name": name, "kind": r.plural})


def missing_compute(pod: dict, hard: dict) -> list[str]:
    """The constrained compute resources some container does not specify: `requests.cpu for: a,b`."""
    out = []
    spec = pod.get("spec") or {}
    for res in sorted(k for k in hard if k in ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory",
                                                  "cpu", "memory")):
        part, _, name = res.rpartition(".")
        part = "limits" if part == "limits" else "requests"
        lacking = [c.get("name", "") for c in spec.get("containers") or []
                   if name not in ((c.get("resources") or {}).get(part) or {})]
        if lacking:
            out.append(f"{res} for: {','.join(lacking)}")
    return out


class Plugin:
    def __init__(self, store: Store):
        self.store = store

    def admit(self, r: Resource, obj: dict) -> None:
        pass

    def used(self, namespace: str, plural: str, group: str) -> dict:
        if not any(x.plural == plural and x.group == group and x.namespaced for x in RESOURCES):
            return {}
        items, _ = self.store.list(key(plural, namespace))
        total: dict = {}
        for o in items:
            total = quota.add(total, quota.usage(plural, group, o))
        return total

    def validate(self, r: Resource, obj: dict) -> None:
        namespace = obj["metadata"].get("namespace")
        if not namespace:
            return
        quotas, _ = self.store.list(key("resourcequotas", namespace))
        if not quotas:
            return
        wanted = quota.usage(r.plural, r.group, obj)
        if not wanted:
            return
        name = obj["metadata"].get("name", "")
        cache: dict = {}
        for q in sorted(quotas, key=lambda q: q["metadata"]["name"]):
            hard = (q.get("spec") or {}).get("hard") or {}
            constrained = {k: v for k, v in hard.items() if quota.resource_kind(k) == (r.plural, r.group)}
            if not constrained:
                continue
            if r.plural == "pods" and not r.group and quota.counted(obj):
                missing = missing_compute(obj, constrained)
                if missing:
                    raise forbidden(r, name, f"failed quota: {q['metadata']['name']}: must specify "
                                    + "; ".join(missing))
            if (r.plural, r.group) not in cache:
                cache[(r.plural, r.group)] = self.used(namespace, r.plural, r.group)
            used = cache[(r.plural, r.group)]
            exceeded = [k for k, limit in constrained.items()
                        if k in wanted and used.get(k, 0) + wanted[k] > quantity.parse(limit)]
            if exceeded:
                req = {k: quota.text(k, wanted[k], constrained[k]) for k in exceeded}
                use = {k: quota.text(k, used.get(k, 0), constrained[k]) for k in exceeded}
                lim = {k: constrained[k] for k in exceeded}
                raise forbidden(r, name, f"exceeded quota: {q['metadata']['name']}, requested: {quota.pretty(req)}, "
                                f"used: {quota.pretty(use)}, limited: {quota.pretty(lim)}")

