"""The OpenAPI v3 documents kubectl reads: a root listing one document per group-version, each
with the kinds' operations. kubectl (1.27+) looks for the `fieldValidation` parameter on a kind's
PATCH operation (matched by `x-kubernetes-group-version-kind`); finding it, it sends
`?fieldValidation=Strict` and leaves validation to the server, which the server then does."""

from __future__ import annotations

import hashlib
import json
from functools import cache

from netlab.api.resources import RESOURCES, Resource

QUERY = ["dryRun", "fieldManager", "fieldValidation", "pretty"]


def gv_path(r: Resource) -> str:
    return f"apis/{r.group}/{r.version}" if r.group else f"api/{r.version}"


def _op(r: Resource, verb: str, params: list[str]) -> dict:
    return {
        "operationId": f"{verb}{r.kind}",
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": [{"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for p in params],
        "responses": {"200": {"description": "OK"}},
    }


@cache
def documents() -> dict[str, dict]:
    docs: dict[str, dict] = {}
    for r in RESOURCES:
        doc = docs.setdefault(gv_path(r), {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.31.0"},
                                           "paths": {}, "components": {"schemas": {}}})
        base = f"/{gv_path(r)}/" + ("namespaces/{namespace}/" if r.namespaced else "")
        doc["paths"][f"{base}{r.plural}"] = {"get": _op(r, "list", []), "post": _op(r, "post", QUERY)}
        doc["paths"][f"{base}{r.plural}/{{name}}"] = {
            "get": _op(r, "get", []), "put": _op(r, "put", QUERY), "patch": _op(r, "patch", QUERY + ["force"]),
            "delete": _op(r, "delete", ["dryRun", "gracePeriodSeconds", "propagationPolicy"])}
    return docs


def _hash(doc: dict) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


@cache
def root() -> dict:
    return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_hash(doc)}"}
                      for gv, doc in documents().items()}}
