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


def too_long(path: str, limit: int) -> FieldError:
    return FieldError(path, "FieldValueTooLong", f"Too long: must have at most {limit} bytes")


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


def check_name(value: Any, rule: str = "subdomain", path: str = "metadata.name") -> list[FieldError]:
    """A name by its kind's rule: `subdomain` (DNS-1123 subdomain, most kinds), `label` (DNS-1123
    label: Namespaces) `dns1035` (DNS-1035 label: Services) or `path` (a path segment: RBAC's kinds)."""
    if not value:
        return [required(path)]
    if not isinstance(value, str):
        return [invalid(path, value, "must be a string")]
    if rule == "dns1035":
        if len(value) > 63 or not DNS1035_LABEL.match(value):
            return [invalid(path, value, dns1035_msg())]
    elif rule == "path":  # upstream's path segment names (RBAC's): anything but "/" and "%", "." and ".."
        if value in (".", "..") or "/" in value or "%" in value:
            return [invalid(path, value, "may not contain '/' or '%' and may not be '.' or '..'")]
    elif rule == "label":
        if len(value) > 63 or not DNS1123_LABEL.match(value):
            return [invalid(path, value, label_msg())]
    elif len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        return [invalid(path, value, subdomain_msg())]
    return []


CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+\Z")


def check_config_key(key: str, path: str) -> list[FieldError]:
    """A key of a ConfigMap's or Secret's data (upstream's IsConfigMapKey): it names a file."""
    problems = []
    if len(key) > 253:
        problems.append("must be no more than 253 characters")
    if not CONFIG_KEY.match(key):
        problems.append("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
                        "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
    if key in (".", ".."):
        problems.append(f"must not be '{key}'")
    elif key.startswith(".."):
        problems.append("must not start with '..'")
    return [invalid(f"{path}[{key}]", key, p) for p in problems]


def check_immutable(obj: dict, old: dict, fields: tuple[str, ...]) -> list[FieldError]:
    """`immutable: true` (ConfigMaps, Secrets): it stays, and so do the fields it protects."""
    if old.get("immutable") is not True:
        return []
    errs = []
    if obj.get("immutable") is not True:
        errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for f in fields:
        if (obj.get(f) or None) != (old.get(f) or None):
            errs.append(forbidden(f, "field is immutable when `immutable` is set"))
    return errs


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


ANNOTATIONS_LIMIT = 256 * 1024  # upstream's TotalAnnotationSizeLimitB


def check_annotations(annotations: Any, path: str = "metadata.annotations") -> list[FieldError]:
    if not isinstance(annotations, dict):
        return []
    size = sum(len(str(k).encode()) + len(str(val).encode()) for k, val in annotations.items())
    return [too_long(path, ANNOTATIONS_LIMIT)] if size > ANNOTATIONS_LIMIT else []


def check_port(value: Any, path: str) -> list[FieldError]:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        return [invalid(path, value, "must be between 1 and 65535, inclusive")]
    return []


def check_protocol(value: Any, path: str) -> list[FieldError]:
    if value not in ("TCP", "UDP", "SCTP"):
        return [not_supported(path, value, ["SCTP", "TCP", "UDP"])]
    return []
