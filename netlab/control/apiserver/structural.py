"""What a CRD's structural OpenAPI v3 schema does to a custom resource, as upstream's
apiextensions-apiserver does it: pruning of unknown fields (with their paths, for
`fieldValidation=Strict`), removal of nulls the schema does not allow, defaulting, validation
(types, formats, enums, patterns, bounds, required, the junctors) with kube-openapi's messages
mapped to field errors as upstream maps them, list-type `set`/`map` uniqueness, and the metadata
of embedded resources. The validation itself is the `jsonschema` library's (draft 4, which
OpenAPI v3.0 schemas follow), with Kubernetes' `nullable`, int-or-string and formats plugged in.

Schemas are the CRD's JSONSchemaProps as plain dicts."""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Iterator
from datetime import date
from functools import lru_cache
from typing import Any

from jsonschema import Draft4Validator, ValidationError, validators

from netlab.control.apiserver import schema as models
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.jsonpath import go_float
from netlab.control.apiserver.validation import FieldError

PRESERVE = "x-kubernetes-preserve-unknown-fields"
EMBEDDED = "x-kubernetes-embedded-resource"
INT_OR_STRING = "x-kubernetes-int-or-string"
LIST_TYPE = "x-kubernetes-list-type"
MAP_KEYS = "x-kubernetes-list-map-keys"
META_FIELDS = ("apiVersion", "kind", "metadata")


def _props(s: dict | None) -> dict:
    return (s or {}).get("properties") or {}


def _additional(s: dict | None) -> tuple[bool, dict | None]:
    """(whether the schema has additionalProperties, its schema), as upstream's Structural keeps it."""
    ap = (s or {}).get("additionalProperties")
    if ap is None:
        return False, None
    return True, ap if isinstance(ap, dict) else None


def _child(s: dict | None, k: str) -> dict | None:
    if k in _props(s):
        return _props(s)[k]
    return _additional(s)[1]


def _key(path: str, k: str) -> str:
    return f"{path}.{k}" if path else k


# --- pruning, nulls, defaults --------------------------------------------------------------

def prune(obj: Any, s: dict | None, root: bool = True) -> list[str]:
    """Drop the fields the schema does not know (in place); their paths, sorted, as upstream's
    pruning reports them (`spec.foo`, `spec.items[0].bar`). The root (and every embedded
    resource) keeps apiVersion, kind and metadata."""
    if root:
        s = dict(s or {}, **{EMBEDDED: True})
    out: list[str] = []
    _prune(obj, s, "", out)
    return sorted(out)


def _prune(x: Any, s: dict | None, path: str, out: list[str]) -> None:
    if s is not None and s.get(PRESERVE):
        _skip_prune(x, s, path, out)
        return
    if isinstance(x, dict):
        for k in list(x):
            if s is not None and s.get(EMBEDDED) and k in META_FIELDS:
                continue
            has_ap, ap = _additional(s)
            if k in _props(s):
                _prune(x[k], _props(s)[k], _key(path, k), out)
            elif s is not None and has_ap:
                _prune(x[k], ap, _key(path, k), out)
            else:
                if k not in META_FIELDS or path:
                    out.append(_key(path, k))
                del x[k]
    elif isinstance(x, list):
        for i, item in enumerate(x):
            _prune(item, (s or {}).get("items") if s is not None else None, f"{path}[{i}]", out)


def _skip_prune(x: Any, s: dict | None, path: str, out: list[str]) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        for k in list(x):
            if s.get(EMBEDDED) and k in META_FIELDS:
                continue
            has_ap, ap = _additional(s)
            if k in _props(s):
                _prune(x[k], _props(s)[k], _key(path, k), out)
            elif has_ap:
                _prune(x[k], ap, _key(path, k), out)
    elif isinstance(x, list):
        for i, item in enumerate(x):
            _skip_prune(item, s.get("items"), f"{path}[{i}]", out)


def prune_nulls(x: Any, s: dict | None) -> None:
    """Drop null values of fields that are neither nullable nor defaulted."""
    if isinstance(x, dict):
        for k in list(x):
            sub = _child(s, k)
            if x[k] is None and sub is not None and not sub.get("nullable") and sub.get("default") is None:
                del x[k]
            else:
                prune_nulls(x[k], sub)
    elif isinstance(x, list):
        for item in x:
            prune_nulls(item, (s or {}).get("items"))


def _non_nullable_null(x: Any, s: dict | None) -> bool:
    return x is None and s is not None and not s.get("nullable")


