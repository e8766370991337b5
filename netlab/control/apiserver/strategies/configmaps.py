"""ConfigMaps: keys are config keys, in `data` or `binaryData` but not both, 1 MiB in all, and
nothing changes once `immutable` is set; kubectl's columns."""

from __future__ import annotations

import base64
from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base

MAX_SIZE = 1024 * 1024  # upstream's MaxSecretSize, which ConfigMaps share


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("Data", "integer"), tables.AGE]

    def validate(self, obj: dict) -> list[v.FieldError]:
        errs: list[v.FieldError] = []
        data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
        size = 0
        for k, value in data.items():
            errs += v.check_config_key(k, "data")
            if k in binary:
                errs.append(v.invalid(f"data[{k}]", k, "duplicate of key present in binaryData"))
            size += len(str(value).encode())
        for k, value in binary.items():
            errs += v.check_config_key(k, "binaryData")
            size += len(base64.b64decode(value or ""))
        if size > MAX_SIZE:
            errs.append(v.too_long("", MAX_SIZE))  # "" as upstream: it is the whole object's
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        return v.check_immutable(obj, old, ("data", "binaryData"))

    def row(self, c: dict) -> list[Any]:
        return [c["metadata"]["name"], len(c.get("data") or {}) + len(c.get("binaryData") or {}),
                tables.age(c["metadata"].get("creationTimestamp"))]
