"""Custom resources: the kinds the Established CustomResourceDefinitions define, served like the
built-ins. One strategy per served version (its schema: pruning, defaulting, validation; its
status and scale subresources; its printer columns; its OpenAPI schema), made from the CRD as
stored, and the registry of them that the object layer and discovery consult, rebuilt when a CRD
changes.

Versions convert as upstream's `None` strategy does: only apiVersion changes. An object is kept
in the version it was written in and shown in the version it is read through (pruned and
defaulted by that version's schema, as upstream does on reading from storage)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from netlab.api.resources import Resource
from netlab.control.apiserver import celrules, jsonpath, structural, tables
from netlab.control.apiserver.store import key
from netlab.control.apiserver.strategies import base
from netlab.control.apiserver.strategies.customresourcedefinitions import is_true
from netlab.control.apiserver.validation import FieldError
from netlab.kit import clock

VERBS = ("delete", "deletecollection", "get", "list", "patch", "create", "update", "watch")
TERMINATING_VERBS = ("delete", "deletecollection", "get", "list", "watch")
AGE_DESCRIPTION = ("CreationTimestamp is a timestamp representing the server time when this object was created. It "
                   "is not guaranteed to be set in happens-before order across separate operations. Clients may not "
                   "set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. "
                   "Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/"
                   "sig-architecture/api-conventions.md#metadata")
DEFAULT_COLUMNS = [{"name": "Age", "type": "date", "description": AGE_DESCRIPTION,
                    "jsonPath": ".metadata.creationTimestamp"}]
MAX_INT32 = 2 ** 31 - 1


@dataclass(frozen=True)
class CustomResource(Resource):
    """A custom resource's kind, with the singular name its CRD gives it."""
    singular_name: str = ""

    @property
    def singular(self) -> str:
        return self.singular_name or self.kind.lower()


def version_order(v: str) -> tuple:
    """upstream's kube-aware version order, highest first: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 >
    any other name (alphabetical)."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (0, 0, 0, tuple(-ord(c) for c in v))
    rank = {"alpha": 1, "beta": 2, None: 3}[m.group(2)]
    return (rank, int(m.group(1)), int(m.group(3) or 0), ())


def rest_friendly(group: str, version: str, kind: str) -> str:
    """The OpenAPI definition name upstream gives a CRD's kind: the group's domain reversed."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _split(path: str) -> list[str]:
    return path.lstrip(".").split(".")


def nested(obj: Any, path: str) -> tuple[Any, bool]:
    for part in _split(path):
        if not isinstance(obj, dict) or part not in obj:
            return None, False
        obj = obj[part]
    return obj, True


