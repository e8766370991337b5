"""NetworkPolicies (networking.k8s.io/v1): upstream's defaults (policyTypes inferred, port
protocol TCP), validation (pkg/apis/networking/validation: ports and endPort, peers, ipBlock
and its except, label selectors, policyTypes) with its messages, and kubectl's columns."""

from __future__ import annotations

import ipaddress
from typing import Any

from netlab.api.selectors import format_label_selector
from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base

POLICY_TYPES = ["Ingress", "Egress"]


class Strategy(base.Strategy):
    generation = True
    columns = [tables.NAME, tables.col("Pod-Selector", desc="A label selector to select pods to which the "
                                       "policy applies."), tables.AGE]

    def defaults(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        spec.setdefault("podSelector", {})  # not omitempty upstream: an absent one is the empty one
        if not spec.get("policyTypes"):
            spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
        for direction in ("ingress", "egress"):
            for rule in spec.get(direction) or []:
                for port in (rule.get("ports") or []) if isinstance(rule, dict) else []:
                    if isinstance(port, dict):
                        port.setdefault("protocol", "TCP")

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec") or {}
        errs = label_selector(spec.get("podSelector"), "spec.podSelector")
        for direction, peers in (("ingress", "from"), ("egress", "to")):
            for i, rule in enumerate(spec.get(direction) or []):
                path = f"spec.{direction}[{i}]"
                for j, port in enumerate(rule.get("ports") or []):
                    errs += _port(port, f"{path}.ports[{j}]")
                for j, peer in enumerate(rule.get(peers) or []):
                    errs += _peer(peer, f"{path}.{peers}[{j}]")
        types = spec.get("policyTypes") or []
        if len(types) > len(POLICY_TYPES):
            return errs + [v.invalid("spec.policyTypes", types, "may not specify more than two policyTypes")]
        for i, t in enumerate(types):
            if t not in POLICY_TYPES:
                errs.append(v.not_supported(f"spec.policyTypes[{i}]", t, POLICY_TYPES))
        return errs

    def row(self, obj: dict) -> list[Any]:
        return [obj["metadata"]["name"], format_label_selector((obj.get("spec") or {}).get("podSelector")),
                tables.age(obj["metadata"].get("creationTimestamp"))]


def _port(port: dict, path: str) -> list[v.FieldError]:
    errs = []
    proto, number, end = port.get("protocol"), port.get("port"), port.get("endPort")
    if proto is not None and proto not in ("TCP", "UDP", "SCTP"):
        errs.append(v.not_supported(f"{path}.protocol", proto, ["TCP", "UDP", "SCTP"]))
    if number is None:
        if end is not None:
            errs.append(v.invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified"))
    elif isinstance(number, int):
        errs += v.check_port(number, f"{path}.port")
        if end is not None:
            if end < number:
                errs.append(v.invalid(f"{path}.endPort", end, "must be greater than or equal to `port`"))
            errs += v.check_port(end, f"{path}.endPort")
    else:
        if end is not None:
            errs.append(v.invalid(f"{path}.endPort", end, "may not be specified when `port` is non-numeric"))
        errs += [v.invalid(f"{path}.port", number, msg) for msg in port_name_problems(str(number))]
    return errs


def port_name_problems(name: str) -> list[str]:
    """Upstream's IsValidPortName, message for message."""
    out = []
    if len(name) > 15:
        out.append("must be no more than 15 characters")
    if not name or any(not (c.isdigit() or "a" <= c <= "z" or c == "-") for c in name):
        out.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not any("a" <= c <= "z" for c in name):
        out.append("must contain at least one letter (a-z)")
    if "--" in name:
        out.append("must not contain consecutive hyphens (-)")
    if name[:1] == "-" or name[-1:] == "-":
        out.append("must not begin or end with a hyphen (-)")
    return out


def _peer(peer: dict, path: str) -> list[v.FieldError]:
    errs, kinds = [], 0
    for field in ("podSelector", "namespaceSelector"):
        if peer.get(field) is not None:
            kinds += 1
            errs += label_selector(peer[field], f"{path}.{field}")
    block = peer.get("ipBlock")
    if block is not None:
        kinds += 1
        errs += _ip_block(block, f"{path}.ipBlock")
    if kinds == 0:
        errs.append(v.FieldError(path, "FieldValueRequired", "Required value: must specify a peer"))
    elif kinds > 1 and block is not None:
        errs.append(v.forbidden(path, "may not specify both ipBlock and another peer"))
    return errs


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(value, strict=False) if isinstance(value, str) and "/" in value else None
    except ValueError:
        return None


def _ip_block(block: dict, path: str) -> list[v.FieldError]:
    cidr = block.get("cidr")
    if not cidr:
        return [v.required(f"{path}.cidr")]
    msg = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
    net = _network(cidr)
    if net is None:
        return [v.invalid(f"{path}.cidr", cidr, msg)]
    errs = []
    for i, e in enumerate(block.get("except") or []):
        hole = _network(e)
        if hole is None:
            errs.append(v.invalid(f"{path}.except[{i}]", e, msg))
        elif hole.version != net.version or not hole.subnet_of(net) or hole.prefixlen <= net.prefixlen:
            errs.append(v.invalid(f"{path}.except[{i}]", e, "must be a strict subset of `cidr`"))
    return errs


def label_selector(sel: Any, path: str) -> list[v.FieldError]:
    """metav1's ValidateLabelSelector: its labels, and each requirement's operator and values."""
    if not isinstance(sel, dict):
        return []
    errs = v.check_labels(sel.get("matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(sel.get("matchExpressions") or []):
        p = f"{path}.matchExpressions[{i}]"
        op, values = expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.append(v.FieldError(f"{p}.values", "FieldValueRequired",
                                         "Required value: must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(v.forbidden(f"{p}.values",
                                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(v.invalid(f"{p}.operator", op, "not a valid selector operator"))
        key = expr.get("key")
        if not isinstance(key, str) or len(key.rsplit("/", 1)[-1]) > 63 or not v.QUALIFIED_NAME.match(key.rsplit("/", 1)[-1]):
            errs.append(v.invalid(f"{p}.key", key, "name part must consist of alphanumeric characters, '-', '_' or "
                                  "'.', and must start and end with an alphanumeric character"))
        for j, value in enumerate(values):
            if not isinstance(value, str) or len(value) > 63 or not v.LABEL_VALUE.match(value):
                errs.append(v.invalid(f"{p}.values[{j}]", value, "a valid label must be an empty string or consist "
                                      "of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                                      "alphanumeric character"))
    return errs
