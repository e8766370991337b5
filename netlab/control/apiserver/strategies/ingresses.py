"""Ingresses (networking.k8s.io/v1): validation as upstream's ValidateIngressCreate and
ValidateIngressSpec (either defaultBackend or rules; hosts DNS names or one-label wildcards, not
IPs; every path with a pathType, Exact and Prefix paths absolute and clean; a backend that is a
Service with a port name or number, or a resource), the DefaultIngressClass admission plugin on
create (no ingressClassName and no kubernetes.io/ingress.class annotation: the newest
IngressClass annotated ingressclass.kubernetes.io/is-default-class "true"), and kubectl's columns
NAME CLASS HOSTS ADDRESS PORTS AGE."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.errors import Invalid
from netlab.control.apiserver.store import key
from netlab.control.apiserver.strategies import base

CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
INVALID_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
INVALID_SUFFIXES = ("/..", "/.")
WILDCARD = re.compile(r"^\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def wildcard_msg() -> str:
    return ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must "
            "consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. "
            "'*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]"
            "([-a-z0-9]*[a-z0-9])?)*')")


def check_host(host: str, path: str) -> list[v.FieldError]:
    """A host of a rule or a TLS entry: a DNS subdomain, or `*.` and one."""
    if "*" in host:
        return [] if WILDCARD.match(host) and len(host) <= 253 else [v.invalid(path, host, wildcard_msg())]
    return [] if v.DNS1123_SUBDOMAIN.match(host) and len(host) <= 253 else [v.invalid(path, host, v.subdomain_msg())]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def path_segment(value: str, path: str) -> list[v.FieldError]:
    """upstream's IsPathSegmentName: a name that can be one segment of a URL path."""
    if value in (".", ".."):
        return [v.invalid(path, value, f"may not be '{value}'")]
    return [v.invalid(path, value, f"may not contain '{c}'") for c in ("/", "%") if c in value]


def check_resource_ref(ref: Any, path: str) -> list[v.FieldError]:
    if not isinstance(ref, dict):
        return [v.required(path)]
    errs = []
    if ref.get("apiGroup") and not v.DNS1123_SUBDOMAIN.match(ref["apiGroup"]):
        errs.append(v.invalid(f"{path}.apiGroup", ref["apiGroup"], v.subdomain_msg()))
    for f in ("kind", "name"):
        errs += path_segment(ref[f], f"{path}.{f}") if ref.get(f) else [v.required(f"{path}.{f}")]
    return errs