def _int64_error(path: str, value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    kind = {bool: "bool", str: "string", float: "float64", dict: "map[string]interface {}",
            list: "[]interface {}"}.get(type(value), type(value).__name__)
    return f"{path} accessor error: {jsonpath.text(value)} is of the type {kind}, expected int64"


class Strategy(base.Strategy):
    """One served version of a CRD."""
    generation = True
    strategic_merge = False

    def __init__(self, resource: Resource, ctx: base.Context, crd: dict, version: str):
        super().__init__(resource, ctx)
        self.crd = crd
        spec = crd["spec"]
        self.group, self.version = spec["group"], version
        self.plural = spec["names"]["plural"]
        ver = next(x for x in spec["versions"] if x.get("name") == version)
        self.schema: dict = (ver.get("schema") or {}).get("openAPIV3Schema") or {}
        self.validator = structural.Validator(self.schema)
        self.status_validator = structural.Validator(((self.schema.get("properties") or {}).get("status")) or {})
        subs = ver.get("subresources") or {}
        self.has_status = "status" in subs
        self.scale_paths: dict | None = subs.get("scale") if isinstance(subs.get("scale"), dict) else None
        self.terminating = is_true(crd, "Terminating")
        cols = ver.get("additionalPrinterColumns") or DEFAULT_COLUMNS
        self.columns = [tables.NAME] + [
            {"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
             "description": c.get("description") or f"Custom resource definition column (in JSONPath format): "
             f"{c['jsonPath']}", "priority": c.get("priority", 0)} for c in cols]
        self._cells = []
        for c in cols:
            try:
                steps = jsonpath.parse(c["jsonPath"])
            except jsonpath.JSONPathError:
                steps = None
            self._cells.append((steps, c.get("type", "string")))
        self.field_labels = tuple(f["jsonPath"].lstrip(".") for f in ver.get("selectableFields") or []
                                  if isinstance(f, dict) and f.get("jsonPath"))

    @property
    def status_subresource(self) -> bool:
        return self.has_status

    @property
    def storage_resource(self) -> str:
        return f"{self.group}/{self.plural}"

    @property
    def list_kind(self) -> str:
        acc = (self.crd.get("status") or {}).get("acceptedNames") or {}
        return acc.get("listKind") or f"{self.resource.kind}List"

    # --- decoding, defaults and validation ---------------------------------------------

    def field_problems(self, obj: dict, strict: bool) -> list[str]:
        """As upstream's schema-coercing decoder: metadata as ObjectMeta, then the schema's
        pruning; the pruned fields are problems only when strict."""
        problems = structural.metadata_problems(obj, strict)
        unknown = structural.prune(obj, self.schema)
        if strict:
            problems += [f'unknown field "{p}"' for p in unknown]
        return problems

    def defaults(self, obj: dict) -> None:
        structural.prune_nulls(obj, self.schema)
        structural.default(obj, self.schema)

    def prepare_create(self, obj: dict) -> None:
        if self.has_status:
            obj.pop("status", None)  # only the status subresource sets it

    def generation_changed(self, obj: dict, old: dict) -> bool:
        """Any change but of the metadata is a new generation (the status too, without a status
        subresource), as upstream's custom resource strategy has it."""
        def rest(o: dict) -> dict:
            return {k: val for k, val in o.items() if k not in ("metadata", "apiVersion", "kind")}
        return rest(obj) != rest(old)

    def validate(self, obj: dict) -> list[FieldError]:
        errs = self.validator.errors(obj)
        errs += self._scale_errors(obj)
        errs += structural.embedded_errors(obj, self.schema)
        errs += structural.list_errors(obj, self.schema)
        return errs + celrules.errors(obj, self.schema)

    def validate_status(self, obj: dict) -> list[FieldError]:
        """As upstream's status strategy: the status against its own schema (so its messages name
        the field from the status down: `replicas in body`), and the scale's status paths."""
        errs = self.status_validator.errors(obj["status"], "status") if "status" in obj else []
        errs += celrules.errors(obj.get("status"), (self.schema.get("properties") or {}).get("status"), "status")
        return errs + self._scale_errors(obj, ("statusReplicasPath",))

    def _scale_errors(self, obj: dict, paths: tuple[str, ...] = ("specReplicasPath", "statusReplicasPath")
                      ) -> list[FieldError]:
        if self.scale_paths is None:
            return []
        errs = []
        for k in paths:
            path = self.scale_paths.get(k) or ""
            value, found = nested(obj, path)
            if not found:
                continue
            if (problem := _int64_error(path, value)) is not None:
                errs.append(FieldError(path, "FieldValueInvalid", f"Invalid value: 0: {problem}"))
            elif value < 0:
                errs.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {value}: should be a non-negative "
                                       "integer"))
            elif value > MAX_INT32:
                errs.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {value}: should be less than or "
                                       f"equal to {MAX_INT32}"))
        sel_path = self.scale_paths.get("labelSelectorPath")
        if sel_path:
            value, found = nested(obj, sel_path)
            if found and not isinstance(value, str):
                errs.append(FieldError(sel_path, "FieldValueInvalid", f'Invalid value: "": {sel_path} accessor '
                                       f"error: {jsonpath.text(value)} is of the type {type(value).__name__}, "
                                       "expected string"))
        return errs

    def field_label_error(self, label: str) -> str | None:
        if label in ("metadata.name", "metadata.namespace") or label in self.field_labels:
            return None
        return f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"'

    def refusal(self, verb: str) -> str:
        return f"{verb} not allowed while custom resource definition is terminating"

    # --- scale ----------------------------------------------------------------------------

    def to_scale(self, obj: dict) -> dict:
        p = self.scale_paths or {}
        spec, _ = nested(obj, p.get("specReplicasPath", ".spec.replicas"))
        status, _ = nested(obj, p.get("statusReplicasPath", ".status.replicas"))
        selector, _ = nested(obj, p["labelSelectorPath"]) if p.get("labelSelectorPath") else ("", False)
        return base.scale_of(obj, spec if isinstance(spec, int) else 0, status if isinstance(status, int) else 0,
                             selector if isinstance(selector, str) else "")

    def scaled(self, obj: dict, replicas: int) -> dict:
        parts = _split((self.scale_paths or {}).get("specReplicasPath", ".spec.replicas"))
        cur = obj
        for part in parts[:-1]:
            if not isinstance(cur.get(part), dict):
                cur[part] = {}
            cur = cur[part]
        cur[parts[-1]] = replicas
        return obj

    # --- presentation ---------------------------------------------------------------------

    def present(self, obj: dict) -> dict:
        """As this version shows it: its apiVersion, pruned and defaulted by its schema."""
        out = copy.deepcopy(obj)
        out["apiVersion"] = f"{self.group}/{self.version}"
        structural.prune(out, self.schema)
        self.defaults(out)
        return out

    def row(self, obj: dict) -> list[Any]:
        cells: list[Any] = [obj["metadata"]["name"]]
        for steps, type_ in self._cells:
            found = jsonpath.find(steps, obj) if steps is not None else []
            cells.append(None if not found else jsonpath.text(found[0]) if type_ == "string"
                         else cell(type_, found[0]))
        return cells

    def openapi_schemas(self) -> dict[str, dict]:
        """This version's kind and list kind as OpenAPI v3 component schemas, as upstream's builder
        makes them (x-kubernetes-group-version-kind names them for kubectl)."""
        kind, list_kind = self.resource.kind, self.list_kind
        name = rest_friendly(self.group, self.version, kind)
        s = copy.deepcopy(self.schema) if self.schema else {"type": "object"}
        props = s.setdefault("properties", {})
        props["apiVersion"] = {"description": API_VERSION_DOC, "type": "string"}
        props["kind"] = {"description": KIND_DOC, "type": "string"}
        props["metadata"] = {"allOf": [{"$ref": OBJECT_META}], "description": METADATA_DOC}
        _embedded_meta(s)
        gvk = {"group": self.group, "version": self.version, "kind": kind}
        s["x-kubernetes-group-version-kind"] = [gvk]
        lst = {"description": f"{list_kind} is a list of {kind}", "type": "object", "required": ["items"],
               "properties": {"apiVersion": {"description": API_VERSION_DOC, "type": "string"},
                              "items": {"description": f"List of {self.plural}. More info: https://git.k8s.io/"
                                        "community/contributors/devel/sig-architecture/api-conventions.md",
                                        "type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
                              "kind": {"description": KIND_DOC, "type": "string"},
                              "metadata": {"allOf": [{"$ref": LIST_META}], "description": LIST_METADATA_DOC}},
               "x-kubernetes-group-version-kind": [dict(gvk, kind=list_kind)]}
        return {name: s, rest_friendly(self.group, self.version, list_kind): lst}


OBJECT_META = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
API_VERSION_DOC = ("APIVersion defines the versioned schema of this representation of an object. Servers should "
                   "convert recognized schemas to the latest internal value, and may reject unrecognized values. More "
                   "info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")
KIND_DOC = ("Kind is a string value representing the REST resource this object represents. Servers may infer this "
            "from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
            "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
METADATA_DOC = ("Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/"
                "sig-architecture/api-conventions.md#metadata")
LIST_METADATA_DOC = ("Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/"
                     "sig-architecture/api-conventions.md#metadata")


def _embedded_meta(s: Any) -> None:
    """Embedded resources get apiVersion, kind and metadata in the published schema, as upstream's."""
    if not isinstance(s, dict):
        return
    for p in (s.get("properties") or {}).values():
        _embedded_meta(p)
    for k in ("items", "additionalProperties"):
        _embedded_meta(s.get(k))
    if s.get(structural.EMBEDDED):
        props = s.setdefault("properties", {})
        props["apiVersion"] = {"description": API_VERSION_DOC, "type": "string"}
        props["kind"] = {"description": KIND_DOC, "type": "string"}
        props["metadata"] = {"allOf": [{"$ref": OBJECT_META}], "description": METADATA_DOC}
        s["required"] = [*(s.get("required") or []), *[k for k in ("kind", "apiVersion")
                                                      if k not in (s.get("required") or [])]]


def cell(type_: str, value: Any) -> Any:
    """A printer column's cell from a JSON value, as upstream's cellForJSONValue."""
    if value is None:
        return None
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_ == "integer" and numeric:
        return int(value)
    if type_ == "number" and numeric:
        return float(value)
    if type_ == "boolean" and isinstance(value, bool):
        return value
    if type_ == "string" and isinstance(value, str):
        return value
    if type_ == "date" and isinstance(value, str):
        try:
            clock.parse(value)
        except ValueError:
            return "<invalid>"
        return tables.age(value)
    return None


class Registry:
    """The custom resources served now: for each Established CRD, each served version, under the
    CRD's accepted names. Rebuilt from the store when marked stale (the object layer marks it on
    every CRD write; crdcontroller.py on every CRD change it watches)."""

    def __init__(self, ctx: base.Context):
        self.ctx = ctx
        self.stale = True
        self.generation = 0
        self._by_path: dict[tuple[str, str, str], Resource] = {}
        self._strategies: dict[tuple[str, str, str], Strategy] = {}
        self._cache: dict[tuple[str, str, str], Strategy] = {}  # by (uid, resourceVersion, version)

    def invalidate(self) -> None:
        self.stale = True

    def refresh(self) -> None:
        if not self.stale:
            return
        self.stale = False
        crds, _ = self.ctx.store.list(key("customresourcedefinitions"))
        by_path: dict[tuple[str, str, str], Resource] = {}
        strategies: dict[tuple[str, str, str], Strategy] = {}
        cache: dict[tuple[str, str, str], Strategy] = {}
        for crd in crds:
            if not is_true(crd, "Established"):
                continue
            spec, acc = crd.get("spec") or {}, (crd.get("status") or {}).get("acceptedNames") or {}
            for ver in sorted(spec.get("versions") or [], key=lambda x: version_order(x.get("name", "")),
                              reverse=True):
                if not ver.get("served"):
                    continue
                subs = ver.get("subresources") or {}
                r = CustomResource(spec["group"], ver["name"], acc.get("plural") or spec["names"]["plural"],
                             acc.get("kind") or spec["names"]["kind"], namespaced=spec.get("scope") == "Namespaced",
                             short_names=tuple(acc.get("shortNames") or ()),
                             subresources=tuple(s for s in ("status", "scale") if s in subs),
                             categories=tuple(acc.get("categories") or ()),
                             verbs=TERMINATING_VERBS if is_true(crd, "Terminating") else VERBS,
                             singular_name=acc.get("singular") or "")
                ck = (crd["metadata"].get("uid", ""), crd["metadata"].get("resourceVersion", ""), ver["name"])
                s = self._cache.get(ck)
                if s is None or s.resource != r:
                    s = Strategy(r, self.ctx, crd, ver["name"])
                cache[ck] = s
                path = (r.group, r.version, r.plural)
                by_path[path] = r
                strategies[path] = s
        self._by_path, self._strategies, self._cache = by_path, strategies, cache
        self.generation += 1

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        self.refresh()
        return self._by_path.get((group, version, plural))

    def strategy(self, r: Resource) -> Strategy:
        self.refresh()
        s = self._strategies.get((r.group, r.version, r.plural))
        if s is None:
            raise KeyError(r)
        return s

    def resources(self) -> list[Resource]:
        self.refresh()
        return list(self._by_path.values())

    def strategies(self) -> list[Strategy]:
        self.refresh()
        return list(self._strategies.values())
