"""Field schemas of the served kinds, for strict field validation and type errors as the real API
server gives them (`strict decoding error: unknown field "spec.foo"`).

The schemas are data (schema.json beside this file), made from the official `kubernetes` Python
client's models, which are generated from upstream's OpenAPI document, and that document (the
client repository's kubernetes/swagger.json.unprocessed, or upstream's api/openapi-spec/swagger.json)
for which integers are int64:

    .venv/bin/python -m netlab.control.apiserver.schema [swagger.json]   # regenerates schema.json
"""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("schema.json")
QUANTITY_MAPS = {"limits", "requests", "capacity", "allocatable", "hard", "used"}


@cache
def schemas() -> dict[str, dict[str, str]]:
    return json.loads(PATH.read_text())


class Number(float):
    """A JSON number that is not an integer, with the text it was written as (`1e30`), which
    upstream's decoder quotes when the number does not fit its field."""

    literal: str

    def __new__(cls, text: str) -> Number:
        n = super().__new__(cls, text)
        n.literal = text
        return n


def check(model: str, obj: Any, strict: bool) -> list[str]:
    """Problems with `obj` as an instance of `model`, worded as upstream's decoder words them:
    wrong types (and integers out of their int32/int64 range, base64 that does not decode)
    always, unknown fields when strict. Each names the field path."""
    problems: list[str] = []
    _check(model, obj, _Where(_go_struct(model), "", ""), strict, problems)
    return problems


class _Where:
    """Where a value is: its path as the strict decoder names it (with list indices), and as Go's
    JSON decoder does (the struct holding the field, the dotted path without indices)."""

    def __init__(self, struct: str, path: str, go_path: str):
        self.struct, self.path, self.go_path = struct, path, go_path

    def field(self, name: str, struct: str) -> _Where:
        return _Where(struct, f"{self.path}.{name}" if self.path else name,
                      f"{self.go_path}.{name}" if self.go_path else name)

    def item(self, suffix: str) -> _Where:
        return _Where(self.struct, f"{self.path}{suffix}", self.go_path)

    def type_error(self, value: Any, go_type: str) -> str:
        return f"json: cannot unmarshal {value} into Go struct field {self.struct}.{self.go_path} of type {go_type}"


_SCALARS = {"str": "string", "int": "int32", "int64": "int64", "bool": "bool", "float": "float64",
            "datetime": "Time", "date": "Time", "bytes": "[]uint8"}
_RANGE = {"int": 2 ** 31, "int64": 2 ** 63}
_MODEL = re.compile(r"^(?:[A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)([A-Z]\w*)$")


def _go_struct(model: str) -> str:
    m = _MODEL.match(model)
    return m.group(2) if m else model


def _go_type(t: str) -> str:
    if t.startswith("List["):
        return "[]" + _go_type(t[5:-1])
    if t.startswith("Dict["):
        return "map[string]" + _go_type(t[len("Dict[str, "):-1])
    if t in _SCALARS:
        return _SCALARS[t]
    m = _MODEL.match(t)
    return f"{m.group(1).lower()}.{m.group(2)}" if m else t


def _check(t: str, value: Any, at: _Where, strict: bool, out: list[str], parent_key: str = "") -> None:
    if value is None or t == "object":
        return
    if t.startswith("List["):
        if not isinstance(value, list):
            out.append(at.type_error(_json_type(value), _go_type(t)))
            return
        for i, v in enumerate(value):
            _check(t[5:-1], v, at.item(f"[{i}]"), strict, out)
        return
    if t.startswith("Dict["):
        if not isinstance(value, dict):
            out.append(at.type_error(_json_type(value), _go_type(t)))
            return
        inner = t[len("Dict[str, "):-1]
        for k, v in value.items():
            if inner == "str" and parent_key in QUANTITY_MAPS and isinstance(v, (int, float)):
                continue  # resource quantities may be numbers
            _check(inner, v, at.item(f"[{k}]"), strict, out)
        return
    if t in _SCALARS:
        problem = _scalar(t, value)
        if problem is not None:
            out.append(problem if problem.startswith("illegal") else at.type_error(problem, _SCALARS[t]))
        return
    fields = schemas().get(t)
    if fields is None:
        return
    if not isinstance(value, dict):
        out.append(at.type_error(_json_type(value), _go_type(t)))
        return
    struct = _go_struct(t)
    for k, v in value.items():
        sub = at.field(k, struct)
        if k not in fields:
            if strict:
                out.append(f'unknown field "{sub.path}"')
            continue
        _check(fields[k], v, sub, strict, out, k)


