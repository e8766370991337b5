"""Field schemas of the served kinds, for strict field validation and type errors as the real API
server gives them (`strict decoding error: unknown field "spec.foo"`).

The schemas are data (schema.json beside this file), made from the official `kubernetes` Python
client's models, which are generated from upstream's OpenAPI document:

    .venv/bin/python -m netlab.control.apiserver.schema   # regenerates schema.json
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("schema.json")
QUANTITY_MAPS = {"limits", "requests", "capacity", "allocatable", "hard", "used"}


@cache
def schemas() -> dict[str, dict[str, str]]:
    return json.loads(PATH.read_text())


def check(model: str, obj: Any, strict: bool) -> list[str]:
    """Problems with `obj` as an instance of `model`: wrong types always, unknown fields when
    strict. Each names the field path."""
    problems: list[str] = []
    _check(model, obj, "", strict, problems)
    return problems


_GO = {"str": "string", "int": "int32", "bool": "bool", "float": "float64", "datetime": "Time", "date": "Time"}


def _check(t: str, value: Any, path: str, strict: bool, out: list[str], parent_key: str = "") -> None:
    if value is None or t == "object":
        return
    if t.startswith("List["):
        if not isinstance(value, list):
            out.append(f'json: cannot unmarshal {_json_type(value)} into Go struct field {path} of type []{t[5:-1]}')
            return
        for i, v in enumerate(value):
            _check(t[5:-1], v, f"{path}[{i}]", strict, out)
        return
    if t.startswith("Dict["):
        if not isinstance(value, dict):
            out.append(f"json: cannot unmarshal {_json_type(value)} into Go struct field {path} of type map")
            return
        inner = t[len("Dict[str, "):-1]
        for k, v in value.items():
            if inner == "str" and parent_key in QUANTITY_MAPS and isinstance(v, (int, float)):
                continue  # resource quantities may be numbers
            _check(inner, v, f"{path}[{k}]", strict, out)
        return
    if t in _GO:
        ok = {"str": isinstance(value, str), "int": isinstance(value, int) and not isinstance(value, bool),
              "bool": isinstance(value, bool), "float": isinstance(value, (int, float)) and not isinstance(value, bool),
              "datetime": isinstance(value, str), "date": isinstance(value, str)}[t]
        if not ok:
            out.append(f"json: cannot unmarshal {_json_type(value)} into Go struct field {path} of type {_GO[t]}")
        return
    fields = schemas().get(t)
    if fields is None:
        return
    if not isinstance(value, dict):
        out.append(f"json: cannot unmarshal {_json_type(value)} into Go struct field {path} of type {t}")
        return
    for k, v in value.items():
        sub = f"{path}.{k}" if path else k
        if k not in fields:
            if strict:
                out.append(f'unknown field "{sub}"')
            continue
        _check(fields[k], v, sub, strict, out, k)


def _json_type(v: Any) -> str:
    return {bool: "bool", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(v), "value")


def generate() -> dict[str, dict[str, str]]:
    """Walk the client's models from the served kinds and record {model: {jsonField: type}}."""
    from kubernetes.client import models

    from netlab.api.resources import RESOURCES

    out: dict[str, dict[str, str]] = {}
    todo = [r.model for r in RESOURCES] + ["V1Scale", "V1DeleteOptions"]
    while todo:
        name = todo.pop()
        if name in out or not hasattr(models, name):
            continue
        cls = getattr(models, name)
        fields = {}
        for attr, t in cls.openapi_types.items():
            fields[cls.attribute_map[attr]] = t
            todo += re.findall(r"\b((?:V\d\w*|CoreV1\w+|EventsV1\w+|DiscoveryV1\w+|AppsV1\w+))\b", t)
        out[name] = fields
    return out


if __name__ == "__main__":
    PATH.write_text(json.dumps(generate(), sort_keys=True, separators=(",", ":")))
    print(f"wrote {PATH} ({len(schemas())} models)")
