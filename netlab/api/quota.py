"""What a ResourceQuota counts, as upstream's quota evaluators count it: the usage of one object
(a pod's requests and limits, a Service's node ports, a claim's storage, one of anything as
`count/<resource>`), and sums of it. The quota controller (status.used) and the quota admission
(a create that would pass status.hard) share it."""

from __future__ import annotations

from fractions import Fraction

from netlab.api import quantity

# the plural (and group) whose objects a name without `count/` counts
OBJECT_COUNTS = {"pods": "pods", "services": "services", "configmaps": "configmaps", "secrets": "secrets",
                 "persistentvolumeclaims": "persistentvolumeclaims", "replicationcontrollers": "replicationcontrollers",
                 "resourcequotas": "resourcequotas"}
COMPUTE = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu", "memory",
           "requests.ephemeral-storage", "limits.ephemeral-storage", "ephemeral-storage")


def counted(pod: dict) -> bool:
    """A pod counts until it is done (Succeeded or Failed)."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _sum(spec: dict, part: str) -> dict[str, Fraction]:
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        for k, v in ((c.get("resources") or {}).get(part) or {}).items():
            total[k] = total.get(k, 0) + quantity.parse(v)
    for c in spec.get("initContainers") or []:
        for k, v in ((c.get("resources") or {}).get(part) or {}).items():
            total[k] = max(total.get(k, 0), quantity.parse(v))
    for k, v in (spec.get("overhead") or {}).items():
        total[k] = total.get(k, 0) + quantity.parse(v)
    return total


def usage(plural: str, group: str, obj: dict) -> dict[str, Fraction]:
    """The quota resources one object uses."""
    name = f"count/{plural}" + (f".{group}" if group else "")
    out: dict[str, Fraction] = {name: Fraction(1)}
    if group:
        return out
    if plural in OBJECT_COUNTS:
        out[OBJECT_COUNTS[plural]] = Fraction(1)
    if plural == "pods":
        if not counted(obj):
            return {}
        spec = obj.get("spec") or {}
        requests, limits = _sum(spec, "requests"), _sum(spec, "limits")
        for res in ("cpu", "memory", "ephemeral-storage"):
            if res in requests:
                out[f"requests.{res}"] = out[res] = requests[res]
            if res in limits:
                out[f"limits.{res}"] = limits[res]
    elif plural == "services":
        spec = obj.get("spec") or {}
        kind = spec.get("type", "ClusterIP")
        if kind in ("NodePort", "LoadBalancer"):
            out["services.nodeports"] = Fraction(len(spec.get("ports") or []))
        if kind == "LoadBalancer":
            out["services.loadbalancers"] = Fraction(1)
    elif plural == "persistentvolumeclaims":
        spec = obj.get("spec") or {}
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if storage is not None:
            out["requests.storage"] = quantity.parse(storage)
        cls = spec.get("storageClassName")
        if cls:
            out[f"{cls}.storageclass.storage.k8s.io/persistentvolumeclaims"] = Fraction(1)
            if storage is not None:
                out[f"{cls}.storageclass.storage.k8s.io/requests.storage"] = quantity.parse(storage)
    return out


def add(a: dict[str, Fraction], b: dict[str, Fraction]) -> dict[str, Fraction]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def resource_kind(name: str) -> tuple[str, str] | None:
    """The (plural, group) whose objects a quota resource counts; None for none."""
    if name.startswith("count/"):
        plural, _, group = name[len("count/"):].partition(".")
        return plural, group
    if name in COMPUTE:
        return "pods", ""
    if name in OBJECT_COUNTS:
        return OBJECT_COUNTS[name], ""
    if name.startswith("services."):
        return "services", ""
    if name == "requests.storage" or ".storageclass.storage.k8s.io/" in name:
        return "persistentvolumeclaims", ""
    return None


def text(name: str, value: Fraction, hard: str | None = None) -> str:
    """A usage as the quota's status writes it: memory-like resources in binary units when the
    hard limit is written so, cpu in decimal."""
    binary = hard is not None and quantity.is_binary(hard)
    return quantity.format(value, binary)


def pretty(items: dict[str, str]) -> str:
    """upstream's prettyPrint of a resource list: `a=1,b=2`, sorted."""
    return ",".join(f"{k}={v}" for k, v in sorted(items.items()))
