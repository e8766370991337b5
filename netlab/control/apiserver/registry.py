"""What the API server does to each kind on create and update, as upstream's registry strategies
do: metadata it owns, API defaults, validation, what a status update may change, and the
Service IP and NodePort allocators."""

from __future__ import annotations

import copy
import ipaddress
import random
import uuid
from typing import Any

from netlab.api.resources import Resource
from netlab.control.apiserver import validation as v
from netlab.kit import clock

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream's utilrand alphabet (no vowels, no 0/1/3)
NODE_PORT_RANGE = (30000, 32767)
WITH_GENERATION = {"Deployment", "ReplicaSet", "Namespace", "Service", "Pod"}
STATUS_SUBRESOURCE = {"Pod", "Service", "Deployment", "ReplicaSet", "Node", "Namespace"}


class Invalid(Exception):
    def __init__(self, errors: list[v.FieldError]):
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(NAME_ALPHABET) for _ in range(n))


# --- defaults ----------------------------------------------------------------------------------

def default_pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for field in ("initContainers", "containers"):
        for c in spec.get(field) or []:
            if not isinstance(c, dict):
                continue
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            image = str(c.get("image", ""))
            tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
            c.setdefault("imagePullPolicy", "Always" if tag in ("", "latest") else "IfNotPresent")
            c.setdefault("resources", {})
            for p in c.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                pr = c.get(probe)
                if isinstance(pr, dict):
                    pr.setdefault("timeoutSeconds", 1)
                    pr.setdefault("periodSeconds", 10)
                    pr.setdefault("successThreshold", 1)
                    pr.setdefault("failureThreshold", 3)
                    if isinstance(pr.get("httpGet"), dict):
                        pr["httpGet"].setdefault("path", "/")
                        pr["httpGet"].setdefault("scheme", "HTTP")


def default_template(spec: dict) -> None:
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        tmpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        if isinstance(tmpl.get("spec"), dict):
            default_pod_spec(tmpl["spec"])


def defaults(r: Resource, obj: dict) -> None:
    kind, spec = r.kind, obj.get("spec")
    if kind == "Pod" and isinstance(spec, dict):
        default_pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("priority", 0)
        spec.setdefault("tolerations", [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300}])
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec["type"] in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        if spec["type"] == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
        if spec["sessionAffinity"] == "ClientIP":
            spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {}).setdefault("timeoutSeconds", 10800)
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                if spec["type"] != "ExternalName":
                    p.setdefault("targetPort", p.get("port"))
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
    elif kind in ("Deployment", "ReplicaSet") and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                ru = strategy.setdefault("rollingUpdate", {})
                ru.setdefault("maxUnavailable", "25%")
                ru.setdefault("maxSurge", "25%")
        else:
            spec.pop("revisionHistoryLimit")
        default_template(spec)
    elif kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")
    elif kind == "EndpointSlice":
        for p in obj.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
    elif kind == "Endpoints":
        for s in obj.get("subsets") or []:
            for p in s.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


# --- validation --------------------------------------------------------------------------------

def validate(r: Resource, obj: dict, old: dict | None = None) -> None:
    errs: list[v.FieldError] = []
    meta = obj.get("metadata") or {}
    errs += v.check_name(meta.get("name"), r.kind)
    errs += v.check_labels(meta.get("labels"), "metadata.labels")
    spec = obj.get("spec")
    kind = r.kind
    if kind == "Pod":
        if not isinstance(spec, dict):
            errs.append(v.required("spec"))
        else:
            errs += v.check_containers(spec, "spec")
    elif kind in ("Deployment", "ReplicaSet"):
        errs += _validate_workload(spec)
    elif kind == "Service":
        errs += _validate_service(spec)
    elif kind == "EndpointSlice":
        if obj.get("addressType") not in ("IPv4", "IPv6", "FQDN"):
            errs.append(v.not_supported("addressType", obj.get("addressType"), ["FQDN", "IPv4", "IPv6"]))
        for i, ep in enumerate(obj.get("endpoints") or []):
            if not ep.get("addresses"):
                errs.append(v.required(f"endpoints[{i}].addresses"))
    elif kind == "ConfigMap":
        for k in (obj.get("data") or {}):
            if not isinstance(k, str) or not k or len(k) > 253 or not all(ch.isalnum() or ch in "-._" for ch in k):
                errs.append(v.invalid("data", k, "a valid config key must consist of alphanumeric characters, '-', "
                                      "'_' or '.'"))
    if old is not None:
        errs += _immutable(r, obj, old)
    if errs:
        raise Invalid(errs)


