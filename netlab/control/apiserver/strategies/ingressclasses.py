"""IngressClasses (networking.k8s.io/v1, cluster-scoped): spec.controller required, at most 250
bytes, a domain-prefixed path, and fixed once set; parameters a reference with kind, name and a
scope (Namespace with a namespace, Cluster without one); kubectl's columns NAME CONTROLLER
PARAMETERS AGE."""

from __future__ import annotations

import re
from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base
from netlab.control.apiserver.strategies.ingresses import path_segment

MAX_CONTROLLER = 250
HTTP_PATH = re.compile(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")


def check_controller(value: Any) -> list[v.FieldError]:
    path = "spec.controller"
    if not value:
        return [v.required(path)]
    errs = []
    if len(value.encode()) > MAX_CONTROLLER:
        errs.append(v.too_long(path, MAX_CONTROLLER))
    host, sep, rest = value.partition("/")
    if not sep or not host or not rest:
        return errs + [v.invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    if not v.DNS1123_SUBDOMAIN.match(host):
        errs.append(v.invalid(path, host, v.subdomain_msg()))
    if not HTTP_PATH.match(rest):
        errs.append(v.invalid(path, rest, "Invalid path, regex used for validation is "
                              "'[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+'"))
    return errs


def check_parameters(p: Any) -> list[v.FieldError]:
    if p is None:
        return []
    at = "spec.parameters"
    errs = []
    if p.get("apiGroup") and not v.DNS1123_SUBDOMAIN.match(p["apiGroup"]):
        errs.append(v.invalid(f"{at}.apiGroup", p["apiGroup"], v.subdomain_msg()))
    for f in ("kind", "name"):
        errs += path_segment(p[f], f"{at}.{f}") if p.get(f) else [v.required(f"{at}.{f}")]
    scope = p.get("scope")
    if scope is None:
        return errs + [v.required(f"{at}.scope")]
    if scope not in ("Cluster", "Namespace"):
        return errs + [v.not_supported(f"{at}.scope", scope, ["Cluster", "Namespace"])]
    if scope == "Namespace":
        if p.get("namespace") is None:
            errs.append(v.FieldError(f"{at}.namespace", "FieldValueRequired",
                                     "Required value: `parameters.scope` is set to 'Namespace'"))
        else:
            errs += v.check_name(p["namespace"], "label", f"{at}.namespace")
    elif p.get("namespace") is not None:
        errs.append(v.forbidden(f"{at}.namespace", "`parameters.scope` is set to 'Cluster'"))
    return errs


class Strategy(base.Strategy):
    generation = True
    columns = [tables.NAME, tables.col("Controller"), tables.col("Parameters"), tables.AGE]

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        return check_controller(spec.get("controller")) + check_parameters(spec.get("parameters"))

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        new_c, old_c = (obj.get("spec") or {}).get("controller"), (old.get("spec") or {}).get("controller")
        if new_c != old_c:
            return [v.invalid("spec.controller", new_c, "field is immutable")]
        return []

    def row(self, c: dict) -> list[Any]:
        spec = c.get("spec") or {}
        p = spec.get("parameters")
        params = "<none>"
        if p:
            params = p.get("kind", "") + (f".{p['apiGroup']}" if p.get("apiGroup") else "") + f"/{p.get('name', '')}"
        return [c["metadata"]["name"], spec.get("controller", ""), params, tables.age(c["metadata"].get("creationTimestamp"))]
