"""LimitRanges: each limit's type once, valid quantities, and min <= defaultRequest <= default
<= max per resource with upstream's messages; kubectl's columns (NAME, CREATED AT)."""

from __future__ import annotations

from typing import Any

from netlab.api import quantity
from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base

FIELDS = ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")
# the pairs upstream compares, the first not greater than the second, and how it words each
ORDER = [("min", "max", "min value {a} is greater than max value {b}"),
         ("min", "defaultRequest", "min value {a} is greater than default request value {b}"),
         ("defaultRequest", "max", "default request value {a} is greater than max value {b}"),
         ("defaultRequest", "default", "default request value {a} is greater than default limit value {b}"),
         ("min", "default", "min value {a} is greater than default value {b}"),
         ("default", "max", "default value {a} is greater than max value {b}")]


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("Created At", "date", desc="CreationTimestamp is a timestamp representing the "
                                       "server time when this object was created.")]

    def defaults(self, obj: dict) -> None:
        """A Container limit's max stands for its missing default, and its default (or max)
        for its missing defaultRequest, as upstream's SetDefaults_LimitRangeItem."""
        for item in ((obj.get("spec") or {}).get("limits") or []):
            if not isinstance(item, dict) or item.get("type") != "Container":
                continue
            for k, q in (item.get("max") or {}).items():
                item.setdefault("default", {}).setdefault(k, q)
            for k, q in (item.get("default") or {}).items():
                item.setdefault("defaultRequest", {}).setdefault(k, q)

    def validate(self, obj: dict) -> list[v.FieldError]:
        errs: list[v.FieldError] = []
        seen: set[str] = set()
        for i, item in enumerate((obj.get("spec") or {}).get("limits") or []):
            path = f"spec.limits[{i}]"
            kind = item.get("type")
            if kind in seen:
                errs.append(v.duplicate(f"{path}.type", kind))
            seen.add(kind)
            values: dict[str, dict] = {}
            for f in FIELDS:
                for k, q in (item.get(f) or {}).items():
                    try:
                        values.setdefault(f, {})[k] = quantity.parse(q)
                    except ValueError as e:
                        errs.append(v.invalid(f"{path}.{f}[{k}]", q, str(e)))
            if kind == "Pod":
                for f in ("default", "defaultRequest"):
                    if item.get(f):
                        errs.append(v.forbidden(f"{path}.{f}", "may not be specified when `type` is 'Pod'"))
            keys = {k for f in values.values() for k in f}
            for k in sorted(keys):
                for a, b, words in ORDER:
                    x, y = values.get(a, {}).get(k), values.get(b, {}).get(k)
                    if x is not None and y is not None and x > y:
                        errs.append(v.invalid(f"{path}[{k}]", item[a][k],
                                              words.format(a=quantity.canonical(item[a][k]),
                                                           b=quantity.canonical(item[b][k]))))
        return errs

    def row(self, lr: dict) -> list[Any]:
        return [lr["metadata"]["name"], lr["metadata"].get("creationTimestamp")]
