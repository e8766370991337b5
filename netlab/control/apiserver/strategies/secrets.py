"""Secrets: `type` (Opaque by default) and the keys each type requires, `stringData` merged into
`data` on write, config keys, 1 MiB in all, `type` fixed and nothing else changing once
`immutable` is set; kubectl's columns."""

from __future__ import annotations

import base64
import json
from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base

MAX_SIZE = 1024 * 1024  # upstream's MaxSecretSize
SERVICE_ACCOUNT_NAME = "kubernetes.io/service-account.name"
REDACTED = "<secret contents redacted>"


class Strategy(base.Strategy):
    field_labels = ("type",)
    columns = [tables.NAME, tables.col("Type", desc="Used to facilitate programmatic handling of secret data."),
               tables.col("Data"), tables.AGE]

    def decode(self, obj: dict) -> None:
        """stringData is write-only: its values (plain text) go into data, base64-encoded, as
        upstream's conversion does, overriding what data had under the same keys."""
        string_data = obj.pop("stringData", None)
        if string_data:
            data = obj.get("data") or {}
            data.update({k: base64.b64encode(str(val).encode()).decode() for k, val in string_data.items()})
            obj["data"] = data

    def defaults(self, obj: dict) -> None:
        if not obj.get("type"):
            obj["type"] = "Opaque"

    def validate(self, obj: dict) -> list[v.FieldError]:
        errs: list[v.FieldError] = []
        data = {k: base64.b64decode(val or "") for k, val in (obj.get("data") or {}).items()}
        for k in data:
            errs += v.check_config_key(k, "data")
        if sum(len(val) for val in data.values()) > MAX_SIZE:
            errs.append(v.too_long("data", MAX_SIZE))
        stype = obj.get("type")
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if stype == "kubernetes.io/service-account-token":
            if not annotations.get(SERVICE_ACCOUNT_NAME):
                errs.append(v.required(f"metadata.annotations[{SERVICE_ACCOUNT_NAME}]"))
        elif stype in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
            k = ".dockercfg" if stype == "kubernetes.io/dockercfg" else ".dockerconfigjson"
            if k not in data:
                errs.append(v.required(f"data[{k}]"))
            elif (problem := _json_object_problem(data[k])) is not None:
                errs.append(v.invalid(f"data[{k}]", REDACTED, problem))
        elif stype == "kubernetes.io/basic-auth":
            if "username" not in data and "password" not in data:  # either may be empty, one must be there
                errs += [v.required("data[username]"), v.required("data[password]")]
        elif stype == "kubernetes.io/ssh-auth":
            if not data.get("ssh-privatekey"):
                errs.append(v.required("data[ssh-privatekey]"))
        elif stype == "kubernetes.io/tls":
            errs += [v.required(f"data[{k}]") for k in ("tls.crt", "tls.key") if k not in data]
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        errs = []
        if obj.get("type") != old.get("type"):
            errs.append(v.invalid("type", obj.get("type"), "field is immutable"))
        return errs + v.check_immutable(obj, old, ("data",))

    def row(self, s: dict) -> list[Any]:
        return [s["metadata"]["name"], s.get("type", ""), len(s.get("data") or {}),
                tables.age(s["metadata"].get("creationTimestamp"))]


def _json_object_problem(raw: bytes) -> str | None:
    """Why a docker config is not a JSON object, in the words of Go's decoder."""
    text = raw.decode(errors="replace")
    try:
        value = json.loads(text)
    except ValueError as e:
        pos = getattr(e, "pos", len(text))
        if pos >= len(text.rstrip()):
            return "unexpected end of JSON input"
        return f"invalid character '{text[pos]}' looking for beginning of value"
    if value is not None and not isinstance(value, dict):  # null is an empty map to Go
        kind = {list: "array", str: "string", bool: "bool", type(None): "null"}.get(type(value), "number")
        return f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
    return None
