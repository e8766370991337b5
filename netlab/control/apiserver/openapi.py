"""The OpenAPI v3 documents kubectl reads: a root listing one document per group-version, each
with the kinds' operations. kubectl (1.27+) looks for the `fieldValidation` parameter on a kind's
PATCH operation (matched by `x-kubernetes-group-version-kind`); finding it, it sends
`?fieldValidation=Strict` and leaves validation to the server, which the server then does.

A custom resource's document also carries its kind's schema (the CRD's, with apiVersion, kind
and metadata added, as upstream's builder makes it) and ObjectMeta's, so that `kubectl explain`
works; its PATCH operation lists the patch types custom resources take (no strategic merge),
which is how kubectl knows to send a merge patch."""

from __future__ import annotations

import copy
import hashlib
import json
from functools import cache
from typing import Any

from aiohttp import web

from netlab.api.resources import RESOURCES, Resource
from netlab.control.apiserver import definitions, openapiv2pb

QUERY = ["dryRun", "fieldManager", "fieldValidation", "pretty"]
CR_PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
BUILTIN_PATCH_TYPES = CR_PATCH_TYPES[:2] + ["application/strategic-merge-patch+json", CR_PATCH_TYPES[2]]
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
# what every group-version's document holds beside its kinds, as upstream's do
COMMON = [META + "Status", META + "DeleteOptions", META + "WatchEvent", META + "APIResourceList"]


def gv_path(r: Resource) -> str:
    return f"apis/{r.group}/{r.version}" if r.group else f"api/{r.version}"


def kind_definition(r: Resource, kind: str | None = None) -> str | None:
    """The definition (io.k8s.api.apps.v1.Deployment) of a served kind, or of its list."""
    return definitions.of(r.group, r.version, kind or r.kind)


def _op(r: Resource, verb: str, params: list[str], patch_types: list[str] | None = None,
        returns: str | None = None) -> dict:
    op = {
        "operationId": f"{verb}{r.kind}",
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": [{"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for p in params],
        "responses": {"200": {"description": "OK"}},
    }
    if returns:
        op["responses"]["200"]["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{returns}"}}}
    if patch_types:
        op["requestBody"] = {"content": {t: {"schema": {"type": "object"}} for t in patch_types}, "required": True}
    return op


def _new_doc() -> dict:
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.31.0"}, "paths": {},
            "components": {"schemas": {}}}


def _add_paths(doc: dict, r: Resource, patch_types: list[str] | None = None, custom: bool = False) -> None:
    base = f"/{gv_path(r)}/" + ("namespaces/{namespace}/" if r.namespaced else "")
    one, many = (None, None) if custom else (kind_definition(r), kind_definition(r, r.kind + "List"))
    doc["paths"][f"{base}{r.plural}"] = {"get": _op(r, "list", [], returns=many),
                                         "post": _op(r, "post", QUERY, returns=one)}
    item = {"get": _op(r, "get", [], returns=one), "put": _op(r, "put", QUERY, returns=one),
            "patch": _op(r, "patch", QUERY + ["force"], patch_types or BUILTIN_PATCH_TYPES, returns=one),
            "delete": _op(r, "delete", ["dryRun", "gracePeriodSeconds", "propagationPolicy"])}
    doc["paths"][f"{base}{r.plural}/{{name}}"] = item
    for sub in r.subresources if custom else ():
        doc["paths"][f"{base}{r.plural}/{{name}}/{sub}"] = {
            "get": _op(r, "get", []), "put": _op(r, "put", QUERY),
            "patch": _op(r, "patch", QUERY + ["force"], patch_types)}
    schemas = doc["components"]["schemas"]
    for name in (one, many):
        for d in sorted(definitions.refs(name)) if name else ():
            schemas.setdefault(d, v3_schema(definitions.definitions()[d]))


@cache
def builtin_documents() -> dict[str, dict]:
    docs: dict[str, dict] = {}
    for r in RESOURCES:
        doc = docs.setdefault(gv_path(r), _new_doc())
        _add_paths(doc, r)
    for doc in docs.values():
        for name in COMMON:
            for d in sorted(definitions.refs(name)):
                doc["components"]["schemas"].setdefault(d, v3_schema(definitions.definitions()[d]))
    return docs


