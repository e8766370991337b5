"""Server-side Tables (meta.k8s.io/v1), with the columns upstream's printers give each kind, so
`kubectl get` prints what a real cluster prints (priority-1 columns only with -o wide)."""

from __future__ import annotations

from typing import Any

from netlab.kit import clock


def human_duration(seconds: float) -> str:
    """upstream's duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        return f"{h // 24 // 365}y{(h // 24) % 365}d"
    return f"{h // 24 // 365}y"


def age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    return human_duration(clock.seconds_since(ts))


def _col(name: str, type_: str = "string", priority: int = 0, fmt: str = "", desc: str = "") -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": desc or name, "priority": priority}


def _selector(sel: dict | None) -> str:
    if not sel:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or sel).items()) if isinstance(v, str)]
    for e in (sel.get("matchExpressions") or []) if "matchLabels" in sel or "matchExpressions" in sel else []:
        parts.append(f"{e['key']} {e['operator'].lower()} ({','.join(e.get('values') or [])})")
    return ",".join(parts) or "<none>"


def _containers(spec: dict) -> tuple[str, str]:
    cs = spec.get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def pod_row(p: dict) -> list[Any]:
    spec, st = p.get("spec") or {}, p.get("status") or {}
    statuses = st.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(c.get("restartCount", 0) for c in statuses)
    reason = st.get("reason") or st.get("phase") or "Pending"
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
    return [p["metadata"]["name"], f"{ready}/{total}", reason, restarts, age(p["metadata"].get("creationTimestamp")),
            st.get("podIP") or "<none>", spec.get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>",
            f"{sum(conds.get(g.get('conditionType')) == 'True' for g in gates)}/{len(gates)}" if gates else "<none>"]


def service_row(s: dict) -> list[Any]:
    spec = s.get("spec") or {}
    stype = spec.get("type", "ClusterIP")
    ingress = [i.get("ip") or i.get("hostname") for i in ((s.get("status") or {}).get("loadBalancer") or {}).get(
        "ingress") or []]
    if stype == "ExternalName":
        external = spec.get("externalName", "<none>")
    elif stype == "LoadBalancer":
        external = ",".join(ingress + (spec.get("externalIPs") or [])) or "<pending>"
    else:
        external = ",".join(spec.get("externalIPs") or []) or "<none>"
    ports = ",".join(f"{p['port']}:{p['nodePort']}/{p.get('protocol', 'TCP')}" if p.get("nodePort")
                     else f"{p['port']}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []) or "<none>"
    cluster_ip = spec.get("clusterIP") or ("<none>" if stype == "ExternalName" else "")
    return [s["metadata"]["name"], stype, cluster_ip, external, ports, age(s["metadata"].get("creationTimestamp")),
            _selector(spec.get("selector"))]


def deployment_row(d: dict) -> list[Any]:
    spec, st = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers((spec.get("template") or {}).get("spec") or {})
    return [d["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), age(d["metadata"].get("creationTimestamp")),
            names, images, _selector(spec.get("selector"))]


def replicaset_row(r: dict) -> list[Any]:
    spec, st = r.get("spec") or {}, r.get("status") or {}
    names, images = _containers((spec.get("template") or {}).get("spec") or {})
    return [r["metadata"]["name"], spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0),
            age(r["metadata"].get("creationTimestamp")), names, images, _selector(spec.get("selector"))]


def _more(items: list[str], limit: int = 3) -> str:
    if not items:
        return "<none>"
    if len(items) <= limit:
        return ",".join(items)
    return ",".join(items[:limit]) + f" + {len(items) - limit} more..."


def endpoints_row(e: dict) -> list[Any]:
    eps = []
    for s in e.get("subsets") or []:
        for a in s.get("addresses") or []:
            for p in s.get("ports") or [{}]:
                eps.append(f"{a['ip']}:{p['port']}" if "port" in p else a["ip"])
    return [e["metadata"]["name"], _more(eps), age(e["metadata"].get("creationTimestamp"))]


def endpointslice_row(e: dict) -> list[Any]:
    ports = ",".join(str(p.get("port", "")) for p in e.get("ports") or []) or "<unset>"
    addrs = [a for ep in e.get("endpoints") or [] for a in ep.get("addresses") or []]
    return [e["metadata"]["name"], e.get("addressType", ""), ports, _more(addrs),
            age(e["metadata"].get("creationTimestamp"))]


def node_row(n: dict) -> list[Any]:
    st = n.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"
    if (n.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (n["metadata"].get("labels") or {})
                   if k.startswith("node-role.kubernetes.io/")) or ["<none>"]
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    info = st.get("nodeInfo") or {}
    return [n["metadata"]["name"], status, ",".join(roles), age(n["metadata"].get("creationTimestamp")),
            info.get("kubeletVersion", ""), addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"),
            info.get("osImage", "<unknown>"), info.get("kernelVersion", "<unknown>"),
            info.get("containerRuntimeVersion", "<unknown>")]


def namespace_row(n: dict) -> list[Any]:
    return [n["metadata"]["name"], (n.get("status") or {}).get("phase", ""), age(n["metadata"].get("creationTimestamp"))]


def event_row(e: dict) -> list[Any]:
    obj = e.get("involvedObject") or e.get("regarding") or {}
    last = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
    if last and "." in last:
        last = last.split(".")[0] + "Z"
    source = e.get("source") or {}
    return [age(last), e.get("type", ""), e.get("reason", ""), f"{obj.get('kind', '').lower()}/{obj.get('name', '')}",
            e.get("message") or e.get("note", ""), obj.get("fieldPath", ""),
            ", ".join(x for x in (source.get("component"), source.get("host")) if x),
            age(e.get("firstTimestamp") or last), e.get("count", 1), e["metadata"]["name"]]


def configmap_row(c: dict) -> list[Any]:
    return [c["metadata"]["name"], len(c.get("data") or {}) + len(c.get("binaryData") or {}),
            age(c["metadata"].get("creationTimestamp"))]


def lease_row(lease: dict) -> list[Any]:
    return [lease["metadata"]["name"], (lease.get("spec") or {}).get("holderIdentity", ""),
            age(lease["metadata"].get("creationTimestamp"))]


def default_row(o: dict) -> list[Any]:
    return [o["metadata"]["name"], age(o["metadata"].get("creationTimestamp"))]


NAME = _col("Name", fmt="name", desc="Name must be unique within a namespace.")
AGE = _col("Age", desc="CreationTimestamp is a timestamp representing the server time when this object was created.")
COLUMNS: dict[str, tuple[list[dict], Any]] = {
    "Pod": ([NAME, _col("Ready"), _col("Status"), _col("Restarts", "string"), AGE, _col("IP", priority=1),
             _col("Node", priority=1), _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)], pod_row),
    "Service": ([NAME, _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), AGE,
                 _col("Selector", priority=1)], service_row),
    "Deployment": ([NAME, _col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"), AGE,
                    _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)],
                   deployment_row),
    "ReplicaSet": ([NAME, _col("Desired", "integer"), _col("Current", "integer"), _col("Ready", "integer"), AGE,
                    _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)],
                   replicaset_row),
    "Endpoints": ([NAME, _col("Endpoints"), AGE], endpoints_row),
    "EndpointSlice": ([NAME, _col("AddressType"), _col("Ports"), _col("Endpoints"), AGE], endpointslice_row),
    "Node": ([NAME, _col("Status"), _col("Roles"), AGE, _col("Version"), _col("Internal-IP", priority=1),
              _col("External-IP", priority=1), _col("OS-Image", priority=1), _col("Kernel-Version", priority=1),
              _col("Container-Runtime", priority=1)], node_row),
    "Namespace": ([NAME, _col("Status"), AGE], namespace_row),
    "Event": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message"),
               _col("Subobject", priority=1), _col("Source", priority=1), _col("First Seen", priority=1),
               _col("Count", "integer", priority=1), _col("Name", priority=1)], event_row),
    "ConfigMap": ([NAME, _col("Data", "integer"), AGE], configmap_row),
    "Lease": ([NAME, _col("Holder"), AGE], lease_row),
}


def table(kind: str, objects: list[dict], resource_version: str, include_object: str = "Metadata",
          headers: bool = True) -> dict:
    columns, row = COLUMNS.get(kind, ([NAME, AGE], default_row))
    rows = []
    for o in objects:
        if include_object == "Object":
            embedded = o
        elif include_object == "None":
            embedded = None
        else:
            embedded = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
        rows.append({"cells": row(o), "object": embedded})
    out = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
           "rows": rows}
    out["columnDefinitions"] = columns if headers else []
    return out
