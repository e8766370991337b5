"""Validation as the real API server does it: one FieldError per problem, with the field path,
the reason and upstream's wording, gathered into a 422 Invalid."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


@dataclass
class FieldError:
    field: str
    reason: str     # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueDuplicate, ...
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def required(path: str) -> FieldError:
    return FieldError(path, "FieldValueRequired", "Required value")


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "FieldValueInvalid", f"Invalid value: {_go(value)}: {detail}")


def not_supported(path: str, value: Any, allowed: list[str]) -> FieldError:
    return FieldError(path, "FieldValueNotSupported",
                      f"Unsupported value: {_go(value)}: supported values: {', '.join(_go(a) for a in allowed)}")


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, "FieldValueForbidden", f"Forbidden: {detail}")


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(path, "FieldValueDuplicate", f"Duplicate value: {_go(value)}")


def _go(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def subdomain_msg() -> str:
    return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def label_msg() -> str:
    return ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
            "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def dns1035_msg() -> str:
    return ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
            "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
            "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


def check_name(value: Any, kind: str, path: str = "metadata.name") -> list[FieldError]:
    """Names by kind: Services and Namespaces are DNS labels, the rest DNS subdomains."""
    if not value:
        return [required(path)]
    if not isinstance(value, str):
        return [invalid(path, value, "must be a string")]
    if kind == "Service":
        if len(value) > 63 or not DNS1035_LABEL.match(value):
            return [invalid(path, value, dns1035_msg())]
    elif kind == "Namespace":
        if len(value) > 63 or not DNS1123_LABEL.match(value):
            return [invalid(path, value, label_msg())]
    elif len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        return [invalid(path, value, subdomain_msg())]
    return []


def check_labels(labels: Any, path: str) -> list[FieldError]:
    errs = []
    if labels is None:
        return errs
    if not isinstance(labels, dict):
        return [invalid(path, labels, "must be a map of string keys and values")]
    for k, v in labels.items():
        name = k.rsplit("/", 1)[-1]
        if not isinstance(k, str) or len(name) > 63 or not QUALIFIED_NAME.match(name):
            errs.append(invalid(path, k, "name part must consist of alphanumeric characters, '-', '_' or '.', and "
                                "must start and end with an alphanumeric character"))
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            errs.append(invalid(f"{path}", v, "a valid label must be an empty string or consist of alphanumeric "
                                "characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
    return errs


def check_port(value: Any, path: str) -> list[FieldError]:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        return [invalid(path, value, "must be between 1 and 65535, inclusive")]
    return []


def check_protocol(value: Any, path: str) -> list[FieldError]:
    if value not in ("TCP", "UDP", "SCTP"):
        return [not_supported(path, value, ["SCTP", "TCP", "UDP"])]
    return []


def check_containers(spec: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    containers = spec.get("containers")
    if not containers:
        return [required(f"{path}.containers")]
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(field) or []):
            p = f"{path}.{field}[{i}]"
            if not isinstance(c, dict):
                errs.append(invalid(p, c, "must be an object"))
                continue
            name = c.get("name")
            if not name:
                errs.append(required(f"{p}.name"))
            elif not isinstance(name, str) or len(name) > 63 or not DNS1123_LABEL.match(name):
                errs.append(invalid(f"{p}.name", name, label_msg()))
            elif name in names:
                errs.append(duplicate(f"{p}.name", name))
            else:
                names.add(name)
            if not c.get("image"):
                errs.append(required(f"{p}.image"))
            port_names: set[str] = set()
            for j, port in enumerate(c.get("ports") or []):
                pp = f"{p}.ports[{j}]"
                errs += check_port(port.get("containerPort"), f"{pp}.containerPort")
                if "hostPort" in port and port["hostPort"]:
                    errs += check_port(port["hostPort"], f"{pp}.hostPort")
                errs += check_protocol(port.get("protocol", "TCP"), f"{pp}.protocol")
                pn = port.get("name")
                if pn:
                    if not IANA_SVC_NAME.match(pn) or not re.search("[a-z]", pn):
                        errs.append(invalid(f"{pp}.name", pn, "must be no more than 15 characters and contain only "
                                            "lowercase alphanumeric characters and '-'"))
                    elif pn in port_names:
                        errs.append(duplicate(f"{pp}.name", pn))
                    port_names.add(pn)
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                pr = c.get(probe)
                if pr is not None:
                    handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if h in pr]
                    if len(handlers) != 1:
                        errs.append(required(f"{p}.{probe}") if not handlers else
                                    forbidden(f"{p}.{probe}", "may not specify more than 1 handler type"))
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        errs.append(not_supported(f"{path}.restartPolicy", policy, ["Always", "OnFailure", "Never"]))
    dns = spec.get("dnsPolicy", "ClusterFirst")
    if dns not in ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"):
        errs.append(not_supported(f"{path}.dnsPolicy", dns, ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]))
    if dns == "None" and not (spec.get("dnsConfig") or {}).get("nameservers"):
        errs.append(required(f"{path}.dnsConfig.nameservers"))
    return errs


def selector_matches(selector: dict, labels: dict) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