def check_port_name(name: str, path: str) -> list[v.FieldError]:
    """upstream's IsValidPortName (an IANA service name)."""
    errs = []
    if len(name) > 15:
        errs.append(v.invalid(path, name, "must be no more than 15 characters"))
    if not re.match(r"^[-a-z0-9]+$", name):
        errs.append(v.invalid(path, name, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"))
    elif not re.search(r"[a-z]", name):
        errs.append(v.invalid(path, name, "must contain at least one letter (a-z)"))
    elif "--" in name:
        errs.append(v.invalid(path, name, "must not contain consecutive hyphens"))
    elif name.startswith("-") or name.endswith("-"):
        errs.append(v.invalid(path, name, "must not begin or end with a hyphen"))
    return errs


def check_backend(b: Any, path: str) -> list[v.FieldError]:
    """upstream's validateIngressBackend: a Service (name, and a port name or number) or a resource."""
    b = b if isinstance(b, dict) else {}
    svc, res = b.get("service"), b.get("resource")
    if svc is not None and res is not None:
        return [v.invalid(path, "", "cannot set both resource and service backends")]
    if res is not None:
        return check_resource_ref(res, f"{path}.resource")
    if svc is None:
        return [v.invalid(path, "", "resource or service backend is required")]
    errs = []
    name = svc.get("name")
    if not name:
        errs.append(v.required(f"{path}.service.name"))
    elif len(name) > 63 or not v.DNS1035_LABEL.match(name):
        errs.append(v.invalid(f"{path}.service.name", name, v.dns1035_msg()))
    port = svc.get("port") or {}
    pname, pnum = port.get("name"), port.get("number")
    if pname and pnum:
        errs.append(v.invalid(path, "", "cannot set both port name & port number"))
    elif pname:
        errs += check_port_name(pname, f"{path}.service.port.name")
    elif pnum:
        errs += v.check_port(pnum, f"{path}.service.port.number")
    else:
        errs.append(v.FieldError(path, "FieldValueRequired", "Required value: port name or number is required"))
    return errs


def check_path(p: Any, path: str) -> list[v.FieldError]:
    """upstream's validateHTTPIngressPath."""
    p = p if isinstance(p, dict) else {}
    ptype, value = p.get("pathType"), p.get("path", "")
    if ptype is None:
        return [v.FieldError(f"{path}.pathType", "FieldValueRequired", "Required value: pathType must be specified")]
    errs = []
    if ptype in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.append(v.invalid(f"{path}.path", value, "must be an absolute path"))
        errs += [v.invalid(f"{path}.path", value, f"must not contain '{s}'") for s in INVALID_SEQUENCES if s in value]
        errs += [v.invalid(f"{path}.path", value, f"cannot end with '{s}'") for s in INVALID_SUFFIXES
                 if value.endswith(s)]
    elif ptype == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.append(v.invalid(f"{path}.path", value, "must be an absolute path"))
    else:
        errs.append(v.not_supported(f"{path}.pathType", ptype, PATH_TYPES))
    return errs + check_backend(p.get("backend"), f"{path}.backend")


def validate_spec(spec: Any) -> list[v.FieldError]:
    spec = spec if isinstance(spec, dict) else {}
    errs: list[v.FieldError] = []
    rules = spec.get("rules") or []
    if not rules and spec.get("defaultBackend") is None:
        errs.append(v.invalid("spec", "null", "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        errs += check_backend(spec["defaultBackend"], "spec.defaultBackend")
    for i, rule in enumerate(rules):
        at = f"spec.rules[{i}]"
        host = rule.get("host") or ""
        if host:
            if _is_ip(host):
                errs.append(v.invalid(f"{at}.host", host, "must be a DNS name, not an IP address"))
            errs += check_host(host, f"{at}.host")
        http = rule.get("http")
        if http is not None:
            paths = http.get("paths") or []
            if not paths:
                errs.append(v.required(f"{at}.http.paths"))
            for j, p in enumerate(paths):
                errs += check_path(p, f"{at}.http.paths[{j}]")
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate(tls.get("hosts") or []):
            errs += check_host(host, f"spec.tls[{i}].hosts[{j}]")
        if tls.get("secretName"):
            errs += v.check_name(tls["secretName"], path=f"spec.tls[{i}].secretName")
    if spec.get("ingressClassName") is not None:
        errs += v.check_name(spec["ingressClassName"], path="spec.ingressClassName")
    return errs


def default_class(classes: list[dict]) -> dict | None:
    """The IngressClass the DefaultIngressClass admission plugin gives an Ingress without one: the
    newest of those annotated as default (by creation time, then name)."""
    defaults = [c for c in classes if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"]
    defaults.sort(key=lambda c: c["metadata"]["name"])
    defaults.sort(key=lambda c: c["metadata"].get("creationTimestamp") or "", reverse=True)
    return defaults[0] if defaults else None


class Strategy(base.Strategy):
    generation = True
    columns = [tables.NAME, tables.col("Class"), tables.col("Hosts"), tables.col("Address"), tables.col("Ports"),
               tables.AGE]

    def prepare_create(self, obj: dict) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict) or spec.get("ingressClassName") is not None:
            return
        if CLASS_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {}):
            return
        cls = default_class(self.ctx.store.list(key("ingressclasses"))[0])
        if cls is not None:
            spec["ingressClassName"] = cls["metadata"]["name"]

    def defaults(self, obj: dict) -> None:
        obj.setdefault("status", {}).setdefault("loadBalancer", {})

    def validate(self, obj: dict) -> list[v.FieldError]:
        return validate_spec(obj.get("spec"))

    def allocate(self, obj: dict, old: dict | None = None) -> None:
        """Here only for what upstream checks on create alone (ValidateIngressCreate): the class
        annotation and ingressClassName may not disagree."""
        if old is not None:
            return
        annotation = ((obj.get("metadata") or {}).get("annotations") or {}).get(CLASS_ANNOTATION)
        cls = (obj.get("spec") or {}).get("ingressClassName")
        if annotation is not None and cls is not None and annotation != cls:
            raise Invalid([v.invalid(f"annotations.{CLASS_ANNOTATION}", annotation,
                                     "must match `ingressClassName` when both are specified")])

    def row(self, ing: dict) -> list[Any]:
        spec = ing.get("spec") or {}
        rules = spec.get("rules") or []
        hosts: list[str] = []  # upstream's formatHosts: up to 3, then how many rules more
        more = False
        for r in rules:
            if len(hosts) == 3:
                more = True
            if not more and r.get("host"):
                hosts.append(r["host"])
        text = ",".join(hosts) or "*"
        if more:
            text += f" + {len(rules) - 3} more..."
        lb = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        address = ",".join(i.get("ip") or i.get("hostname") or "" for i in lb)
        return [ing["metadata"]["name"], spec.get("ingressClassName") or "<none>", text, address,
                "80, 443" if spec.get("tls") else "80", tables.age(ing["metadata"].get("creationTimestamp"))]
