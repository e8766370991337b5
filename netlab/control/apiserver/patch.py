"""The three PATCH content types: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
Kubernetes' strategic merge patch (lists merged by the merge keys and patch strategies that the
kind's OpenAPI definition gives each field, with the `$patch`, `$setElementOrder/`,
`$deleteFromPrimitiveList/` and `$retainKeys` directives)."""

from __future__ import annotations

import copy
from typing import Any

from netlab.control.apiserver import definitions

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


class PatchError(ValueError):
    pass


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON patch path {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation: {op!r}")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed")
            continue
        if kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, _pointer(op["from"])))
            if kind == "move":
                doc = _remove(doc, _pointer(op["from"]))
            doc = _add(doc, parts, value)
        elif kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, parts)
        elif kind == "replace":
            _get(doc, parts)
            doc = _remove(doc, parts)
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return doc


def _get(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for p in parts:
        try:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        except (KeyError, IndexError, ValueError, TypeError):
            raise PatchError(f"JSON patch: path /{'/'.join(parts)} does not exist") from None
    return cur


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _get(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        idx = len(parent) if last == "-" else int(last)
        if idx > len(parent):
            raise PatchError(f"JSON patch: index {idx} out of range")
        parent.insert(idx, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError(f"JSON patch: cannot add to /{'/'.join(parts[:-1])}")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    parent = _get(doc, parts[:-1])
    try:
        if isinstance(parent, list):
            parent.pop(int(parts[-1]))
        else:
            del parent[parts[-1]]
    except (KeyError, IndexError, ValueError):
        raise PatchError(f"JSON patch: path /{'/'.join(parts)} does not exist") from None
    return doc


def strategic_merge(target: Any, patch: Any, schema: str | dict | None = None) -> Any:
    """Apply a strategic merge patch to `target` (a dict) of the definition `schema`
    (io.k8s.api.apps.v1.Deployment): each list merges as its field's x-kubernetes-patch-strategy
    and x-kubernetes-patch-merge-key say (upstream's patchStrategy/patchMergeKey tags); a list
    the schema does not know is replaced."""
    schema = _resolve(schema)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    orders = {k.split("/", 1)[1]: v for k, v in patch.items() if k.startswith("$setElementOrder/")}
    deletes = {k.split("/", 1)[1]: v for k, v in patch.items() if k.startswith("$deleteFromPrimitiveList/")}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        field = _field(schema, k)
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list):
            out[k] = _merge_list(k, out.get(k), v, field)
        elif isinstance(v, dict):
            merged = strategic_merge(out.get(k), v, field)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        else:
            out[k] = v
    for k, values in deletes.items():
        if isinstance(out.get(k), list):
            out[k] = [x for x in out[k] if x not in values]
    for k, order in orders.items():
        if isinstance(out.get(k), list):
            out[k] = _reorder(out[k], order, _field(schema, k))
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _resolve(s: str | dict | None) -> dict | None:
    """A schema with its $ref (or allOf's single $ref) followed to the definition."""
    for _ in range(8):
        if isinstance(s, str):
            s = definitions.definitions().get(s.rsplit("/", 1)[-1])
        elif isinstance(s, dict) and "$ref" in s:
            s = s["$ref"]
        elif isinstance(s, dict) and len(s.get("allOf") or ()) == 1:
            s = s["allOf"][0]
        else:
            return s
    return None


def _field(schema: dict | None, name: str) -> dict | None:
    """The schema of a field (with its patch extensions), or of a map's values."""
    if not schema:
        return None
    props = schema.get("properties") or {}
    if name in props:
        return props[name]
    ap = schema.get("additionalProperties")
    return ap if isinstance(ap, dict) else None


def _list_meta(field: dict | None) -> tuple[set[str], str | None, dict | None]:
    """(patch strategies, merge key, item schema) of a list field."""
    if not field:
        return set(), None, None
    strategies = set(filter(None, (field.get("x-kubernetes-patch-strategy") or "").split(",")))
    return strategies, field.get("x-kubernetes-patch-merge-key"), _resolve(field.get("items"))


def _merge_list(name: str, current: Any, patch: list, field: dict | None) -> list:
    strategies, key, item = _list_meta(field)
    current = current if isinstance(current, list) else []
    if "merge" not in strategies:
        return [x for x in copy.deepcopy(patch) if not (isinstance(x, dict) and x.get("$patch"))]
    if key is None:  # a list of scalars merged as a set
        return current + [x for x in patch if x not in current]
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [x for x in copy.deepcopy(patch) if not (isinstance(x, dict) and "$patch" in x)]
    out = copy.deepcopy(current)
    for it in patch:
        if not isinstance(it, dict) or key not in it:
            raise PatchError(f"map: {it!r} does not contain declared merge key: {key}")
        idx = next((i for i, c in enumerate(out) if isinstance(c, dict) and c.get(key) == it[key]), None)
        if it.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
        elif idx is None:
            out.append(strategic_merge({}, it, item))
        else:
            out[idx] = strategic_merge(out[idx], it, item)
    return out


def _reorder(items: list, order: list, field: dict | None) -> list:
    _, key, _ = _list_meta(field)
    if key is None:
        rank = {repr(v): i for i, v in enumerate(order)}
        return sorted(items, key=lambda x: rank.get(repr(x), len(rank)))
    rank = {o.get(key) if isinstance(o, dict) else o: i for i, o in enumerate(order)}
    return sorted(items, key=lambda x: rank.get(x.get(key) if isinstance(x, dict) else x, len(rank)))


def apply(content_type: str, target: dict[str, Any], patch: Any, schema: str | None = None) -> dict[str, Any]:
    """Patch `target`; `schema` names its definition, for strategic merge patch."""
    ct = content_type.split(";")[0].strip()
    if ct == JSON_PATCH:
        out = json_patch(target, patch)
    elif ct == MERGE_PATCH:
        out = merge_patch(target, patch)
    elif ct == STRATEGIC:
        out = strategic_merge(target, patch, schema)
    else:
        raise PatchError(f"unsupported patch type {ct!r}")
    if not isinstance(out, dict):
        raise PatchError("the patched object is not an object")
    return out
