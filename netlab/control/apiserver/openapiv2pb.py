"""/openapi/v2 in the protobuf encoding clients ask for (`Accept: application/com.github.proto-
openapi.spec.v2@v1.0+protobuf`): gnostic's openapi.v2.Document message. kubectl before 1.29
reads `kubectl explain` from it, and kubectl's apply its patch metadata.

A hand-written encoder of the few messages a Swagger document of ours uses, by their field
numbers in gnostic's OpenAPIv2.proto (no protobuf runtime or generated code needed). Vendor
extensions and enums are `Any` messages holding YAML text, as gnostic writes them."""

from __future__ import annotations

from typing import Any

import yaml

MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
# what upstream answers with (the "@" is not valid in a Content-Type)
RESPONSE_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str(field: int, s: str) -> bytes:
    return _bytes(field, s.encode()) if s else b""


def _bool(field: int, v: bool) -> bytes:
    return _varint(field << 3) + b"\x01" if v else b""


def _any(value: Any) -> bytes:
    return _str(2, yaml.safe_dump(value, default_flow_style=False, sort_keys=True))


def _named_any(field: int, name: str, value: Any) -> bytes:
    return _bytes(field, _str(1, name) + _bytes(2, _any(value)))


def schema(s: dict) -> bytes:
    out = _str(1, s.get("$ref", "")) + _str(2, s.get("format", "")) + _str(4, s.get("description", ""))
    for r in s.get("required") or ():
        out += _str(19, r)
    for e in s.get("enum") or ():
        out += _bytes(20, _any(e))
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        out += _bytes(21, _bytes(1, schema(ap)))
    elif isinstance(ap, bool):
        out += _bytes(21, _varint(2 << 3) + (b"\x01" if ap else b"\x00"))
    t = s.get("type")
    if t:
        out += _bytes(22, b"".join(_str(1, x) for x in ([t] if isinstance(t, str) else t)))
    if isinstance(s.get("items"), dict):
        out += _bytes(23, _bytes(1, schema(s["items"])))
    for sub in s.get("allOf") or ():
        out += _bytes(24, schema(sub))
    if s.get("properties"):
        out += _bytes(25, b"".join(_bytes(1, _str(1, k) + _bytes(2, schema(v))) for k, v in s["properties"].items()))
    for k, v in s.items():
        if k.startswith("x-"):
            out += _named_any(31, k, v)
    return out


def _operation(op: dict) -> bytes:
    out = _str(3, op.get("description", "")) + _str(5, op.get("operationId", ""))
    for c in op.get("consumes") or ():
        out += _str(7, c)
    for p in op.get("parameters") or ():
        query = (_str(2, p.get("in", "query")) + _str(4, p["name"]) + _str(6, p.get("type", "string"))
                 + _bool(20, p.get("uniqueItems", False)))
        out += _bytes(8, _bytes(1, _bytes(2, _bytes(3, query))))
    responses = b""
    for code, r in (op.get("responses") or {}).items():
        resp = _str(1, r.get("description", ""))
        if "schema" in r:
            resp += _bytes(2, _bytes(1, schema(r["schema"])))
        responses += _bytes(1, _str(1, code) + _bytes(2, _bytes(1, resp)))
    out += _bytes(9, responses)
    for k, v in op.items():
        if k.startswith("x-"):
            out += _named_any(13, k, v)
    return out


_VERBS = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}


def document(doc: dict) -> bytes:
    """The openapi.v2.Document message of a Swagger document (as openapi.swagger() makes it)."""
    info = doc.get("info") or {}
    out = _str(1, doc.get("swagger", "2.0")) + _bytes(2, _str(1, info.get("title", "")) + _str(2, info.get("version", "")))
    paths = b""
    for path, item in (doc.get("paths") or {}).items():
        body = b"".join(_bytes(n, _operation(item[v])) for v, n in _VERBS.items() if v in item)
        paths += _bytes(2, _str(1, path) + _bytes(2, body))
    out += _bytes(8, paths)
    out += _bytes(9, b"".join(_bytes(1, _str(1, name) + _bytes(2, schema(s)))
                             for name, s in (doc.get("definitions") or {}).items()))
    return out