def default(x: Any, s: dict | None) -> None:
    """Set the schema's defaults where a field is missing (or null and not nullable), in place."""
    if s is None:
        return
    if isinstance(x, dict):
        for k, prop in _props(s).items():
            if prop.get("default") is None:
                continue
            if k not in x or _non_nullable_null(x[k], prop):
                x[k] = copy.deepcopy(prop["default"])
        has_ap, ap = _additional(s)
        for k in list(x):
            if k in _props(s):
                default(x[k], _props(s)[k])
            elif has_ap and ap is not None:
                if _non_nullable_null(x[k], ap):
                    x[k] = copy.deepcopy(ap.get("default"))
                default(x[k], ap)
    elif isinstance(x, list):
        items = s.get("items")
        for i in range(len(x)):
            if _non_nullable_null(x[i], items):
                x[i] = copy.deepcopy((items or {}).get("default"))
            default(x[i], items)


# --- validation ----------------------------------------------------------------------------

def go_repr(value: Any) -> str:
    """A value as upstream's field errors print it: Go's %v for scalars (strings quoted), %#v
    for maps and lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)}:{_go_inner(value[k])}" for k in sorted(value))
        return f"map[string]interface {{}}{{{inner}}}"
    if isinstance(value, list):
        return f"[]interface {{}}{{{', '.join(_go_inner(x) for x in value)}}}"
    return str(value)


def _go_inner(x: Any) -> str:
    if isinstance(x, str):
        return json.dumps(x)
    if x is None:
        return "interface {}(nil)"
    return go_repr(x)


def _invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "FieldValueInvalid", f"Invalid value: {go_repr(value)}: {detail}")


def _type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "FieldValueTypeInvalid", f"Invalid value: {go_repr(value)}: {detail}")


def _not_supported(path: str, value: Any, allowed: list[str]) -> FieldError:
    return FieldError(path, "FieldValueNotSupported", f"Unsupported value: {go_repr(value)}: supported values: "
                      + ", ".join(f'"{a}"' for a in allowed))


def _duplicate(path: str, value: Any) -> FieldError:
    return FieldError(path, "FieldValueDuplicate", f"Duplicate value: {go_repr(value)}")


def _json_type(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, int):
        return "integer"
    if isinstance(x, float):
        return "integer" if x == int(x) else "number"
    return {str: "string", list: "array", dict: "object"}.get(type(x), "object")


def _is_integer(checker, x: Any) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and x.is_integer())


def _type(validator, types, instance, schema) -> Iterator[ValidationError]:
    if instance is None and schema.get("nullable"):
        return
    types = types if isinstance(types, list) else [types]
    if not any(validator.is_type(instance, t) for t in types):
        yield ValidationError("type", validator="type", validator_value=types, instance=instance)


def _pattern(validator, pattern, instance, schema) -> Iterator[ValidationError]:
    if isinstance(instance, str):
        rx = _regex(pattern)
        if rx is not None and not rx.search(instance):
            yield ValidationError("pattern", validator="pattern", validator_value=pattern, instance=instance)


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern | None:
    """Go's RE2 patterns, mostly Python's too; one Python cannot read is not enforced."""
    try:
        return re.compile(pattern.replace(r"\z", r"\Z"))
    except re.error:
        return None


def _format(validator, fmt, instance, schema) -> Iterator[ValidationError]:
    if isinstance(instance, str):
        check = FORMATS.get(fmt.replace("-", ""))
        if check is not None and not check(instance):
            yield ValidationError("format", validator="format", validator_value=fmt, instance=instance)


def _errors_of(validator, instance, sub) -> list[ValidationError]:
    return list(validator.descend(instance, sub))


def _any_of(validator, subs, instance, schema) -> Iterator[ValidationError]:
    best: list[ValidationError] | None = None
    for sub in subs:
        errs = _errors_of(validator, instance, sub)
        if not errs:
            return
        if best is None or len(errs) < len(best):
            best = errs
    yield ValidationError("anyOf", validator="anyOf", validator_value=subs, instance=instance)
    yield from best or []


def _one_of(validator, subs, instance, schema) -> Iterator[ValidationError]:
    results = [_errors_of(validator, instance, sub) for sub in subs]
    valid = sum(1 for r in results if not r)
    if valid == 1:
        return
    extra = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
    yield ValidationError("oneOf", validator="oneOf", validator_value=extra, instance=instance)
    if valid == 0:
        yield from min(results, key=len)


def _all_of(validator, subs, instance, schema) -> Iterator[ValidationError]:
    valid = 0
    for sub in subs:
        errs = _errors_of(validator, instance, sub)
        valid += not errs
        yield from errs
    if valid != len(subs):
        yield ValidationError("allOf", validator="allOf", validator_value=". None validated" if not valid else "",
                              instance=instance)


def _required(validator, names, instance, schema) -> Iterator[ValidationError]:
    if isinstance(instance, dict):
        for k in names:
            if k not in instance:
                yield ValidationError("required", validator="required", validator_value=[k], instance=instance)


def _not(validator, sub, instance, schema) -> Iterator[ValidationError]:
    if not _errors_of(validator, instance, sub):
        yield ValidationError("not", validator="not", validator_value=sub, instance=instance)


_KubeValidator = validators.extend(
    Draft4Validator,
    validators={"type": _type, "pattern": _pattern, "format": _format, "anyOf": _any_of, "oneOf": _one_of,
                "allOf": _all_of, "not": _not, "required": _required},
    type_checker=Draft4Validator.TYPE_CHECKER.redefine("integer", _is_integer))

_COPIED = ("format", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
           "maxItems", "minItems", "uniqueItems", "multipleOf", "maxProperties", "minProperties", "required", "enum",
           "nullable")


def to_jsonschema(s: dict) -> dict:
    """A structural schema as the JSON Schema the validator takes: only what validates values
    (x-kubernetes-* and defaults left out), int-or-string as the two types, as upstream's
    conversion into kube-openapi's spec.Schema does."""
    out: dict[str, Any] = {k: s[k] for k in _COPIED if s.get(k) is not None}
    if s.get(INT_OR_STRING):
        out["type"] = ["integer", "string"]
    elif s.get("type"):
        out["type"] = s["type"]
    if isinstance(s.get("properties"), dict):
        out["properties"] = {k: to_jsonschema(p) for k, p in s["properties"].items() if isinstance(p, dict)}
    if isinstance(s.get("items"), dict):
        out["items"] = to_jsonschema(s["items"])
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        out["additionalProperties"] = to_jsonschema(ap)
    elif isinstance(ap, bool) and not ap:
        out["additionalProperties"] = False
    for k in ("allOf", "anyOf", "oneOf"):
        if isinstance(s.get(k), list):
            out[k] = [to_jsonschema(x) for x in s[k] if isinstance(x, dict)]
    if isinstance(s.get("not"), dict):
        out["not"] = to_jsonschema(s["not"])
    return out


