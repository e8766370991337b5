"""Server-side apply and managedFields, as upstream's structured-merge-diff (SMD) keeps them.

No Python implementation of SMD exists (the Go library is the only one), so this module holds
the part the served kinds need, driven by each kind's schema (definitions.py for the built-ins,
the CRD's structural schema for custom resources):

- a field set: the fields an object (or an applied configuration) sets, as paths of
  `f:<field>`, `k:<keys as JSON>` (an item of a list of type map, keyed by its list-map-keys or
  patch merge key), `v:<value as JSON>` (an item of a list of type set) and `.` (the item itself);
  lists of type atomic (and lists the schema does not type), scalars and atomic structs are
  leaves. This is the fieldsV1 format of metadata.managedFields.
- Update (create, PUT, non-apply PATCH): the manager takes the fields the write added or
  changed (from every other manager), and removed fields leave every manager.
- Apply (PATCH application/apply-patch+yaml): the configuration is merged into the live object
  (maps and associative lists by key, atomic lists replaced); fields the manager applied before
  and no longer applies are removed unless another manager owns them; a changed field another
  manager owns is a conflict (409 naming the fields and their managers) unless `force=true`,
  which takes them over. The manager then owns exactly what it applied.
- Migration from client-side apply: a conflict only with what the last-applied-configuration
  annotation holds (the fields `kubectl apply` set) is no conflict, and kubectl's applies keep
  that annotation current, as upstream's lastAppliedManager and lastAppliedUpdater do.
"""

from __future__ import annotations

import contextvars
import copy
import json
from dataclasses import dataclass
from typing import Any

from netlab.control.apiserver import definitions
from netlab.kit import clock

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# metadata no manager owns (upstream strips these before computing field sets)
STRIPPED_META = ("name", "namespace", "uid", "creationTimestamp", "selfLink", "generation", "managedFields",
                 "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds")
MAX_MANAGER = 128

Path = tuple[str, ...]


@dataclass
class Request:
    """Who writes (the fieldManager parameter, else the User-Agent's first part) and how."""
    manager: str = ""
    force: bool = False
    field_manager: str = ""  # as the request gave it (an apply requires one)
    applying: bool = False  # inside an apply, whose managedFields are made already
    dry_run: bool = False  # dryRun=All: everything but the write
    created: bool = False  # set by an apply that created the object (answered 201)


REQUEST: contextvars.ContextVar[Request | None] = contextvars.ContextVar("fieldmanager_request", default=None)


def manager_of(field_manager: str, user_agent: str) -> str:
    """upstream's managerOrUserAgent: the fieldManager, else the User-Agent up to its first /."""
    if field_manager:
        return field_manager
    return (user_agent.split("/", 1)[0] if user_agent else "unknown")[:MAX_MANAGER]


class ApplyConflict(Exception):
    def __init__(self, conflicts: list[tuple[str, str]]):
        super().__init__()
        self.conflicts = conflicts  # (manager as printed, path)

    @property
    def message(self) -> str:
        """upstream's wording (managedfields' NewConflictError)."""
        if len(self.conflicts) == 1:
            m, p = self.conflicts[0]
            return f"Apply failed with 1 conflict: conflict with {m}: {p}"
        by: dict[str, list[str]] = {}
        for m, p in self.conflicts:
            by.setdefault(m, []).append(p)
        lines = []
        for m in sorted(by):
            lines.append(f"conflicts with {m}:")
            lines += [f"- {p}" for p in by[m]]
        return f"Apply failed with {len(self.conflicts)} conflicts: " + "\n".join(lines)


# --- the schema, as SMD reads it ------------------------------------------------------------

def _resolve(s: Any) -> dict | None:
    for _ in range(8):
        if isinstance(s, str):
            s = definitions.definitions().get(s.rsplit("/", 1)[-1])
        elif isinstance(s, dict) and "$ref" in s:
            s = s["$ref"]
        elif isinstance(s, dict) and len(s.get("allOf") or ()) == 1 and "properties" not in s:
            merged = {k: v for k, v in s.items() if k != "allOf"}
            target = _resolve(s["allOf"][0]) or {}
            s = {**target, **merged}
        else:
            return s if isinstance(s, dict) else None
    return None


def _child(s: dict | None, name: str) -> dict | None:
    """The schema of a field of a struct, or of a map's values (None: not known)."""
    if not s:
        return None
    props = s.get("properties")
    if props and name in props:
        return props[name]
    ap = s.get("additionalProperties")
    return ap if isinstance(ap, dict) else None


