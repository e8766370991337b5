"""Services: the API defaults by type, validation of ports, policies and the load-balancer fields,
a ClusterIP and a loadBalancerClass that may not change, the fields a type change drops, the
ClusterIP, NodePort and health-check node port allocations, and kubectl's columns."""

from __future__ import annotations

import ipaddress
from typing import Any

from netlab.control.apiserver import allocator, tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.store import key
from netlab.control.apiserver.strategies import base


class Strategy(base.Strategy):
    field_labels = ("spec.clusterIP", "spec.type")
    name_rule = "dns1035"
    generation = True
    columns = [tables.NAME, tables.col("Type"), tables.col("Cluster-IP"), tables.col("External-IP"),
               tables.col("Port(s)"), tables.AGE, tables.col("Selector", priority=1)]

    def __init__(self, resource, ctx: base.Context):
        super().__init__(resource, ctx)
        self.allocator = allocator.Allocator(ctx.service_subnet, lambda: ctx.store.list(key("services"))[0])

    def defaults(self, obj: dict) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
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

    def validate(self, obj: dict) -> list[v.FieldError]:
        return _validate(obj.get("spec"))

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        _drop_type_dependent(obj.get("spec"), old.get("spec") or {})
        errs = []
        new_ip, old_ip = (obj.get("spec") or {}).get("clusterIP"), (old.get("spec") or {}).get("clusterIP")
        if old_ip and new_ip != old_ip and obj.get("spec", {}).get("type") != "ExternalName":
            errs.append(v.invalid("spec.clusterIPs[0]", new_ip, "may not change once set"))
        new_cls, old_cls = (obj.get("spec") or {}).get("loadBalancerClass"), (old.get("spec") or {}).get(
            "loadBalancerClass")
        if old_cls and new_cls != old_cls and (obj.get("spec") or {}).get("type") == "LoadBalancer":
            errs.append(v.invalid("spec.loadBalancerClass", new_cls, "may not change once set"))
        return errs

    def allocate(self, obj: dict, old: dict | None = None) -> None:
        self.allocator.allocate(obj, old)

    def row(self, s: dict) -> list[Any]:
        spec = s.get("spec") or {}
        stype = spec.get("type", "ClusterIP")
        ingress = [i.get("ip") or i.get("hostname")
                   for i in ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
        if stype == "ExternalName":
            external = spec.get("externalName", "<none>")
        elif stype == "LoadBalancer":
            external = ",".join(ingress + (spec.get("externalIPs") or [])) or "<pending>"
        else:
            external = ",".join(spec.get("externalIPs") or []) or "<none>"
        ports = ",".join(f"{p['port']}:{p['nodePort']}/{p.get('protocol', 'TCP')}" if p.get("nodePort")
                         else f"{p['port']}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []) or "<none>"
        cluster_ip = spec.get("clusterIP") or ("<none>" if stype == "ExternalName" else "")
        return [s["metadata"]["name"], stype, cluster_ip, external, ports, tables.age(s["metadata"].get("creationTimestamp")),
                tables.labels_text(spec.get("selector"))]


def _validate(spec: Any) -> list[v.FieldError]:
    if not isinstance(spec, dict):
        return [v.required("spec")]
    errs: list[v.FieldError] = []
    types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    stype = spec.get("type", "ClusterIP")
    if stype not in types:
        return [v.not_supported("spec.type", stype, types)]
    if stype == "ExternalName":
        name = spec.get("externalName")
        if not name:
            errs.append(v.required("spec.externalName"))
        else:  # a DNS name, with or without the root's dot
            clean = str(name).removesuffix(".")
            if len(clean) > 253:
                errs.append(v.invalid("spec.externalName", name, "must be no more than 253 characters"))
            if not v.DNS1123_SUBDOMAIN.match(clean):
                errs.append(v.invalid("spec.externalName", name, v.subdomain_msg()))
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
            elif not allocator.NODE_PORT_RANGE[0] <= np <= allocator.NODE_PORT_RANGE[1]:
                errs.append(v.invalid(f"{pp}.nodePort", np, "provided port is not in the valid range. The range of "
                                      f"valid ports is {allocator.NODE_PORT_RANGE[0]}-{allocator.NODE_PORT_RANGE[1]}"))
    if spec.get("sessionAffinity", "None") not in ("None", "ClientIP"):
        errs.append(v.not_supported("spec.sessionAffinity", spec["sessionAffinity"], ["ClientIP", "None"]))
    for field in ("externalTrafficPolicy", "internalTrafficPolicy"):
        if field in spec and spec[field] not in ("Cluster", "Local"):
            errs.append(v.not_supported(f"spec.{field}", spec[field], ["Cluster", "Local"]))
    if "externalTrafficPolicy" in spec and stype == "ClusterIP":
        errs.append(v.invalid("spec.externalTrafficPolicy", spec["externalTrafficPolicy"],
                              "may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
    return errs + _validate_load_balancer(spec, stype)


def _validate_load_balancer(spec: dict, stype: str) -> list[v.FieldError]:
    """The load-balancer fields, as upstream's ValidateService words them."""
    errs: list[v.FieldError] = []
    lb = stype == "LoadBalancer"
    if "allocateLoadBalancerNodePorts" in spec and not lb:
        errs.append(v.forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is "
                                "'LoadBalancer'"))
    cls = spec.get("loadBalancerClass")
    if cls is not None:
        if not lb:
            errs.append(v.forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
        elif not isinstance(cls, str) or not _qualified(cls):
            errs.append(v.invalid("spec.loadBalancerClass", cls, "name part must consist of alphanumeric "
                                  "characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
    ranges = spec.get("loadBalancerSourceRanges")
    if ranges:
        if not lb:
            errs.append(v.forbidden("spec.loadBalancerSourceRanges", "may only be used when `type` is "
                                    "'LoadBalancer'"))
        for r in ranges:
            try:
                ipaddress.ip_network(str(r).strip(), strict=False)
            except ValueError:
                errs.append(v.invalid("spec.LoadBalancerSourceRanges", r, "must be a list of IP ranges. For "
                                      "example, 10.240.0.0/24,10.250.0.0/24 "))
    ip = spec.get("loadBalancerIP")
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            errs.append(v.invalid("spec.loadBalancerIP", ip, "must be a valid IP address"))
    hc = spec.get("healthCheckNodePort")
    if hc and not (lb and spec.get("externalTrafficPolicy") == "Local"):
        errs.append(v.invalid("spec.healthCheckNodePort", hc, "may only be set when `type` is 'LoadBalancer' and "
                              "`externalTrafficPolicy` is 'Local'"))
    elif hc and not allocator.NODE_PORT_RANGE[0] <= hc <= allocator.NODE_PORT_RANGE[1]:
        errs.append(v.invalid("spec.healthCheckNodePort", hc, "provided port is not in the valid range. The range "
                              f"of valid ports is {allocator.NODE_PORT_RANGE[0]}-{allocator.NODE_PORT_RANGE[1]}"))
    return errs


def _qualified(name: str) -> bool:
    """A label key: an optional DNS-subdomain prefix and a name part of at most 63 characters."""
    prefix, _, part = name.rpartition("/")
    if prefix and (len(prefix) > 253 or not v.DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return len(part) <= 63 and bool(v.QUALIFIED_NAME.match(part))


def _drop_type_dependent(spec: dict | None, old: dict) -> None:
    """What a type change leaves behind and the user did not set anew, as upstream's
    dropTypeDependentFields: a Service that stops being a LoadBalancer loses its
    allocateLoadBalancerNodePorts, loadBalancerClass and health-check port; one that stops being
    external loses its externalTrafficPolicy; one whose externalTrafficPolicy leaves Local loses its
    health-check port."""
    if not isinstance(spec, dict):
        return
    if spec.get("externalTrafficPolicy") != "Local" and old.get("externalTrafficPolicy") == "Local" and \
            spec.get("healthCheckNodePort") == old.get("healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)
    if spec.get("type") == old.get("type"):
        return
    new_type = spec.get("type", "ClusterIP")
    if old.get("type") == "LoadBalancer" and new_type != "LoadBalancer":
        for f in ("allocateLoadBalancerNodePorts", "loadBalancerClass", "healthCheckNodePort"):
            if f in spec and spec[f] == old.get(f):
                del spec[f]
    if new_type in ("ClusterIP", "ExternalName") and spec.get("externalTrafficPolicy") == old.get(
            "externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)
