"""The OpenAPI definitions of every built-in model (io.k8s.api.apps.v1.Deployment, ...), as the
OpenAPI documents serve them and strategic merge patch reads them: types, formats, $refs, required
fields, descriptions, and the `x-kubernetes-*` extensions clients act on (group-version-kind,
patch merge keys and strategies, list types and map keys).

They are data (definitions.json beside this module), made from upstream's OpenAPI v2 document,
the one the official Python client is generated from (its repository's
kubernetes/swagger.json.unprocessed, or upstream's api/openapi-spec/swagger.json):

    .venv/bin/python -m netlab.control.apiserver.definitions swagger.json   # regenerates definitions.json

Kept: what kubectl explain, validation and patching read; dropped: CEL rules and the like.
"""

from __future__ import annotations

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
KEEP = {"description", "type", "format", "$ref", "items", "additionalProperties", "properties", "required",
        "enum", *EXTENSIONS}


@cache
def definitions() -> dict[str, dict]:
    """{definition: its schema} (OpenAPI v2 shape: refs to #/definitions/...)."""
    return json.loads(PATH.read_text())


def of(group: str, version: str, kind: str) -> str | None:
    """The definition of a built-in kind, by its group, version and kind."""
    return gvk_index().get((group, version, kind))


@cache
def gvk_index() -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> definition name, from x-kubernetes-group-version-kind."""
    out = {}
    for name, d in definitions().items():
        for g in d.get("x-kubernetes-group-version-kind") or ():
            out.setdefault((g["group"], g["version"], g["kind"]), name)
    return out


def refs(name: str) -> set[str]:
    """The definitions `name` refers to, transitively (itself included)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        n = todo.pop()
        if n in seen or n not in definitions():
            continue
        seen.add(n)
        todo.extend(_refs_in(definitions()[n]))
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
    return {name: _strip(d) for name, d in swagger["definitions"].items()}


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


if __name__ == "__main__":
    doc = json.loads(Path(sys.argv[1]).read_text())
    PATH.write_text(json.dumps(generate(doc), sort_keys=True, separators=(",", ":")) + "\n")
    definitions.cache_clear()
    print(f"wrote {PATH} ({len(definitions())} definitions)")
