"""The kinds the API server serves: group, version, plural, kind, short names, scope, verbs and
subresources, as upstream's discovery documents list them."""

from __future__ import annotations

from dataclasses import dataclass, field

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    model: str = ""  # the kubernetes Python client's model name, for the schema
    verbs: tuple[str, ...] = tuple(VERBS)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",),
             subresources=("status", "finalize"), model="V1Namespace",
             verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    Resource("", "v1", "nodes", "Node", namespaced=False, short_names=("no",), subresources=("status",),
             model="V1Node"),
    Resource("", "v1", "pods", "Pod", short_names=("po",), subresources=("status", "binding", "log", "exec"),
             categories=("all",), model="V1Pod"),
    Resource("", "v1", "services", "Service", short_names=("svc",), subresources=("status",),
             categories=("all",), model="V1Service",
             verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")),
    Resource("", "v1", "endpoints", "Endpoints", short_names=("ep",), model="V1Endpoints"),
    Resource("", "v1", "configmaps", "ConfigMap", short_names=("cm",), model="V1ConfigMap"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",), model="V1ServiceAccount"),
    Resource("", "v1", "events", "Event", short_names=("ev",), model="CoreV1Event"),
    Resource("", "v1", "bindings", "Binding", model="V1Binding", verbs=("create",)),
    Resource("apps", "v1", "deployments", "Deployment", short_names=("deploy",), subresources=("status", "scale"),
             categories=("all",), model="V1Deployment"),
    Resource("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), subresources=("status", "scale"),
             categories=("all",), model="V1ReplicaSet"),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", model="V1EndpointSlice"),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", model="V1Lease"),
    Resource("events.k8s.io", "v1", "events", "Event", short_names=("ev",), model="EventsV1Event"),
]

BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND = {(r.group_version, r.kind): r for r in RESOURCES}
GROUPS: dict[str, list[str]] = {}
for _r in RESOURCES:
    if _r.group:
        GROUPS.setdefault(_r.group, [])
        if _r.version not in GROUPS[_r.group]:
            GROUPS[_r.group].append(_r.version)


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return BY_PATH.get((group, version, plural))


def storage_key(r: Resource) -> str:
    """Where a kind's objects live in the store: core and events.k8s.io events share one."""
    return "events" if r.kind == "Event" else r.plural


def discovery_list(group: str, version: str) -> dict:
    resources = []
    for r in RESOURCES:
        if (r.group, r.version) != (group, version):
            continue
        resources.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                          "verbs": list(r.verbs), **({"shortNames": list(r.short_names)} if r.short_names else {}),
                          **({"categories": list(r.categories)} if r.categories else {})})
        for sub in r.subresources:
            entry = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced, "kind": r.kind,
                     "verbs": ["get", "patch", "update"]}
            if sub == "scale":
                entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "binding":
                entry.update(kind="Binding", verbs=["create"])
            elif sub == "log":
                entry.update(kind="Pod", verbs=["get"])
            elif sub == "finalize":
                entry.update(verbs=["update"])
            resources.append(entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}


@dataclass
class Selector:
    """A parsed label or field selector: (key, op, values) requirements, all of which must hold."""
    requirements: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)

    def matches(self, get) -> bool:
        for key, op, values in self.requirements:
            have = get(key)
            if op in ("=", "==", "in"):
                if have is None or have not in values:
                    return False
            elif op in ("!=", "notin"):
                if have is not None and have in values:
                    return False
            elif op == "exists":
                if have is None:
                    return False
            elif op == "!":
                if have is not None:
                    return False
        return True


def parse_selector(text: str, field_selector: bool = False) -> Selector:
    """Kubernetes label selector syntax (`a=b,c!=d,e in (x,y),f notin (z),g,!h`); field
    selectors accept only =, == and !=. Raises ValueError with the offending term."""
    sel = Selector()
    if not text:
        return sel
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    for raw in terms:
        term = raw.strip()
        if not term:
            raise ValueError(f"invalid selector: {text!r}")
        for op in ("!=", "==", "="):
            if op in term:
                k, v = term.split(op, 1)
                sel.requirements.append((k.strip(), op, (v.strip(),)))
                break
        else:
            if field_selector:
                raise ValueError(f"invalid field selector: {term!r}: expected key=value or key!=value")
            parts = term.split(None, 1)
            if len(parts) == 2 and parts[1].startswith(("in ", "in(", "notin ", "notin(")):
                op, rest = parts[1].split("(", 1) if "(" in parts[1] else (parts[1], "")
                values = tuple(v.strip() for v in rest.rstrip(")").split(",") if v.strip())
                sel.requirements.append((parts[0], op.strip(), values))
            elif term.startswith("!"):
                sel.requirements.append((term[1:].strip(), "!", ()))
            elif " " not in term:
                sel.requirements.append((term, "exists", ()))
            else:
                raise ValueError(f"invalid label selector term: {term!r}")
    return sel


def field_value(obj: dict, path: str) -> str | None:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None if path not in ("spec.nodeName", "status.phase") else ""
        cur = cur[part]
    return cur if isinstance(cur, str) else (None if cur is None else str(cur).lower() if isinstance(cur, bool)
                                            else str(cur))
