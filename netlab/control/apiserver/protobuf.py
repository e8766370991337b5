"""Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) read into the JSON form, for
the kinds clients send that way: client-go's typed clients send RBAC objects so (`kubectl create
role|rolebinding|clusterrole|clusterrolebinding`). The envelope is upstream's: the magic
`k8s\\0`, then a runtime.Unknown (typeMeta, raw, contentEncoding, contentType) whose raw is the
object's message, with the field numbers of the API's generated.proto."""

from __future__ import annotations

MAGIC = b"k8s\x00"


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, i
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a message: ints for varints, bytes for the rest."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wire == 1:
            val, i = buf[i:i + 8], i + 8
        elif wire == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"protobuf wire type {wire} is not supported")
        out.append((num, val))
    return out


def _strings(msg: bytes, names: dict[int, str], repeated: set[int] = frozenset()) -> dict:
    out: dict = {}
    for num, val in fields(msg):
        if num in names and isinstance(val, bytes):
            if num in repeated:
                out.setdefault(names[num], []).append(val.decode())
            else:
                out[names[num]] = val.decode()
    return out


def _map(entries: list[bytes]) -> dict[str, str]:
    out = {}
    for e in entries:
        kv = _strings(e, {1: "k", 2: "v"})
        out[kv.get("k", "")] = kv.get("v", "")
    return out


def object_meta(msg: bytes) -> dict:
    meta = _strings(msg, {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"})
    labels = [v for n, v in fields(msg) if n == 11]
    annotations = [v for n, v in fields(msg) if n == 12]
    finalizers = [v.decode() for n, v in fields(msg) if n == 14]
    if labels:
        meta["labels"] = _map(labels)
    if annotations:
        meta["annotations"] = _map(annotations)
    if finalizers:
        meta["finalizers"] = finalizers
    return meta


def _rule(msg: bytes) -> dict:
    return _strings(msg, {1: "verbs", 2: "apiGroups", 3: "resources", 4: "resourceNames", 5: "nonResourceURLs"},
                    {1, 2, 3, 4, 5})


def _selector(msg: bytes) -> dict:
    out: dict = {}
    labels = [v for n, v in fields(msg) if n == 1]
    if labels:
        out["matchLabels"] = _map(labels)
    exprs = [_strings(v, {1: "key", 2: "operator", 3: "values"}, {3}) for n, v in fields(msg) if n == 2]
    if exprs:
        out["matchExpressions"] = exprs
    return out


def _rbac(kind: str, msg: bytes) -> dict:
    obj: dict = {}
    for num, val in fields(msg):
        if num == 1:
            obj["metadata"] = object_meta(val)
        elif kind in ("Role", "ClusterRole") and num == 2:
            obj.setdefault("rules", []).append(_rule(val))
        elif kind == "ClusterRole" and num == 3:
            obj["aggregationRule"] = {"clusterRoleSelectors": [_selector(v) for n, v in fields(val) if n == 1]}
        elif kind in ("RoleBinding", "ClusterRoleBinding") and num == 2:
            obj.setdefault("subjects", []).append(_strings(val, {1: "kind", 2: "apiGroup", 3: "name", 4: "namespace"}))
        elif kind in ("RoleBinding", "ClusterRoleBinding") and num == 3:
            obj["roleRef"] = _strings(val, {1: "apiGroup", 2: "kind", 3: "name"})
    return obj


DECODERS = {("rbac.authorization.k8s.io/v1", k): _rbac for k in ("Role", "ClusterRole", "RoleBinding",
                                                                    "ClusterRoleBinding")}


def loads(raw: bytes) -> dict:
    """The JSON form of a protobuf body; ValueError for what cannot be read."""
    if not raw.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf body (no k8s magic)")
    unknown = dict(fields(raw[len(MAGIC):]))
    tm = _strings(unknown.get(1, b""), {1: "apiVersion", 2: "kind"})
    decoder = DECODERS.get((tm.get("apiVersion", ""), tm.get("kind", "")))
    if decoder is None:
        raise ValueError(f"protobuf bodies of {tm.get('apiVersion')} {tm.get('kind')} are not supported: send JSON")
    return {"apiVersion": tm["apiVersion"], "kind": tm["kind"], **decoder(tm["kind"], unknown.get(2, b""))}
