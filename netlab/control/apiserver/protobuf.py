"""Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), read
into the JSON objects the rest of the server takes. client-go's typed clients in kubectl 1.32 and
later send built-in kinds this way (`kubectl autoscale`, `kubectl create token`, ...), with no
fallback to JSON; answers stay JSON, which they accept.

The envelope is the 4 bytes `k8s\\0` and a runtime.Unknown (typeMeta, raw, contentEncoding,
contentType) whose raw is the kind's message. The messages' fields (numbers, names, types) are
data, protos.json beside this module, made from upstream's generated.proto files (k8s.io/api and
k8s.io/apimachinery):

    .venv/bin/python -m netlab.control.apiserver.protobuf DIR...   # regenerates protos.json

Go writes every non-pointer field, empty ones too; what JSON would leave out (empty strings,
lists and maps, a zero Time) is left out here, as the object's JSON encoding would."""

from __future__ import annotations

import base64
import datetime
import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("protos.json")
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
META = "k8s.io.apimachinery.pkg.apis.meta.v1."
# group -> the package directory of its generated.proto under k8s.io/api
PACKAGES = {"": "core", "discovery.k8s.io": "discovery", "networking.k8s.io": "networking",
            "coordination.k8s.io": "coordination", "events.k8s.io": "events", "policy": "policy",
            "rbac.authorization.k8s.io": "rbac", "storage.k8s.io": "storage", "scheduling.k8s.io": "scheduling",
            "node.k8s.io": "node", "authentication.k8s.io": "authentication",
            "authorization.k8s.io": "authorization", "certificates.k8s.io": "certificates",
            "admissionregistration.k8s.io": "admissionregistration", "flowcontrol.apiserver.k8s.io": "flowcontrol",
            "resource.k8s.io": "resource"}


class ProtobufError(ValueError):
    pass


@cache
def messages() -> dict[str, dict[str, list]]:
    """{message: {field number: [name, type, label]}}; label: optional, repeated or map (type "K,V")."""
    return json.loads(PATH.read_text())