def _list_shape(s: dict | None) -> tuple[str, list[str]]:
    """("map", keys) | ("set", []) | ("atomic", []) for a list field's schema."""
    if not s:
        return "atomic", []
    lt = s.get("x-kubernetes-list-type")
    if lt == "map":
        return "map", list(s.get("x-kubernetes-list-map-keys") or [])
    if lt in ("set", "atomic"):
        return lt, []
    if "merge" in (s.get("x-kubernetes-patch-strategy") or "").split(","):
        key = s.get("x-kubernetes-patch-merge-key")
        return ("map", [key]) if key else ("set", [])
    return "atomic", []


def _atomic_struct(field: dict | None, s: dict | None) -> bool:
    return any((x or {}).get("x-kubernetes-map-type") == "atomic" for x in (field, s))


def _is_struct(s: dict | None) -> bool:
    return bool(s and s.get("properties"))


# list-map keys that the schema defaults (upstream's SMD fills a missing key from its default)
KEY_DEFAULTS = {"protocol": "TCP"}


def _key_of(item: Any, keys: list[str]) -> str:
    if not isinstance(item, dict):
        return "v:" + _json(item)
    return "k:" + _json({k: item.get(k, KEY_DEFAULTS.get(k)) for k in sorted(keys)
                         if k in item or k in KEY_DEFAULTS})


def _json(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), sort_keys=True)


# --- field sets --------------------------------------------------------------------------------

def field_set(obj: dict, schema: Any) -> set[Path]:
    """The fields `obj` sets (its metadata that no one owns left out)."""
    obj = _stripped(obj)
    out: set[Path] = set()
    _walk(obj, _resolve(schema), (), out)
    return out


def _stripped(obj: dict) -> dict:
    o = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    meta = {k: v for k, v in (o.get("metadata") or {}).items() if k not in STRIPPED_META}
    if meta:
        o["metadata"] = meta
    else:
        o.pop("metadata", None)
    return o


def _walk(v: Any, s: dict | None, at: Path, out: set[Path], field: dict | None = None) -> None:
    if isinstance(v, dict) and v and not _atomic_struct(field, s):
        for k, sub in v.items():
            f = _child(s, k)
            _walk(sub, _resolve(f), at + (f"f:{k}",), out, f)
        return
    if isinstance(v, list) and v:
        shape, keys = _list_shape(field)
        if shape == "map":
            item_s = _resolve((field or {}).get("items"))
            for item in v:
                p = at + (_key_of(item, keys),)
                out.add(p + (".",))
                if isinstance(item, dict):
                    for k, sub in item.items():
                        f = _child(item_s, k)
                        _walk(sub, _resolve(f), p + (f"f:{k}",), out, f)
            return
        if shape == "set":
            for item in v:
                out.add(at + ("v:" + _json(item),))
            return
    if at:
        out.add(at)


def to_fields_v1(paths: set[Path]) -> dict:
    root: dict = {}
    for p in sorted(paths):
        node = root
        for el in p:
            node = node.setdefault(el, {})
    return root


