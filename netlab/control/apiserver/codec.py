"""Decoding a request's JSON into an object of the kind it is sent to, as upstream's decoder
does: the apiVersion and kind must match, field types must match the kind's schema, unknown
fields are refused under `fieldValidation=Strict` (both as the kind's strategy finds them: against
the schema of a built-in's model, or a custom resource's structural schema, which prunes them),
then the kind's own decoding (its strategy's)."""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

import yaml

from netlab.api.resources import Resource
from netlab.control.apiserver import schema
from netlab.control.apiserver.errors import bad_request, cannot_decode
from netlab.control.apiserver.strategies.base import Strategy


# Under fieldValidation=Warn (the default), the unknown fields decoding finds and drops, for the
# request's Warning headers: the HTTP layer sets a list for the request, decoding adds to it.
WARNINGS: ContextVar[list[str] | None] = ContextVar("warnings", default=None)


def loads(raw: bytes | str) -> Any:
    """A request body's JSON; a non-integer number keeps the text it was written as."""
    return json.loads(raw, parse_float=schema.Number)


class _Loader(yaml.SafeLoader):
    """YAML without timestamps: a time stays the string it was written as, as in JSON."""


_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def loads_yaml(raw: bytes) -> Any:
    """A YAML request body (an apply configuration, or application/yaml), as JSON would read it."""
    try:
        docs = list(yaml.load_all(raw, Loader=_Loader))
    except yaml.YAMLError as e:
        raise bad_request(f"error converting YAML to JSON: {e}") from None
    if len(docs) != 1:
        raise bad_request("the request body must hold one YAML document")
    return _json_types(docs[0])


def _json_types(v: Any) -> Any:
    """YAML's timestamps and other non-JSON scalars as the strings JSON would have."""
    if isinstance(v, dict):
        return {str(k): _json_types(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_types(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def decode(r: Resource, strategy: Strategy, obj: Any, strict: bool) -> dict:
    kind = r.kind
    if not isinstance(obj, dict):
        raise bad_request(f"the body of the request was not a {kind} object")
    if obj.get("apiVersion") and obj.get("kind") and (obj["apiVersion"], obj["kind"]) != (r.group_version, kind):
        raise bad_request(f"the API version in the data ({obj['apiVersion']}) does not match the expected API "
                          f"version ({r.group_version})" if obj["kind"] == kind else
                          f"the kind in the data ({obj['kind']}) does not match the expected kind ({kind})")
    obj.setdefault("apiVersion", r.group_version)
    obj.setdefault("kind", kind)
    warnings = None if strict else WARNINGS.get()
    problems = strategy.field_problems(obj, strict or warnings is not None)
    type_errors = [p for p in problems if not p.startswith("unknown field")]
    unknown = [p for p in problems if p.startswith("unknown field")]
    if type_errors:
        raise cannot_decode(r, kind, type_errors[0])
    if unknown and strict:
        raise cannot_decode(r, kind, f"strict decoding error: {', '.join(unknown)}")
    if unknown and warnings is not None:
        warnings += [w for w in unknown if w not in warnings]
    strategy.decode(obj)
    return obj