def message_of(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"k8s.io.api.{PACKAGES.get(group, group.split('.')[0])}.{version}.{kind}"


def decode(body: bytes) -> dict:
    """The JSON object of a protobuf request body."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the protobuf body does not start with the Kubernetes magic number")
    unknown = _fields(body[len(MAGIC):])
    type_meta = _fields(_first(unknown, 1, b""))
    api_version = _first(type_meta, 1, b"").decode()
    kind = _first(type_meta, 2, b"").decode()
    name = message_of(api_version, kind)
    if name not in messages():
        raise ProtobufError(f"no protobuf message for {api_version}, Kind={kind}")
    obj = _message(name, _first(unknown, 2, b""))
    return {"apiVersion": api_version, "kind": kind, **obj}


def _first(fields: dict[int, list], n: int, default: Any) -> Any:
    return fields[n][0] if fields.get(n) else default


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = out = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("truncated protobuf varint")
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, i
        shift += 7


def _fields(buf: bytes) -> dict[int, list]:
    """Field number -> its values in order (varints as ints, length-delimited as bytes)."""
    out: dict[int, list] = {}
    i = 0
    while i < len(buf):
        tag, i = _varint(buf, i)
        n, wire = tag >> 3, tag & 7
        if wire == 0:
            v, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            v, i = buf[i:i + size], i + size
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ProtobufError(f"unsupported protobuf wire type {wire}")
        out.setdefault(n, []).append(v)
    return out


def _signed(v: int, bits: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v if bits == 64 else (v - (1 << 64) if v >= 1 << 31 else v)


def _scalar(t: str, v: Any) -> Any:
    if t == "string":
        return v.decode()
    if t == "bytes":
        return base64.b64encode(v).decode()
    if t == "bool":
        return bool(v)
    if t in ("int32", "int64"):
        return _signed(v, 64 if t == "int64" else 32)
    if t == "double":
        import struct
        return struct.unpack("<d", v)[0]
    raise ProtobufError(f"unsupported protobuf type {t}")


def _special(t: str, raw: bytes) -> Any:
    """The types whose JSON is not their message's fields (Time, Quantity, IntOrString, ...)."""
    f = _fields(raw)
    if t in (META + "Time", META + "MicroTime"):
        secs, nanos = _signed(_first(f, 1, 0), 64), _first(f, 2, 0)
        if not secs and not nanos:
            return None
        ts = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
        if t.endswith("MicroTime"):
            return ts.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    if t == "k8s.io.apimachinery.pkg.api.resource.Quantity":
        return _first(f, 1, b"").decode()
    if t == "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        return _first(f, 3, b"").decode() if _first(f, 1, 0) == 1 else _signed(_first(f, 2, 0), 32)
    if t in ("k8s.io.apimachinery.pkg.runtime.RawExtension", META + "FieldsV1"):
        data = _first(f, 1, b"")
        return json.loads(data) if data else None
    if t == META + "Duration":
        ns = _signed(_first(f, 1, 0), 64)
        return _go_duration(ns)
    return _MISSING


_MISSING = object()


def _go_duration(ns: int) -> str:
    if ns == 0:
        return "0s"
    s, out = abs(ns) / 1e9, ""
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        out += f"{int(h)}h"
    if h or m:
        out += f"{int(m)}m"
    out += f"{sec:g}s"
    return ("-" if ns < 0 else "") + out


def _value(t: str, v: Any) -> Any:
    if t in messages() or t.startswith("k8s.io."):
        special = _special(t, v)
        if special is not _MISSING:
            return special
        return _message(t, v)
    return _scalar(t, v)


def _message(name: str, raw: bytes) -> dict:
    fields = messages().get(name)
    if fields is None:
        raise ProtobufError(f"no protobuf message {name}")
    out: dict[str, Any] = {}
    for n, values in _fields(raw).items():
        spec = fields.get(str(n))
        if spec is None:
            continue  # a field this server's data does not know: left out, as an unknown field
        field, t, label = spec
        if label == "inline":  # an embedded Go struct: its fields are the parent's in JSON
            for x in values:
                out.update(_message(t, x))
        elif label == "map":
            kt, vt = t.split(",")
            m = {}
            for entry in values:
                e = _fields(entry)
                m[_scalar(kt, _first(e, 1, b""))] = _value(vt, _first(e, 2, b""))
            if m:
                out[field] = m
        elif label == "repeated":
            items = [_value(t, x) for x in values]
            if items:
                out[field] = items
        else:
            v = _value(t, values[-1])
            if v is None or v == "":
                continue
            out[field] = v
    if name == META + "ObjectMeta" and out.get("generation") == 0:
        del out["generation"]  # Go writes the zero; its JSON (omitempty) does not
    return out


# --- generation -------------------------------------------------------------------------------

_MESSAGE = re.compile(r"^message (\w+) \{$")
_FIELD = re.compile(r"^\s+(optional|repeated) ([.\w]+) (\w+) = (\d+);")
_MAP = re.compile(r"^\s+map<(\w+), ([.\w]+)> (\w+) = (\d+);")


def parse(text: str) -> dict[str, dict[str, list]]:
    package = re.search(r"^package ([\w.]+);", text, re.M).group(1)
    out: dict[str, dict[str, list]] = {}
    current = None
    for line in text.splitlines():
        if m := _MESSAGE.match(line):
            current = out.setdefault(f"{package}.{m.group(1)}", {})
        elif line.startswith("}"):
            current = None
        elif current is not None and (m := _FIELD.match(line)):
            label, t, name, n = m.groups()
            current[n] = [name, _qualify(t, package), label]
        elif current is not None and (m := _MAP.match(line)):
            kt, vt, name, n = m.groups()
            current[n] = [name, f"{kt},{_qualify(vt, package)}", "map"]
    return out


_SCALARS = {"string", "bytes", "bool", "int32", "int64", "double", "float", "uint32", "uint64"}


def _qualify(t: str, package: str) -> str:
    if t in _SCALARS:
        return t
    return t[1:] if t.startswith(".") else f"{package}.{t}"


def mark_inline(found: dict[str, dict[str, list]]) -> None:
    """Label "inline" the fields that embed a struct (a Volume's volumeSource, a Probe's handler):
    not a field of the kind's OpenAPI definition, while the embedded message's fields are."""
    from netlab.control.apiserver import definitions

    defs = definitions.definitions()
    for name, fields in found.items():
        d = defs.get("io." + name.replace("k8s.io.apimachinery.", "k8s.apimachinery.").replace("k8s.io.api.", "k8s.api."))
        if d is None:
            continue
        props = set(d.get("properties") or ())
        for spec in fields.values():
            field, t, label = spec
            sub = found.get(t)
            if label == "optional" and field not in props and sub and {f for f, _, _ in sub.values()} & props:
                spec[2] = "inline"


if __name__ == "__main__":
    found: dict[str, dict[str, list]] = {}
    for d in sys.argv[1:]:
        for f in sorted(Path(d).rglob("generated.proto")):
            found.update(parse(f.read_text()))
    mark_inline(found)
    PATH.write_text(json.dumps(found, sort_keys=True, separators=(",", ":")) + "\n")
    messages.cache_clear()
    print(f"wrote {PATH} ({len(found)} messages)")