class Validator:
    """A compiled validator for one version's schema."""

    def __init__(self, s: dict):
        self.schema = s
        self._v = _KubeValidator(to_jsonschema(s))

    def errors(self, obj: Any, prefix: str = "") -> list[FieldError]:
        """The field errors of `obj` as upstream's ValidateCustomResource gives them (with
        `prefix`, the path `obj` is at: "status" for the status subresource's schema)."""
        out: list[FieldError] = []
        for e in sorted(self._v.iter_errors(obj), key=_order):
            out += _field_errors(e, prefix)
        return out


def _order(e: ValidationError) -> tuple:
    return tuple(str(p) for p in e.absolute_path)


def _name(path: list) -> str:
    """kube-openapi's name of a place: keys joined by dots, indices in brackets."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _field_errors(e: ValidationError, prefix: str) -> list[FieldError]:
    name = _name(list(e.absolute_path))
    path = f"{prefix}.{name}" if prefix and name else (prefix or name or "<nil>")
    kw, x, want = e.validator, e.instance, e.validator_value
    msg = f"{name} in body"
    if kw == "type":
        actual = _json_type(x)
        return [_type_invalid(path, actual, f'{msg} must be of type {",".join(want)}: "{actual}"')]
    if kw == "required":
        missing = [k for k in want if isinstance(x, dict) and k not in x]
        return [v.required(f"{path}.{k}" if path != "<nil>" else k) for k in missing]
    if kw == "enum":
        allowed = [a if isinstance(a, str) else json.dumps(a, separators=(",", ":")) for a in want]
        return [_not_supported(path, x, allowed)]
    if kw == "maxLength":
        return [FieldError(path, "FieldValueTooLong", f"Too long: may not be longer than {want}")]
    if kw == "minLength":
        return [_invalid(path, x, f"{msg} should be at least {want} chars long")]
    if kw == "pattern":
        return [_invalid(path, x, f"{msg} should match '{want}'")]
    if kw in ("maximum", "minimum"):
        exclusive = (e.schema or {}).get("exclusiveMaximum" if kw == "maximum" else "exclusiveMinimum")
        rel = ("less than" if kw == "maximum" else "greater than") + ("" if exclusive else " or equal to")
        return [_invalid(path, x, f"{msg} should be {rel} {go_float(float(want))}")]
    if kw == "multipleOf":
        return [_invalid(path, x, f"{msg} should be a multiple of {go_float(float(want))}")]
    if kw in ("maxItems", "maxProperties"):
        return [FieldError(path, "FieldValueTooMany", f"Too many: {len(x)}: must have at most {want} items")]
    if kw == "minItems":
        return [_invalid(path, len(x), f"{msg} should have at least {want} items")]
    if kw == "minProperties":
        return [_invalid(path, len(x), f"{msg} should have at least {want} properties")]
    if kw == "uniqueItems":
        return [_invalid(path, x, f"{msg} shouldn't contain duplicates")]
    if kw == "format":
        return [_type_invalid(path, x, f'{msg} must be of type {want}: "{x}"')]
    if kw == "additionalProperties":
        extra = sorted(set(x) - set((e.schema or {}).get("properties") or {})) if isinstance(x, dict) else []
        return [_invalid(path, x, f"{name}.{k} in body is a forbidden property") for k in extra]
    junctor = {"anyOf": f'"{name}" must validate at least one schema (anyOf)',
               "oneOf": f'"{name}" must validate one and only one schema (oneOf). {want}',
               "allOf": f'"{name}" must validate all the schemas (allOf){want}',
               "not": f'"{name}" must not validate the schema (not)'}
    if kw in junctor:
        return [FieldError("<nil>", "FieldValueInvalid", f'Invalid value: "": {junctor[kw]}')]
    return [_invalid(path, x, e.message)]


# --- formats (upstream's supported ones; any other format is not checked) ----------------

def _uri(s: str) -> bool:
    u = urllib.parse.urlsplit(s)
    return bool(u.scheme) or s.startswith("/")


def _ip(version: int):
    def check(s: str) -> bool:
        try:
            return ipaddress.ip_address(s).version == version
        except ValueError:
            return False
    return check


def _cidr(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
        return "/" in s
    except ValueError:
        return False


def _date(s: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        return False
    try:
        date.fromisoformat(s)
        return True
    except ValueError:
        return False


def _rx(pattern: str, flags: int = 0):
    rx = re.compile(pattern, flags)
    return lambda s: bool(rx.fullmatch(s))


_UUID = r"[0-9a-f]{8}-?[0-9a-f]{4}-?%s[0-9a-f]{3}-?%s[0-9a-f]{3}-?[0-9a-f]{12}"
FORMATS = {
    "bsonobjectid": _rx(r"[0-9a-fA-F]{24}"),
    "uri": _uri,
    "email": _rx(r"[^@\s]+@[^@\s]+"),
    "hostname": lambda s: len(s) <= 255 and all(_rx(r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?")(p)
                                                for p in s.rstrip(".").split(".")),
    "ipv4": _ip(4),
    "ipv6": _ip(6),
    "cidr": _cidr,
    "mac": _rx(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}|([0-9A-Fa-f]{2}[:-]){7}[0-9A-Fa-f]{2}"
               r"|([0-9A-Fa-f]{2}[:-]){19}[0-9A-Fa-f]{2}|([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}"),
    "uuid": _rx(_UUID % ("", "[0-9a-f]"), re.I),
    "uuid3": _rx(_UUID % ("3", "[0-9a-f]"), re.I),
    "uuid4": _rx(_UUID % ("4", "[89ab]"), re.I),
    "uuid5": _rx(_UUID % ("5", "[89ab]"), re.I),
    "isbn": lambda s: FORMATS["isbn10"](s) or FORMATS["isbn13"](s),
    "isbn10": _rx(r"(?:ISBN(?:-10)?:? )?(?=[0-9X]{10}$|(?=(?:[0-9]+[- ]){3})[- 0-9X]{13}$)[0-9]{1,5}[- ]?"
                  r"[0-9]+[- ]?[0-9]+[- ]?[0-9X]"),
    "isbn13": _rx(r"(?:ISBN(?:-13)?:? )?(?=[0-9]{13}$|(?=(?:[0-9]+[- ]){4})[- 0-9]{17}$)97[89][- ]?[0-9]{1,5}"
                  r"[- ]?[0-9]+[- ]?[0-9]+[- ]?[0-9]"),
    "creditcard": lambda s: bool(re.fullmatch(
        r"(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}"
        r"|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11})", re.sub(r"\D", "", s))),
    "ssn": _rx(r"\d{3}[- ]?\d{2}[- ]?\d{4}"),
    "hexcolor": _rx(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})"),
    "rgbcolor": _rx(r"rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)"),
    "byte": lambda s: models.base64_error(s) is None,
    "password": lambda s: True,
    "date": _date,
    "duration": _rx(r"[-+]?((\d+(\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h|d|w|[a-zA-Z]+)\s*)+"),
    "datetime": _rx(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?"),
}


# --- list types and embedded resources ----------------------------------------------------

def list_errors(x: Any, s: dict | None, path: str = "") -> list[FieldError]:
    """Duplicates in lists of x-kubernetes-list-type `set` (equal items) and `map` (equal keys)."""
    if s is None:
        return []
    out: list[FieldError] = []
    if isinstance(x, dict):
        for k, val in x.items():
            out += list_errors(val, _child(s, k), _key(path, k))
    elif isinstance(x, list):
        kind = s.get(LIST_TYPE)
        if kind == "set":
            out += [_duplicate(f"{path}[{i}]", x[i]) for i in _repeats([_canon(it) for it in x])]
        elif kind == "map":
            bad = next((i for i, it in enumerate(x) if it is not None and not isinstance(it, dict)), None)
            if bad is not None:
                out.append(_invalid(f"{path}[{bad}]", x[bad], "must be an object for an array of list-type map"))
            else:
                keys = s.get(MAP_KEYS) or []
                ids = [_canon({k: it[k] for k in keys if k in it}) if isinstance(it, dict) else "{}" for it in x]
                for i in _repeats(ids):
                    item = x[i] if isinstance(x[i], dict) else {}
                    out.append(_duplicate(f"{path}[{i}]", {k: item[k] for k in keys if k in item}))
        for i, it in enumerate(x):
            out += list_errors(it, s.get("items"), f"{path}[{i}]")
    return out


def _canon(x: Any) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"))


def _repeats(ids: list[str]) -> list[int]:
    """The index of each value's second appearance, as upstream reports a duplicate once."""
    seen: dict[str, int] = {}
    out = []
    for i, k in enumerate(ids):
        seen[k] = seen.get(k, 0) + 1
        if seen[k] == 2:
            out.append(i)
    return out


