"""The OpenAPI v3 documents kubectl reads: a root listing one document per group-version, each
with the kinds' operations. kubectl (1.27+) looks for the `fieldValidation` parameter on a kind's
PATCH operation (matched by `x-kubernetes-group-version-kind`); finding it, it sends
`?fieldValidation=Strict` and leaves validation to the server, which the server then does.

A custom resource's document also carries its kind's schema (the CRD's, with apiVersion, kind
and metadata added, as upstream's builder makes it) and ObjectMeta's, so that `kubectl explain`
works; its PATCH operation lists the patch types custom resources take (no strategic merge),
which is how kubectl knows to send a merge patch."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from netlab.api.resources import RESOURCES, Resource
from netlab.control.apiserver import schema

QUERY = ["dryRun", "fieldManager", "fieldValidation", "pretty"]
CR_PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
# the meta models a custom resource's document refers to, by the client's model name
META_MODELS = {"V1ObjectMeta": "ObjectMeta", "V1ListMeta": "ListMeta", "V1ManagedFieldsEntry": "ManagedFieldsEntry",
               "V1OwnerReference": "OwnerReference"}


def gv_path(r: Resource) -> str:
    return f"apis/{r.group}/{r.version}" if r.group else f"api/{r.version}"


def _op(r: Resource, verb: str, params: list[str], patch_types: list[str] | None = None) -> dict:
    op = {
        "operationId": f"{verb}{r.kind}",
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": [{"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for p in params],
        "responses": {"200": {"description": "OK"}},
    }
    if patch_types:
        op["requestBody"] = {"content": {t: {"schema": {"type": "object"}} for t in patch_types}, "required": True}
    return op


def _new_doc() -> dict:
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.31.0"}, "paths": {},
            "components": {"schemas": {}}}


def _add_paths(doc: dict, r: Resource, patch_types: list[str] | None = None) -> None:
    base = f"/{gv_path(r)}/" + ("namespaces/{namespace}/" if r.namespaced else "")
    doc["paths"][f"{base}{r.plural}"] = {"get": _op(r, "list", []), "post": _op(r, "post", QUERY)}
    item = {"get": _op(r, "get", []), "put": _op(r, "put", QUERY),
            "patch": _op(r, "patch", QUERY + ["force"], patch_types),
            "delete": _op(r, "delete", ["dryRun", "gracePeriodSeconds", "propagationPolicy"])}
    doc["paths"][f"{base}{r.plural}/{{name}}"] = item
    for sub in r.subresources if patch_types else ():
        doc["paths"][f"{base}{r.plural}/{{name}}/{sub}"] = {
            "get": _op(r, "get", []), "put": _op(r, "put", QUERY),
            "patch": _op(r, "patch", QUERY + ["force"], patch_types)}


@cache
def builtin_documents() -> dict[str, dict]:
    docs: dict[str, dict] = {}
    for r in RESOURCES:
        _add_paths(docs.setdefault(gv_path(r), _new_doc()), r)
    return docs


def documents(custom: list[Any] = ()) -> dict[str, dict]:
    """Every group-version's document: the built-ins', and those of the custom resources (each
    a strategy of customresources.py, with its resource and its schemas)."""
    docs = dict(builtin_documents())
    for s in custom:
        r = s.resource
        doc = docs.setdefault(gv_path(r), _new_doc())
        _add_paths(doc, r, CR_PATCH_TYPES)
        doc["components"]["schemas"].update(s.openapi_schemas())
        doc["components"]["schemas"].update(meta_schemas())
    return docs


@cache
def meta_schemas() -> dict[str, dict]:
    """ObjectMeta and ListMeta (and what they hold) as OpenAPI schemas, from schema.json."""
    return {META + name: _model_schema(model) for model, name in META_MODELS.items()}


def _model_schema(model: str) -> dict:
    props = {f: _type_schema(t) for f, t in sorted((schema.schemas().get(model) or {}).items())}
    return {"type": "object", "properties": props}


def _type_schema(t: str) -> dict:
    if t.startswith("List["):
        return {"type": "array", "items": _type_schema(t[5:-1])}
    if t.startswith("Dict["):
        return {"type": "object", "additionalProperties": _type_schema(t[len("Dict[str, "):-1])}
    simple = {"str": {"type": "string"}, "int": {"type": "integer", "format": "int32"},
              "int64": {"type": "integer", "format": "int64"}, "bool": {"type": "boolean"},
              "float": {"type": "number", "format": "double"}, "datetime": {"type": "string", "format": "date-time"},
              "date": {"type": "string", "format": "date"}, "bytes": {"type": "string", "format": "byte"},
              "object": {"type": "object"}}
    if t in simple:
        return dict(simple[t])
    if t in META_MODELS:
        return {"allOf": [{"$ref": f"#/components/schemas/{META}{META_MODELS[t]}"}]}
    return {"type": "object"}


def _hash(doc: dict) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


def root(docs: dict[str, dict]) -> dict:
    return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_hash(doc)}"} for gv, doc in docs.items()}}


class Documents:
    """The documents and their root, made again only when the custom resources change."""

    def __init__(self) -> None:
        self._generation: int | None = None
        self._docs: dict[str, dict] = {}
        self._root: dict = {}

    def get(self, custom: list[Any], generation: int) -> tuple[dict[str, dict], dict]:
        if generation != self._generation:
            self._docs = documents(custom)
            self._root = root(self._docs)
            self._generation = generation
        return self._docs, self._root