def from_fields_v1(tree: dict, at: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for k, sub in (tree or {}).items():
        p = at + (k,)
        if not sub:
            out.add(p)
        else:
            out |= from_fields_v1(sub, p)
    return out


def path_text(p: Path) -> str:
    """SMD's path string: .spec.containers[name="web"].image, [=value] for a set's item."""
    out = ""
    for el in p:
        if el == ".":
            continue
        kind, rest = el[0], el[2:]
        if kind == "f":
            out += "." + rest
        elif kind == "k":
            out += "[" + ",".join(f"{k}={_json(v)}" for k, v in json.loads(rest).items()) + "]"
        elif kind == "v":
            out += "[=" + rest + "]"
        elif kind == "i":
            out += f"[{rest}]"
    return out


def _covers(paths: set[Path], p: Path) -> bool:
    """Whether `paths` owns `p` or something inside it."""
    n = len(p)
    return any(q[:n] == p for q in paths)


# --- values at paths ------------------------------------------------------------------------------

_MISSING = object()


def _get(obj: Any, p: Path) -> Any:
    cur = obj
    for el in p:
        if el == ".":
            continue
        kind, rest = el[0], el[2:]
        if kind == "f":
            cur = cur.get(rest, _MISSING) if isinstance(cur, dict) else _MISSING
        elif kind in ("k", "v"):
            if not isinstance(cur, list):
                return _MISSING
            want = json.loads(rest)
            cur = next((x for x in cur if (isinstance(x, dict) and kind == "k" and all(
                x.get(k) == val for k, val in want.items())) or (kind == "v" and x == want)), _MISSING)
        if cur is _MISSING:
            return _MISSING
    return cur


def _changed(old: dict | None, new: dict, schema: Any) -> tuple[set[Path], set[Path]]:
    """(added or modified, removed) fields from `old` to `new`."""
    new_set = field_set(new, schema)
    if old is None:
        return new_set | _added_maps(None, new, new_set, schema), set()
    old_set = field_set(old, schema)
    o, n = _stripped(old), _stripped(new)
    changed = {p for p in new_set if p not in old_set or (p[-1] != "." and _get(o, p) != _get(n, p))}
    return changed | _added_maps(o, n, changed, schema), old_set - new_set


def _added_maps(old: dict | None, new: dict, changed: set[Path], schema: Any) -> set[Path]:
    """The `.` of a map (labels, a selector's matchLabels, resource limits) that a write adds:
    upstream records the map itself as added, not a struct (which its Go zero value holds)."""
    out = set()
    n = _stripped(new)
    for p in changed:
        for i in range(1, len(p)):
            parent = p[:i]
            if parent[-1].startswith("f:") and isinstance(_get(n, parent), dict) and \
                    (old is None or _get(old, parent) is _MISSING) and _is_map(_schema_at(schema, parent)):
                out.add(parent + (".",))
    return out


def _schema_at(schema: Any, p: Path) -> dict | None:
    s = _resolve(schema)
    for el in p:
        if s is None:
            return None
        if el.startswith("f:"):
            s = _resolve(_child(s, el[2:]))
        elif el[0] in "kv":
            s = _resolve(s.get("items")) if "items" in s else s
    return s


def _is_map(s: dict | None) -> bool:
    return bool(s) and not s.get("properties") and isinstance(s.get("additionalProperties"), dict)


# --- managedFields entries ------------------------------------------------------------------------

def _entries(obj: dict | None) -> list[dict]:
    return [dict(e) for e in ((obj or {}).get("metadata") or {}).get("managedFields") or [] if isinstance(e, dict)]


def _identity(e: dict) -> tuple:
    op = e.get("operation")
    return e.get("manager"), op, e.get("subresource", ""), "" if op == "Apply" else e.get("apiVersion")


def _printed(e: dict) -> str:
    s = _json_str(e.get("manager", ""))
    if e.get("subresource"):
        s += f" with subresource {_json_str(e['subresource'])}"
    if e.get("operation") == "Update":
        s += f" using {e.get('apiVersion', '')}"
    return s


def _json_str(s: str) -> str:
    return json.dumps(s)


def _set_entry(entries: list[dict], ident: tuple, api_version: str, paths: set[Path], changed: bool) -> list[dict]:
    manager, op, sub, _ = ident
    out, found = [], False
    for e in entries:
        if _identity(e) == ident:
            found = True
            if not paths:
                continue
            if changed or from_fields_v1(e.get("fieldsV1") or {}) != paths:
                e = dict(e, time=clock.now(), fieldsV1=to_fields_v1(paths), apiVersion=api_version)
            out.append(e)
        else:
            out.append(e)
    if not found and paths:
        e = {"manager": manager, "operation": op, "apiVersion": api_version, "time": clock.now(),
             "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(paths)}
        if sub:
            e["subresource"] = sub
        out.append(e)
    return out


def _with_sets(entries: list[dict], drop: set[Path], keep_ident: tuple | None = None) -> list[dict]:
    """Every entry but `keep_ident`'s without the fields `drop` (entries left empty go)."""
    out = []
    for e in entries:
        if _identity(e) == keep_ident:
            out.append(e)
            continue
        paths = from_fields_v1(e.get("fieldsV1") or {})
        left = {p for p in paths if not any(p[:len(d)] == d for d in drop)}
        if left != paths:
            if left:
                out.append(dict(e, fieldsV1=to_fields_v1(left)))
        else:
            out.append(e)
    return out


def record_update(old: dict | None, new: dict, schema: Any, manager: str, subresource: str = "") -> None:
    """An Update by `manager`: it takes what changed; removed fields leave every manager.
    Writes new's metadata.managedFields (kept from old when the write leaves them out)."""
    meta = new.setdefault("metadata", {})
    sent = meta.get("managedFields")
    if sent == [{}]:
        meta.pop("managedFields", None)  # upstream: an empty entry clears them
        return
    entries = _entries(new) if sent else _entries(old)
    changed, removed = _changed(old, new, schema)
    ident = (manager, "Update", subresource, new.get("apiVersion"))
    entries = _with_sets(entries, changed | removed, ident)
    mine = next((from_fields_v1(e.get("fieldsV1") or {}) for e in entries if _identity(e) == ident), set())
    mine = {p for p in mine if p not in removed} | changed
    entries = _set_entry(entries, ident, new.get("apiVersion", ""), mine, bool(changed))
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


# --- apply --------------------------------------------------------------------------------------

def merge(live: Any, config: Any, s: dict | None, field: dict | None = None) -> Any:
    """The applied configuration merged into the live value: structs and maps by field,
    associative lists by key, everything else replaced."""
    if isinstance(config, dict) and isinstance(live, dict) and not _atomic_struct(field, s):
        out = dict(live)
        for k, v in config.items():
            f = _child(s, k)
            out[k] = merge(live.get(k), v, _resolve(f), f) if k in live else copy.deepcopy(v)
        return out
    if isinstance(config, list) and isinstance(live, list):
        shape, keys = _list_shape(field)
        if shape == "map":
            item_s = _resolve((field or {}).get("items"))
            out = [copy.deepcopy(x) for x in live]
            index = {_key_of(x, keys): i for i, x in enumerate(out)}
            for item in config:
                k = _key_of(item, keys)
                if k in index:
                    out[index[k]] = merge(out[index[k]], item, item_s)
                else:
                    index[k] = len(out)
                    out.append(copy.deepcopy(item))
            return out
        if shape == "set":
            return [copy.deepcopy(x) for x in live] + [copy.deepcopy(x) for x in config if x not in live]
    return copy.deepcopy(config)


def _remove(obj: dict, p: Path) -> None:
    """Take the field at `p` (a leaf, or a list item's `.`) out of `obj`."""
    if p and p[-1] == ".":
        p = p[:-1]
    parent = _get(obj, p[:-1]) if len(p) > 1 else obj
    el = p[-1]
    if parent is _MISSING:
        return
    if el.startswith("f:") and isinstance(parent, dict):
        parent.pop(el[2:], None)
    elif el[0] in "kv" and isinstance(parent, list):
        target = _get(obj, p)
        if target is not _MISSING:
            parent.remove(target)


def apply(live: dict | None, config: dict, schema: Any, manager: str, force: bool,
          subresource: str = "") -> tuple[dict, list[dict]]:
    """The object after `manager` applies `config` over `live` (None: a create), and its
    managedFields. Raises ApplyConflict."""
    s = _resolve(schema)
    applied = field_set(config, schema)
    ident = (manager, "Apply", subresource, "")
    entries = _entries(live)
    if live is None:
        new = copy.deepcopy(config)
        return new, _set_entry([], ident, config.get("apiVersion", ""), applied, True)
    new = merge(live, {k: v for k, v in config.items() if k not in ("apiVersion", "kind")}, s)
    new["metadata"] = dict(new.get("metadata") or {})
    before = next((from_fields_v1(e.get("fieldsV1") or {}) for e in entries if _identity(e) == ident), set())
    others = [e for e in entries if _identity(e) != ident]
    owned_by_others = set().union(*(from_fields_v1(e.get("fieldsV1") or {}) for e in others)) if others else set()
    for p in sorted(before - applied, key=len, reverse=True):
        target = p[:-1] if p[-1] == "." else p  # `.`: the map or list item itself
        if not _covers(owned_by_others, target) and not _covers(applied, target):
            _remove(new, p)
    changed, removed = _changed(live, new, schema)
    changed &= applied
    conflicts = []
    last_applied = _last_applied_set(live, schema)
    for e in others:
        theirs = from_fields_v1(e.get("fieldsV1") or {})
        for p in sorted(changed & theirs):
            if p[-1] == ".":
                continue
            if p in last_applied:
                continue  # what client-side apply set: taken over, as upstream's lastAppliedManager does
            conflicts.append((_printed(e), path_text(p)))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    entries = _with_sets(entries, changed | removed, ident)
    entries = _set_entry(entries, ident, config.get("apiVersion", ""), applied, True)
    annotations = new["metadata"].get("annotations") or {}
    if manager == "kubectl" and LAST_APPLIED in annotations:
        # upstream's lastAppliedUpdater (kubectl's applies only): client-side apply still sees the truth
        kept = copy.deepcopy(config)
        ann = (kept.get("metadata") or {}).get("annotations")
        if isinstance(ann, dict):
            ann.pop(LAST_APPLIED, None)
            if not ann:
                del kept["metadata"]["annotations"]
        new["metadata"]["annotations"] = dict(annotations, **{LAST_APPLIED: json.dumps(kept, separators=(",", ":"))
                                                             + "\n"})
    return new, entries


def _last_applied_set(live: dict, schema: Any) -> set[Path]:
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return set()
    try:
        last = json.loads(text)
    except ValueError:
        return set()
    return field_set(last, schema) if isinstance(last, dict) else set()
