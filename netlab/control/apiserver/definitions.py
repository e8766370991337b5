"""The OpenAPI definitions of every built-in model (io.k8s.api.apps.v1.Deployment, ...), as the
OpenAPI documents serve them and strategic merge patch reads them.

Two sources, each for what it holds well:
- definitions.json beside this module: the structure (types, formats, $refs, required fields)
  and the `x-kubernetes-*` extensions (group-version-kind, patch merge keys and strategies,
  list types and map keys), taken from upstream's OpenAPI v2 document without its prose;
- the descriptions, at run time, from the official `kubernetes` Python client's models (each
  field's pydantic description and the class's docstring), which are generated from that
  same document. Without the client installed the definitions simply have no descriptions.

    .venv/bin/python -m netlab.control.apiserver.definitions swagger.json   # regenerates definitions.json

(swagger.json: upstream's api/openapi-spec/swagger.json, or the client repository's
kubernetes/swagger.json.unprocessed.)
"""

from __future__ import annotations

import copy
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("definitions.json")
# extensions kept from upstream's document: the ones clients act on
EXTENSIONS = ("x-kubernetes-group-version-kind", "x-kubernetes-patch-merge-key", "x-kubernetes-patch-strategy",
              "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
              "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
              "x-kubernetes-embedded-resource", "x-kubernetes-unions")
KEEP = {"type", "format", "$ref", "items", "additionalProperties", "properties", "required", "enum"} | set(EXTENSIONS)


@cache
def raw() -> dict[str, dict]:
    """{definition: schema without descriptions, plus "x-netlab-model": the client's model}."""
    return json.loads(PATH.read_text())


@cache
def definitions() -> dict[str, dict]:
    """Every definition with its descriptions (OpenAPI v2 shape: refs to #/definitions/...)."""
    out = {}
    for name, d in raw().items():
        d = copy.deepcopy(d)
        model = d.pop("x-netlab-model", None)
        _describe(d, model)
        out[name] = d
    return out


def _describe(d: dict, model: str | None) -> None:
    cls = _model_class(model)
    if cls is None:
        return
    doc = (cls.__doc__ or "").split("Attributes:")[0].strip()
    if doc and "No description" not in doc:
        d["description"] = " ".join(doc.split())
    fields = getattr(cls, "model_fields", {})
    by_json = {v: k for k, v in (getattr(cls, "attribute_map", None) or {}).items()}
    for field, p in (d.get("properties") or {}).items():
        f = fields.get(by_json.get(field, field))
        if f is not None and f.description:
            p["description"] = f.description


def _model_class(model: str | None) -> Any:
    if not model:
        return None
    try:
        from kubernetes.client import models  # optional: only for the descriptions
    except ImportError:
        return None
    return getattr(models, model, None)


def of(group: str, version: str, kind: str) -> str | None:
    """The definition of a built-in kind, by its group, version and kind."""
    return gvk_index().get((group, version, kind))


@cache
def gvk_index() -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> definition name, from x-kubernetes-group-version-kind."""
    out = {}
    for name, d in raw().items():
        for g in d.get("x-kubernetes-group-version-kind") or ():
            out.setdefault((g["group"], g["version"], g["kind"]), name)
    return out


def refs(name: str) -> set[str]:
    """The definitions `name` refers to, transitively (itself included)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        n = todo.pop()
        if n in seen or n not in raw():
            continue
        seen.add(n)
        todo.extend(_refs_in(raw()[n]))
    return seen


def _refs_in(o: Any) -> list[str]:
    if isinstance(o, dict):
        out = [o["$ref"].rsplit("/", 1)[1]] if isinstance(o.get("$ref"), str) else []
        for v in o.values():
            out += _refs_in(v)
        return out
    if isinstance(o, list):
        return [r for v in o for r in _refs_in(v)]
    return []


# --- generation -------------------------------------------------------------------------------

def generate(swagger: dict) -> dict[str, dict]:
    from kubernetes.client import models  # the official client: a test dependency, needed only here

    out = {}
    for name, d in swagger["definitions"].items():
        s = _strip(d)
        model = _model_name(name, models)
        if model:
            s["x-netlab-model"] = model
        out[name] = s
    return out


def _strip(o: Any) -> Any:
    if isinstance(o, dict):
        out = {}
        for k, v in o.items():
            if k == "properties":
                out[k] = {f: _strip(p) for f, p in v.items()}
            elif k in ("items", "additionalProperties"):
                out[k] = _strip(v)
            elif k in KEEP:
                out[k] = v  # a value as it is: types, refs, extensions (whose dicts are data)
        return out
    if isinstance(o, list):
        return [_strip(v) for v in o]
    return o


def _model_name(name: str, models: Any) -> str | None:
    """The client's name for a definition: V1Pod, or CoreV1Event where two groups share a kind."""
    parts = name.split(".")
    if len(parts) < 3:
        return None
    kind, version, group = parts[-1], parts[-2].capitalize(), parts[-3].capitalize()
    return next((m for m in (group + version + kind, version + kind) if hasattr(models, m)), None)


if __name__ == "__main__":
    doc = json.loads(Path(sys.argv[1]).read_text())
    PATH.write_text(json.dumps(generate(doc), sort_keys=True, separators=(",", ":")) + "\n")
    raw.cache_clear()
    print(f"wrote {PATH} ({len(raw())} definitions)")