def documents(custom: list[Any] = ()) -> dict[str, dict]:
    """Every group-version's document: the built-ins', and those of the custom resources (each
    a strategy of customresources.py, with its resource and its schemas)."""
    docs = {k: copy.copy(v) for k, v in builtin_documents().items()}
    for s in custom:
        r = s.resource
        doc = docs.get(gv_path(r))
        if doc is None:
            doc = docs[gv_path(r)] = _new_doc()
        doc["paths"] = dict(doc["paths"])
        doc["components"] = {"schemas": dict(doc["components"]["schemas"])}
        _add_paths(doc, r, CR_PATCH_TYPES, custom=True)
        doc["components"]["schemas"].update(s.openapi_schemas())
        doc["components"]["schemas"].update(meta_schemas())
    return docs


@cache
def meta_schemas() -> dict[str, dict]:
    """ObjectMeta and ListMeta (and what they hold) as OpenAPI v3 schemas."""
    names = definitions.refs(META + "ObjectMeta") | definitions.refs(META + "ListMeta")
    return {n: v3_schema(definitions.definitions()[n]) for n in sorted(names)}


def v3_schema(d: Any, top: bool = True) -> Any:
    """An OpenAPI v2 definition as OpenAPI v3 writes it (kube-openapi's conversion): refs into
    #/components/schemas, and a field's ref inside allOf (beside the field's description)."""
    if isinstance(d, list):
        return [v3_schema(x, False) for x in d]
    if not isinstance(d, dict):
        return d
    out = {}
    for k, v in d.items():
        if k == "properties":
            out[k] = {f: v3_schema(p, False) for f, p in v.items()}
        elif k == "$ref":
            out[k] = v.replace("#/definitions/", "#/components/schemas/")
        elif k in ("items", "additionalProperties"):
            out[k] = v3_schema(v, False)
        else:
            out[k] = copy.deepcopy(v)
    if "$ref" in out and not top:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def swagger(custom: list[Any] = ()) -> dict:
    """The OpenAPI v2 document (JSON): every definition, and the served kinds' paths."""
    paths: dict[str, dict] = {}
    for r in RESOURCES:
        base = f"/{gv_path(r)}/" + ("namespaces/{namespace}/" if r.namespaced else "")
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        params = [{"name": p, "in": "query", "type": "string", "uniqueItems": True} for p in QUERY]
        one = kind_definition(r)
        ok = {"200": {"description": "OK", **({"schema": {"$ref": f"#/definitions/{one}"}} if one else {})}}
        paths[f"{base}{r.plural}/{{name}}"] = {
            "get": {"operationId": f"read{r.kind}", "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": gvk, "responses": ok},
            "patch": {"operationId": f"patch{r.kind}", "x-kubernetes-action": "patch",
                      "x-kubernetes-group-version-kind": gvk, "consumes": BUILTIN_PATCH_TYPES,
                      "parameters": params, "responses": ok}}
    defs = dict(definitions.definitions())
    for st in custom:  # the custom kinds' schemas, refs pointing into #/definitions
        text = json.dumps(st.openapi_schemas()).replace("#/components/schemas/", "#/definitions/")
        defs.update(json.loads(text))
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.31.0"}, "paths": paths,
            "definitions": defs}


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
        self._v2_generation: int | None = None
        self._v2: dict = {}
        self._v2_pb: bytes | None = None

    def get(self, custom: list[Any], generation: int) -> tuple[dict[str, dict], dict]:
        if generation != self._generation:
            self._docs = documents(custom)
            self._root = root(self._docs)
            self._generation = generation
        return self._docs, self._root

    def v2_response(self, accept: str, custom: Any) -> web.Response:
        """/openapi/v2: protobuf when the client asks for it (kubectl does), JSON otherwise."""
        if custom.generation != self._v2_generation:
            self._v2, self._v2_generation, self._v2_pb = swagger(custom.strategies()), custom.generation, None
        if openapiv2pb.MEDIA_TYPE in accept:
            if self._v2_pb is None:
                self._v2_pb = openapiv2pb.document(self._v2)
            return web.Response(body=self._v2_pb, content_type=openapiv2pb.RESPONSE_TYPE)
        return web.Response(body=json.dumps(self._v2, separators=(",", ":")).encode() + b"\n",
                            content_type="application/json")