def _scalar(t: str, value: Any) -> str | None:
    """What is wrong with a scalar for its type: the JSON value as Go's decoder names it, or a
    base64 error; None if nothing."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if t in _RANGE:
        if not is_number:
            return _json_type(value)
        if isinstance(value, float) or not -_RANGE[t] <= value < _RANGE[t]:
            return f"number {value.literal if isinstance(value, Number) else value}"
        return None
    if t == "bytes":
        if not isinstance(value, str):
            return _json_type(value)
        at = base64_error(value)
        return None if at is None else f"illegal base64 data at input byte {at}"
    ok = {"str": isinstance(value, str), "bool": isinstance(value, bool), "float": is_number,
          "datetime": isinstance(value, str), "date": isinstance(value, str)}[t]
    return None if ok else _json_type(value)


_B64 = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def base64_error(text: str) -> int | None:
    """Where Go's base64.StdEncoding (padded; newlines ignored) finds `text` corrupt, or None."""
    src = text.encode()
    si, n = 0, len(src)
    while si < n:
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return None
                return si - j  # a quantum cut short: padding is required
            c = src[si]
            si += 1
            if c in _B64:
                j += 1
                continue
            if c in b"\r\n":
                continue
            if c != ord("=") or j < 2:
                return si - 1
            if j == 2:  # "==" expected: the second "=" (newlines may come between)
                while si < n and src[si] in b"\r\n":
                    si += 1
                if si == n:
                    return n
                if src[si] != ord("="):
                    return si - 1
                si += 1
            while si < n and src[si] in b"\r\n":
                si += 1
            return si if si < n else None  # anything after the padding is garbage
    return None


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(v), "value")


def generate(openapi: dict | None = None) -> dict[str, dict[str, str]]:
    """{model: {jsonField: type}} for every model of the client (so a kind added to the served
    ones has its schema already). The client's types say `int` for int32 and int64 alike: with
    upstream's OpenAPI v2 document the int64 ones are marked `int64`; without it, the marks of
    the current schema.json are kept."""
    from kubernetes.client import models  # the official client: a test dependency, needed only here

    int64 = _int64_fields(openapi, models) if openapi else {
        (m, f) for m, fields in schemas().items() for f, t in fields.items() if "int64" in t}
    out: dict[str, dict[str, str]] = {}
    for name in dir(models):
        cls = getattr(models, name)
        if not (isinstance(cls, type) and hasattr(cls, "openapi_types") and hasattr(cls, "attribute_map")):
            continue
        fields = {}
        for attr, t in cls.openapi_types.items():
            field = cls.attribute_map[attr]
            fields[field] = re.sub(r"\bint\b", "int64", t) if (name, field) in int64 else t
        out[name] = fields
    return out


def _int64_fields(openapi: dict, models: Any) -> set[tuple[str, str]]:
    """(model, field) of the integers of format int64 in an OpenAPI v2 document, its definitions
    (io.k8s.api.core.v1.Pod) named as the client names them (V1Pod, or CoreV1Event where two
    groups share a kind's name)."""
    out = set()
    for name, d in openapi["definitions"].items():
        parts = name.split(".")
        if len(parts) < 3:
            continue
        kind, version, group = parts[-1], parts[-2].capitalize(), parts[-3].capitalize()
        model = next((m for m in (group + version + kind, version + kind) if hasattr(models, m)), None)
        for field, p in (d.get("properties") or {}).items():
            inner = p.get("items") or p.get("additionalProperties") or p
            if model and inner.get("type") == "integer" and inner.get("format") == "int64":
                out.add((model, field))
    return out


if __name__ == "__main__":
    doc = json.loads(Path(sys.argv[1]).read_text()) if len(sys.argv) > 1 else None
    PATH.write_text(json.dumps(generate(doc), sort_keys=True, separators=(",", ":")))
    schemas.cache_clear()
    print(f"wrote {PATH} ({len(schemas())} models)")