def _validate_workload(spec: Any) -> list[v.FieldError]:
    if not isinstance(spec, dict):
        return [v.required("spec")]
    errs: list[v.FieldError] = []
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        errs.append(v.invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    selector = spec.get("selector")
    tmpl = spec.get("template") or {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if not selector:
        errs.append(v.required("spec.selector"))
    elif not (selector.get("matchLabels") or selector.get("matchExpressions")):
        errs.append(v.invalid("spec.selector", selector, "empty selector is invalid for deployment"))
    elif not v.selector_matches(selector, labels):
        errs.append(v.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`"))
    if not isinstance(tmpl.get("spec"), dict):
        errs.append(v.required("spec.template.spec"))
    else:
        errs += v.check_containers(tmpl["spec"], "spec.template.spec")
        policy = tmpl["spec"].get("restartPolicy", "Always")
        if policy != "Always":
            errs.append(v.not_supported("spec.template.spec.restartPolicy", policy, ["Always"]))
    errs += v.check_labels(labels, "spec.template.metadata.labels")
    return errs


def _validate_service(spec: Any) -> list[v.FieldError]:
    if not isinstance(spec, dict):
        return [v.required("spec")]
    errs: list[v.FieldError] = []
    types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    stype = spec.get("type", "ClusterIP")
    if stype not in types:
        return [v.not_supported("spec.type", stype, types)]
    if stype == "ExternalName":
        if not spec.get("externalName"):
            errs.append(v.required("spec.externalName"))
        return errs
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if not ports and not headless:
        errs.append(v.required("spec.ports"))
    names: set[str] = set()
    seen: set[tuple] = set()
    for i, p in enumerate(ports):
        pp = f"spec.ports[{i}]"
        errs += v.check_port(p.get("port"), f"{pp}.port")
        errs += v.check_protocol(p.get("protocol", "TCP"), f"{pp}.protocol")
        if len(ports) > 1 and not p.get("name"):
            errs.append(v.required(f"{pp}.name"))
        name = p.get("name")
        if name:
            if name in names:
                errs.append(v.duplicate(f"{pp}.name", name))
            names.add(name)
        key = (p.get("port"), p.get("protocol", "TCP"))
        if key in seen:
            errs.append(v.duplicate(pp, {"port": key[0], "protocol": key[1]}))
        seen.add(key)
        tp = p.get("targetPort")
        if isinstance(tp, int):
            errs += v.check_port(tp, f"{pp}.targetPort")
        elif isinstance(tp, str) and not (v.IANA_SVC_NAME.match(tp) and any(c.isalpha() for c in tp)):
            errs.append(v.invalid(f"{pp}.targetPort", tp, "must contain only alpha-numeric characters (a-z, 0-9), "
                                  "and hyphens (-)"))
        np = p.get("nodePort")
        if np:
            if stype == "ClusterIP":
                errs.append(v.forbidden(f"{pp}.nodePort", "may not be used when `type` is 'ClusterIP'"))
            elif not NODE_PORT_RANGE[0] <= np <= NODE_PORT_RANGE[1]:
                errs.append(v.invalid(f"{pp}.nodePort", np, "provided port is not in the valid range. The range of "
                                      f"valid ports is {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}"))
    if spec.get("sessionAffinity", "None") not in ("None", "ClientIP"):
        errs.append(v.not_supported("spec.sessionAffinity", spec["sessionAffinity"], ["ClientIP", "None"]))
    for field in ("externalTrafficPolicy", "internalTrafficPolicy"):
        if field in spec and spec[field] not in ("Cluster", "Local"):
            errs.append(v.not_supported(f"spec.{field}", spec[field], ["Cluster", "Local"]))
    if "externalTrafficPolicy" in spec and stype == "ClusterIP":
        errs.append(v.invalid("spec.externalTrafficPolicy", spec["externalTrafficPolicy"],
                              "may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
    return errs


def _immutable(r: Resource, obj: dict, old: dict) -> list[v.FieldError]:
    errs = []
    if r.kind in ("Deployment", "ReplicaSet"):
        if (obj.get("spec") or {}).get("selector") != (old.get("spec") or {}).get("selector"):
            errs.append(v.invalid("spec.selector", (obj.get("spec") or {}).get("selector"), "field is immutable"))
    if r.kind == "Service":
        new_ip, old_ip = (obj.get("spec") or {}).get("clusterIP"), (old.get("spec") or {}).get("clusterIP")
        if old_ip and new_ip != old_ip and obj.get("spec", {}).get("type") != "ExternalName":
            errs.append(v.invalid("spec.clusterIPs[0]", new_ip, "may not change once set"))
    if r.kind == "Pod":
        a, b = _mutable_pod_view(obj.get("spec") or {}), _mutable_pod_view(old.get("spec") or {})
        if a != b:
            errs.append(v.forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,"
                                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                                    "(only additions to existing tolerations),"
                                    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                                    "previously negative)"))
    return errs


def _mutable_pod_view(spec: dict) -> dict:
    s = copy.deepcopy(spec)
    for field in ("containers", "initContainers"):
        for c in s.get(field) or []:
            c.pop("image", None)
    for field in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "nodeName"):
        s.pop(field, None)
    return s


# --- create and update -------------------------------------------------------------------------

def prepare_create(r: Resource, obj: dict, namespace: str | None) -> None:
    meta = obj.setdefault("metadata", {})
    if r.namespaced:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = f"{meta['generateName']}{random_suffix()}"
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = clock.now()
    for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        meta.pop(k, None)
    if r.kind in WITH_GENERATION:
        meta["generation"] = 1
    if r.kind == "Pod":
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", _qos(obj.get("spec") or {}))
    elif r.kind in ("Deployment", "ReplicaSet"):
        obj["status"] = {}
    defaults(r, obj)


def _qos(spec: dict) -> str:
    containers = spec.get("containers") or []
    res = [c.get("resources") or {} for c in containers if isinstance(c, dict)]
    if not any(x.get("limits") or x.get("requests") for x in res):
        return "BestEffort"
    if all(x.get("limits") and x.get("requests", x.get("limits")) == x.get("limits")
           and {"cpu", "memory"} <= set(x["limits"]) for x in res):
        return "Guaranteed"
    return "Burstable"


def prepare_update(r: Resource, new: dict, old: dict, subresource: str | None) -> dict:
    """The object to store: a status update changes only status; a main update keeps the status
    (for kinds with a status subresource) and bumps the generation when the spec changes."""
    meta_old = old["metadata"]
    if subresource == "status":
        out = copy.deepcopy(old)
        out["status"] = new.get("status", {})
        # conditions and the like; labels and annotations may change along with status, as upstream allows
        for k in ("labels", "annotations"):
            if k in (new.get("metadata") or {}):
                out["metadata"][k] = new["metadata"][k]
        return out
    out = copy.deepcopy(new)
    meta = out.setdefault("metadata", {})
    for k in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp", "deletionGracePeriodSeconds",
              "generation"):
        if k in meta_old:
            meta[k] = meta_old[k]
        else:
            meta.pop(k, None)
    if r.kind in STATUS_SUBRESOURCE and "status" in old:
        out["status"] = copy.deepcopy(old["status"])
    defaults(r, out)
    if r.kind in WITH_GENERATION and out.get("spec") != old.get("spec"):
        meta["generation"] = meta_old.get("generation", 1) + 1
    return out


# --- Service allocations -----------------------------------------------------------------------

class Allocator:
    """ClusterIPs from the service subnet and NodePorts from 30000-32767, checked against the
    Services in the store, so allocations survive restarts without a separate bitmap."""

    def __init__(self, service_subnet: str, list_services):
        self.subnet = ipaddress.ip_network(service_subnet)
        self.list_services = list_services

    def _used(self, skip_uid: str | None) -> tuple[set[str], set[int]]:
        ips, ports = set(), set()
        for s in self.list_services():
            if s["metadata"].get("uid") == skip_uid:
                continue
            spec = s.get("spec") or {}
            ips.update(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
            ports.update(p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort"))
        return ips, ports

    def allocate(self, svc: dict, old: dict | None = None) -> None:
        spec = svc["spec"]
        ips, ports = self._used(svc["metadata"].get("uid"))
        errs: list[v.FieldError] = []
        stype = spec.get("type", "ClusterIP")
        if stype == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            return
        ip = spec.get("clusterIP") or ((spec.get("clusterIPs") or [None])[0])
        if old and (old.get("spec") or {}).get("clusterIP") and not ip:
            ip = old["spec"]["clusterIP"]
        if ip == "None":
            spec["clusterIPs"] = ["None"]
        elif ip:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                errs.append(v.invalid("spec.clusterIPs", [ip], "must be a valid IP address"))
                addr = None
            if addr is not None and (old or {}).get("spec", {}).get("clusterIP") != ip:
                if addr not in self.subnet:
                    errs.append(v.invalid("spec.clusterIPs", [ip], f"failed to allocate IP {ip}: the provided IP "
                                          f"({ip}) is not in the valid range. The range of valid IPs is {self.subnet}"))
                elif ip in ips:
                    errs.append(v.invalid("spec.clusterIPs", [ip], f"failed to allocate IP {ip}: provided IP is "
                                          "already allocated"))
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        else:
            free = self._free_ip(ips)
            if free is None:
                errs.append(v.FieldError("spec.clusterIPs", "FieldValueInvalid",
                                         f"failed to allocate a serviceIP: range is full ({self.subnet})"))
            else:
                spec["clusterIP"], spec["clusterIPs"] = free, [free]
        if stype in ("NodePort", "LoadBalancer"):
            old_ports = {(p.get("port"), p.get("protocol")): p.get("nodePort")
                         for p in ((old or {}).get("spec") or {}).get("ports") or []}
            taken = set(ports)
            for i, p in enumerate(spec.get("ports") or []):
                np = p.get("nodePort") or old_ports.get((p.get("port"), p.get("protocol")))
                if np:
                    if np in taken and np != old_ports.get((p.get("port"), p.get("protocol"))):
                        errs.append(v.invalid(f"spec.ports[{i}].nodePort", np, "provided port is already allocated"))
                    p["nodePort"] = np
                else:
                    free = [n for n in range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1) if n not in taken]
                    if not free:
                        errs.append(v.FieldError(f"spec.ports[{i}].nodePort", "FieldValueInvalid",
                                                 "failed to allocate a nodePort: range is full"))
                        continue
                    p["nodePort"] = random.choice(free)
                taken.add(p["nodePort"])
        else:
            for p in spec.get("ports") or []:
                p.pop("nodePort", None)
        if errs:
            raise Invalid(errs)

    def _free_ip(self, used: set[str]) -> str | None:
        first, last = int(self.subnet.network_address) + 1, int(self.subnet.broadcast_address) - 1
        # Dynamic allocations stay out of the lowest addresses, which users pick by hand
        # (10.96.0.1 kubernetes, 10.96.0.10 kube-dns), as upstream reserves a static band.
        lo = first + min(256, (last - first) // 16)
        for _ in range(64):
            cand = str(ipaddress.ip_address(random.randint(lo, last)))
            if cand not in used:
                return cand
        for n in range(lo, last + 1):
            cand = str(ipaddress.ip_address(n))
            if cand not in used:
                return cand
        return None
