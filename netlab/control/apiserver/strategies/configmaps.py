"""ConfigMaps: keys are config keys; kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("Data", "integer"), tables.AGE]

    def validate(self, obj: dict) -> list[v.FieldError]:
        errs = []
        for k in (obj.get("data") or {}):
            if not isinstance(k, str) or not k or len(k) > 253 or not all(ch.isalnum() or ch in "-._" for ch in k):
                errs.append(v.invalid("data", k, "a valid config key must consist of alphanumeric characters, '-', "
                                      "'_' or '.'"))
        return errs

    def row(self, c: dict) -> list[Any]:
        return [c["metadata"]["name"], len(c.get("data") or {}) + len(c.get("binaryData") or {}),
                tables.age(c["metadata"].get("creationTimestamp"))]