def embedded_errors(x: Any, s: dict | None, path: str = "") -> list[FieldError]:
    """Embedded resources (x-kubernetes-embedded-resource) need an apiVersion and a kind, and
    their metadata is checked as an object's."""
    if s is None:
        return []
    out: list[FieldError] = []
    if isinstance(x, dict):
        if s.get(EMBEDDED) and path:
            out += _embedded(x, path)
        for k, val in x.items():
            out += embedded_errors(val, _child(s, k), _key(path, k))
    elif isinstance(x, list):
        for i, it in enumerate(x):
            out += embedded_errors(it, s.get("items"), f"{path}[{i}]")
    return out


def _embedded(x: dict, path: str) -> list[FieldError]:
    out = []
    for k in ("apiVersion", "kind"):
        if k not in x:
            out.append(FieldError(f"{path}.{k}", "FieldValueRequired", "Required value: must not be empty"))
        elif not isinstance(x[k], str):
            out.append(_invalid(f"{path}.{k}", x[k], "must be a string"))
        elif not x[k]:
            out.append(v.invalid(f"{path}.{k}", x[k], "must not be empty"))
        elif k == "kind" and (len(x[k]) > 63 or not v.DNS1035_LABEL.match(x[k].lower())):
            out.append(v.invalid(f"{path}.kind", x[k], "may have mixed case, but should otherwise match: "
                                 + v.dns1035_msg()))
    meta = x.get("metadata")
    if isinstance(meta, dict):
        name = meta.get("name")
        if isinstance(name, str) and name:
            for bad in ("/", "%"):
                if bad in name:
                    out.append(v.invalid(f"{path}.metadata.name", name, f"may not contain '{bad}'"))
            if name in (".", ".."):
                out.append(v.invalid(f"{path}.metadata.name", name, f"may not be '{name}'"))
        out += v.check_labels(meta.get("labels"), f"{path}.metadata.labels")
        out += v.check_annotations(meta.get("annotations"), f"{path}.metadata.annotations")
    return out


def metadata_problems(obj: dict, strict: bool) -> list[str]:
    """A custom resource's metadata as ObjectMeta: type problems always; unknown fields (which
    are dropped) when strict, as `unknown field "metadata.x"`."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return []
    problems = models.check("V1ObjectMeta", meta, strict)
    known = models.schemas().get("V1ObjectMeta") or {}
    for k in list(meta):
        if k not in known:
            del meta[k]
    return [p.replace('unknown field "', 'unknown field "metadata.', 1) for p in problems]
