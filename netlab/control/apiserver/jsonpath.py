"""The part of client-go's JSONPath that CRDs' printer columns use: `.a.b`, `['a.b']`, `[0]`,
`[-1]`, `[*]`, `[1:3]`, `..name` and filters `[?(@.type=="Ready")]` (==, !=, <, <=, >, >=, or
the existence of a field), evaluated with missing keys allowed, as upstream's table convertor
does; and printing a result as its PrintResults does."""

from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(r"""
    \.\.(?P<deep>[A-Za-z0-9_\-]+|\*)             # recursive descent
  | \.(?P<field>[A-Za-z0-9_\-$]+|\*)             # .field
  | \[\s*(?P<quoted>'[^']*'|"[^"]*")\s*\]       # ['field']
  | \[\s*\?\(\s*(?P<filter>.*?)\s*\)\s*\]        # [?(...)]
  | \[\s*(?P<index>[^\]]*)\s*\]                  # [0], [*], [1:3]
""", re.X)
_FILTER = re.compile(r"""^@(?P<path>(?:\.[A-Za-z0-9_\-]+|\[[^\]]*\])*)\s*
                         (?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<value>.+))?$""", re.X)


class JSONPathError(ValueError):
    pass


def parse(expr: str) -> list[tuple[str, Any]]:
    """The steps of a path (`.spec.replicas` or `{.spec.replicas}`)."""
    text = expr.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise JSONPathError(f"unrecognized character in action: {text[pos:]!r}")
        pos = m.end()
        if m.group("deep"):
            steps.append(("deep", m.group("deep")))
        elif m.group("field"):
            steps.append(("field", m.group("field")))
        elif m.group("quoted"):
            steps.append(("field", m.group("quoted")[1:-1]))
        elif m.group("filter") is not None:
            f = _FILTER.match(m.group("filter"))
            if not f:
                raise JSONPathError(f"unrecognized filter: {m.group('filter')!r}")
            value = f.group("value")
            steps.append(("filter", (parse(f.group("path")) if f.group("path") else [], f.group("op"),
                                     _literal(value) if value is not None else None)))
        else:
            steps.append(_index(m.group("index")))
    return steps


def _literal(text: str) -> Any:
    text = text.strip()
    if text[:1] in "'\"" and text[-1:] == text[:1]:
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        raise JSONPathError(f"unrecognized filter value: {text!r}") from None


def _index(text: str) -> tuple[str, Any]:
    text = text.strip()
    if text == "*":
        return ("field", "*")
    if ":" in text:
        parts = [p.strip() for p in text.split(":")]
        try:
            nums = [int(p) if p else None for p in parts[:3]]
        except ValueError:
            raise JSONPathError(f"invalid array slice: [{text}]") from None
        return ("slice", tuple(nums + [None] * (3 - len(nums))))
    try:
        return ("index", int(text))
    except ValueError:
        raise JSONPathError(f"invalid array index: [{text}]") from None


def find(steps: list[tuple[str, Any]], data: Any) -> list[Any]:
    """Every value the path reaches in `data` (missing keys give none)."""
    current = [data]
    for kind, arg in steps:
        nxt: list[Any] = []
        for v in current:
            if kind == "field":
                if arg == "*":
                    nxt += list(v.values()) if isinstance(v, dict) else list(v) if isinstance(v, list) else []
                elif isinstance(v, dict) and arg in v:
                    nxt.append(v[arg])
            elif kind == "index":
                if isinstance(v, list) and -len(v) <= arg < len(v):
                    nxt.append(v[arg])
            elif kind == "slice":
                if isinstance(v, list):
                    nxt += v[slice(*arg)]
            elif kind == "deep":
                nxt += _descend(v, arg)
            elif kind == "filter":
                items = v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else []
                nxt += [it for it in items if _matches(arg, it)]
        current = nxt
    return current


def _descend(v: Any, name: str) -> list[Any]:
    out = []
    if isinstance(v, dict):
        if name == "*":
            out += list(v.values())
        elif name in v:
            out.append(v[name])
        for child in v.values():
            out += _descend(child, name)
    elif isinstance(v, list):
        for child in v:
            out += _descend(child, name)
    return out


def _matches(flt: tuple, item: Any) -> bool:
    path, op, want = flt
    got = find(path, item)
    if op is None:
        return bool(got)
    if not got:
        return False
    have = got[0]
    try:
        return {"==": have == want, "!=": have != want, "<": have < want, "<=": have <= want,
                ">": have > want, ">=": have >= want}[op]
    except TypeError:
        return False


def text(value: Any) -> str:
    """A result as client-go's PrintResults writes it: maps and lists as JSON, the rest as Go's
    fmt prints them."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, float):
        return go_float(value)
    return str(value)


def go_float(f: float) -> str:
    """A float64 as Go's %v prints it (strconv 'g' with the shortest representation)."""
    if f == int(f) and abs(f) < 1e21:
        return str(int(f))
    out = repr(float(f))
    if "e" in out:
        mant, exp = out.split("e")
        sign = exp[0] if exp[0] in "+-" else "+"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        out = f"{mant}e{sign}{digits.zfill(2)}"
    return out
