"""A CustomResourceDefinition's validation, as upstream's apiextensions validation does it for
the essentials: the names, `metadata.name` as `<plural>.<group>`, the scope, the versions (one
storage version, unique DNS-1035 names), the schemas (required, structural, the OpenAPI v3 subset
Kubernetes takes, list and map types), the subresources, the printer columns, the conversion
strategy, the stored versions, the approval annotation of protected groups, and what an update
may not change.

Field paths are upstream's, which name the internal type: when every version has the same
schema (subresources, columns) it is reported at `spec.validation.openAPIV3Schema`
(`spec.subresources`, `spec.additionalPrinterColumns`), as upstream's conversion hoists it there."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from netlab.control.apiserver import validation as v
from netlab.control.apiserver.structural import EMBEDDED, INT_OR_STRING, LIST_TYPE, MAP_KEYS, PRESERVE, go_repr
from netlab.control.apiserver.validation import FieldError

APPROVAL = "api-approved.kubernetes.io"
SCOPES = ["Cluster", "Namespaced"]
COLUMN_TYPES = ["boolean", "date", "integer", "number", "string"]
COLUMN_FORMATS = ["byte", "date", "date-time", "double", "float", "int32", "int64", "password"]
OPENAPI_TYPES = ["array", "boolean", "integer", "number", "object", "string"]
ROOT_FIELDS_WITH_STATUS = ["Description", "Type", "Format", "Title", "Maximum", "ExclusiveMaximum", "Minimum",
                           "ExclusiveMinimum", "MaxLength", "MinLength", "Pattern", "MaxItems", "MinItems",
                           "UniqueItems", "MultipleOf", "Required", "Items", "Properties", "ExternalDocs", "Example",
                           "XPreserveUnknownFields", "XValidations"]
_ROOT_KEYS_WITH_STATUS = {"description", "type", "format", "title", "maximum", "exclusiveMaximum", "minimum",
                          "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
                          "uniqueItems", "multipleOf", "required", "items", "properties", "externalDocs", "example",
                          PRESERVE, "x-kubernetes-validations"}
META_FIELDS = ("metadata", "kind", "apiVersion")


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "FieldValueInvalid", f"Invalid value: {go_repr(value)}: {detail}")


def forbidden(path: str, detail: str) -> FieldError:
    return v.forbidden(path, detail)


def not_supported(path: str, value: Any, allowed: list[str]) -> FieldError:
    return v.not_supported(path, value, allowed)


def dns1035(value: Any) -> list[str]:
    """upstream's IsDNS1035Label messages."""
    out = []
    if not isinstance(value, str):
        return [v.dns1035_msg()]
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not v.DNS1035_LABEL.match(value):
        out.append(v.dns1035_msg())
    return out


def dns1123_subdomain(value: str) -> list[str]:
    out = []
    if len(value) > 253:
        out.append("must be no more than 253 characters")
    if not v.DNS1123_SUBDOMAIN.match(value):
        out.append(v.subdomain_msg())
    return out


def _versions_text(versions: list) -> str:
    """spec.versions as upstream's error prints it (Go's %#v of the internal type, in short)."""
    items = []
    for ver in versions:
        ver = ver if isinstance(ver, dict) else {}
        items.append(f'apiextensions.CustomResourceDefinitionVersion{{Name:"{ver.get("name", "")}", '
                     f'Served:{str(bool(ver.get("served"))).lower()}, Storage:{str(bool(ver.get("storage"))).lower()}'
                     ", ...}")
    return "[]apiextensions.CustomResourceDefinitionVersion{" + ", ".join(items) + "}"


def hoisted(spec: dict) -> tuple[dict | None, dict | None, list | None]:
    """The schema, subresources and columns every version has alike (as upstream's conversion
    into the internal type moves them to the spec), else None."""
    versions = [x for x in spec.get("versions") or [] if isinstance(x, dict)]
    if not versions:
        return None, None, None

    def same(get) -> Any:
        first = get(versions[0])
        return first if first and all(get(x) == first for x in versions) else None
    return same(lambda x: x.get("schema")), same(lambda x: x.get("subresources")), \
        same(lambda x: x.get("additionalPrinterColumns"))


def validate(crd: dict, old: dict | None = None) -> list[FieldError]:
    meta = crd.get("metadata") or {}
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    errs: list[FieldError] = []
    name = meta.get("name")
    if name and name != f"{names.get('plural', '')}.{spec.get('group', '')}":
        errs.append(v.invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if old is not None:
        errs += _validate_update(spec, old)
    errs += _validate_spec(spec)
    errs += _validate_names(crd.get("status", {}).get("acceptedNames") or {}, "status.acceptedNames")
    errs += _validate_stored_versions(crd)
    errs += _validate_approval(crd, old)
    if spec.get("preserveUnknownFields") is True and not (old and (old.get("spec") or {}).get("preserveUnknownFields")):
        errs.append(invalid("spec.preserveUnknownFields", True, "cannot set to true, set "
                            "x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead"))
    return errs


def established(crd: dict) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])


def _validate_update(spec: dict, old: dict) -> list[FieldError]:
    """What may not change (upstream's ValidateCustomResourceDefinitionSpecUpdate): the scope and
    the kind once established, the group and the plural ever."""
    old_spec = old.get("spec") or {}
    errs = []
    checks = [("spec.group", spec.get("group"), old_spec.get("group")),
              ("spec.names.plural", (spec.get("names") or {}).get("plural"), (old_spec.get("names") or {}).get("plural"))]
    if established(old):
        checks[0:0] = [("spec.scope", spec.get("scope"), old_spec.get("scope")),
                       ("spec.names.kind", (spec.get("names") or {}).get("kind"),
                        (old_spec.get("names") or {}).get("kind"))]
    for path, new_v, old_v in checks:
        if new_v != old_v:
            errs.append(invalid(path, new_v if new_v is not None else "", "field is immutable"))
    return errs


def _validate_spec(spec: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    group = spec.get("group")
    if not group:
        errs.append(required("spec.group"))
    elif problems := dns1123_subdomain(group):
        errs.append(v.invalid("spec.group", group, ",".join(problems)))
    elif len(group.split(".")) < 2:
        errs.append(v.invalid("spec.group", group, "should be a domain with at least one dot"))
    scope = spec.get("scope")
    if not scope:
        errs.append(required("spec.scope"))
    elif scope not in SCOPES:
        errs.append(not_supported("spec.scope", scope, SCOPES))

    versions = [x if isinstance(x, dict) else {} for x in spec.get("versions") or []]
    top_schema, top_sub, top_cols = hoisted(spec)
    if top_schema is None or top_schema.get("openAPIV3Schema") is None:
        for i, ver in enumerate(versions):
            if (ver.get("schema") or {}).get("openAPIV3Schema") is None:
                errs.append(required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"))
    storage = 0
    seen: set[str] = set()
    unique = True
    any_status = any("status" in ((x.get("subresources") or {})) for x in versions)
    for i, ver in enumerate(versions):
        at = f"spec.versions[{i}]"
        storage += ver.get("storage") is True
        if ver.get("name") in seen:
            unique = False
        seen.add(ver.get("name"))
        if problems := dns1035(ver.get("name") or ""):
            errs.append(v.invalid(f"{at}.name", ver.get("name") or "", ",".join(problems)))
        if ver.get("deprecationWarning") is not None:
            errs += _deprecation(ver, f"{at}.deprecationWarning")
        status_enabled = "status" in ((top_sub if top_sub is not None else ver.get("subresources")) or {})
        if top_schema is None and ver.get("schema"):
            errs += validate_schema(ver["schema"].get("openAPIV3Schema"), f"{at}.schema", status_enabled)
        if top_sub is None:
            errs += _validate_subresources(ver.get("subresources"), f"{at}.subresources")
        if top_cols is None:
            for j, c in enumerate(ver.get("additionalPrinterColumns") or []):
                errs += _validate_column(c, f"{at}.additionalPrinterColumns[{j}]")
        for j, f in enumerate(ver.get("selectableFields") or []):
            if not (f or {}).get("jsonPath"):
                errs.append(required(f"{at}.selectableFields[{j}].jsonPath"))
    if not unique:
        errs.append(FieldError("spec.versions", "FieldValueInvalid",
                               f"Invalid value: {_versions_text(versions)}: must contain unique version names"))
    if storage != 1:
        errs.append(FieldError("spec.versions", "FieldValueInvalid", f"Invalid value: {_versions_text(versions)}: "
                               "must have exactly one version marked as storage version"))
    names = spec.get("names") or {}
    for k in ("plural", "singular", "kind", "listKind"):
        if not names.get(k):
            errs.append(required(f"spec.names.{k}"))
    errs += _validate_names(names, "spec.names")
    if top_schema is not None:
        errs += validate_schema(top_schema.get("openAPIV3Schema"), "spec.validation", any_status)
    if top_sub is not None:
        errs += _validate_subresources(top_sub, "spec.subresources")
    for j, c in enumerate(top_cols or []):
        errs += _validate_column(c, f"spec.additionalPrinterColumns[{j}]")
    errs += _validate_conversion(spec.get("conversion"))
    return errs


def _deprecation(ver: dict, path: str) -> list[FieldError]:
    warning = ver["deprecationWarning"]
    if not ver.get("deprecated"):
        return [v.invalid(path, warning, "can only be set for deprecated versions")]
    errs = []
    if len(warning) > 256:
        errs.append(v.invalid(path, warning, "must be <= 256 characters long"))
    if not warning:
        errs.append(v.invalid(path, warning, "must not be an empty string"))
    for i, ch in enumerate(warning):
        if not ch.isprintable():
            errs.append(v.invalid(path, warning, "must only contain printable UTF-8 characters; non-printable "
                                  f"character found at index {i}"))
            break
    return errs


def _validate_names(names: dict, at: str) -> list[FieldError]:
    errs = []
    for k in ("plural", "singular"):
        if names.get(k) and (problems := dns1035(names[k])):
            errs.append(v.invalid(f"{at}.{k}", names[k], ",".join(problems)))
    for k in ("kind", "listKind"):
        if names.get(k) and (problems := dns1035(str(names[k]).lower())):
            errs.append(v.invalid(f"{at}.{k}", names[k], "may have mixed case, but should otherwise match: "
                                  + ",".join(problems)))
    for i, short in enumerate(names.get("shortNames") or []):
        if problems := dns1035(short):
            errs.append(v.invalid(f"{at}.shortNames[{i}]", short, ",".join(problems)))
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.append(v.invalid(f"{at}.listKind", names["listKind"], "kind and listKind may not be the same"))
    for i, cat in enumerate(names.get("categories") or []):
        if problems := dns1035(cat):
            errs.append(v.invalid(f"{at}.categories[{i}]", cat, ",".join(problems)))
    return errs


def _validate_stored_versions(crd: dict) -> list[FieldError]:
    stored = (crd.get("status") or {}).get("storedVersions") or []
    versions = [x for x in (crd.get("spec") or {}).get("versions") or [] if isinstance(x, dict)]
    names = {x.get("name") for x in versions}
    errs = []
    if not stored:
        return [FieldError("status.storedVersions", "FieldValueInvalid",
                           "Invalid value: []string(nil): must have at least one stored version")]
    for ver in versions:
        if ver.get("storage") and ver.get("name") not in stored:
            errs.append(FieldError("status.storedVersions", "FieldValueInvalid", "Invalid value: []string{"
                                   + ", ".join(f'"{s}"' for s in stored) + f"}}: must have the storage version "
                                   f"{ver.get('name')}"))
    for i, s in enumerate(stored):
        if s not in names:
            errs.append(v.invalid(f"status.storedVersions[{i}]", s, f"missing from spec.versions; {s} was "
                                  f"previously a storage version, and must remain in spec.versions until a storage "
                                  f"migration ensures no data remains persisted in {s} and removes {s} from "
                                  "status.storedVersions"))
    return errs


def protected_group(group: str) -> bool:
    return group in ("k8s.io", "kubernetes.io") or group.endswith((".k8s.io", ".kubernetes.io"))


def approval_state(annotations: dict) -> tuple[str, str]:
    """(state, reason) of the api-approved.kubernetes.io annotation, as upstream's GetAPIApprovalState."""
    value = (annotations or {}).get(APPROVAL, "")
    if not value:
        return "Missing", (f'protected groups must have approval annotation "{APPROVAL}", see '
                           "https://github.com/kubernetes/enhancements/pull/1111")
    if value.startswith("unapproved"):
        return "Bypassed", f'not approved: "{value}"'
    u = urllib.parse.urlsplit(value)
    if u.scheme and u.netloc:
        return "Approved", f"approved in {value}"
    return "Invalid", (f'protected groups must have approval annotation "{APPROVAL}" with either a URL or a reason '
                       'starting with "unapproved", see https://github.com/kubernetes/enhancements/pull/1111')


def _validate_approval(crd: dict, old: dict | None) -> list[FieldError]:
    if not protected_group((crd.get("spec") or {}).get("group") or ""):
        return []
    state, reason = approval_state((crd.get("metadata") or {}).get("annotations") or {})
    if old is not None and approval_state((old.get("metadata") or {}).get("annotations") or {})[0] == state:
        return []
    path = f"metadata.annotations[{APPROVAL}]"
    if state == "Missing":
        return [required(path, reason)]
    if state == "Invalid":
        return [v.invalid(path, (crd["metadata"].get("annotations") or {}).get(APPROVAL, ""), reason)]
    return []


def _validate_conversion(conv: Any) -> list[FieldError]:
    if not isinstance(conv, dict):
        return []
    strategy = conv.get("strategy")
    if not strategy:
        return [required("spec.conversion.strategy")]
    if strategy not in ("None", "Webhook"):
        return [not_supported("spec.conversion.strategy", strategy, ["None", "Webhook"])]
    errs = []
    if strategy == "Webhook":
        webhook = conv.get("webhook") or {}
        cc = webhook.get("clientConfig")
        if not cc:
            errs.append(required("spec.conversion.webhookClientConfig", "required when strategy is set to Webhook"))
        elif bool(cc.get("url")) == bool(cc.get("service")):
            errs.append(required("spec.conversion.webhookClientConfig", "exactly one of url or service is required"))
        if not webhook.get("conversionReviewVersions"):
            errs.append(required("spec.conversion.conversionReviewVersions"))
    elif conv.get("webhook"):
        errs.append(forbidden("spec.conversion.webhookClientConfig", "should not be set when strategy is not set to "
                              "Webhook"))
    return errs


def _simple_json_path(s: Any, path: str) -> list[FieldError]:
    if not s:
        return [v.invalid(path, s or "", "must not be empty")]
    if not str(s).startswith("."):
        return [v.invalid(path, s, "must be a simple json path starting with .")]
    return []


def _validate_subresources(sub: Any, at: str) -> list[FieldError]:
    if not isinstance(sub, dict) or not isinstance(sub.get("scale"), dict):
        return []
    scale, errs = sub["scale"], []
    for k, under in (("specReplicasPath", (".spec.",)), ("statusReplicasPath", (".status.",))):
        p = f"{at}.scale.{k}"
        if not scale.get(k):
            errs.append(required(p))
        elif e := _simple_json_path(scale[k], p):
            errs += e
        elif not scale[k].startswith(under):
            errs.append(v.invalid(p, scale[k], f"should be a json path under {under[0].rstrip('.')}"))
    sel = scale.get("labelSelectorPath")
    if sel:
        p = f"{at}.scale.labelSelectorPath"
        if e := _simple_json_path(sel, p):
            errs += e
        elif not sel.startswith((".spec.", ".status.")):
            errs.append(v.invalid(p, sel, "should be a json path under either .spec or .status"))
    return errs


def _validate_column(col: Any, at: str) -> list[FieldError]:
    col = col if isinstance(col, dict) else {}
    errs = []
    if not col.get("name"):
        errs.append(required(f"{at}.name"))
    if not col.get("type"):
        errs.append(required(f"{at}.type", f"must be one of {','.join(COLUMN_TYPES)}"))
    elif col["type"] not in COLUMN_TYPES:
        errs.append(v.invalid(f"{at}.type", col["type"], f"must be one of {','.join(COLUMN_TYPES)}"))
    if col.get("format") and col["format"] not in COLUMN_FORMATS:
        errs.append(v.invalid(f"{at}.format", col["format"], f"must be one of {','.join(COLUMN_FORMATS)}"))
    if not col.get("jsonPath"):
        errs.append(required(f"{at}.JSONPath"))
    else:
        errs += _simple_json_path(col["jsonPath"], f"{at}.JSONPath")
    return errs


# --- the schema -------------------------------------------------------------------------

def validate_schema(schema: Any, at: str, status_enabled: bool) -> list[FieldError]:
    """upstream's validateCustomResourceDefinitionValidation for one openAPIV3Schema at `at`
    (spec.validation or spec.versions[i].schema)."""
    if not isinstance(schema, dict):
        return []
    root = f"{at}.openAPIV3Schema"
    errs: list[FieldError] = []
    if status_enabled:
        if schema.get("type") not in (None, "", "object"):
            errs.append(v.invalid(f"{root}.type", schema["type"], 'only "object" is allowed as the type at the root '
                                  "of the schema if the status subresource is enabled"))
        elif any(k not in _ROOT_KEYS_WITH_STATUS for k, val in schema.items() if val not in (None, False, "", [], {})):
            errs.append(FieldError(root, "FieldValueInvalid", "Invalid value: apiextensions.JSONSchemaProps{...}: "
                                   f"only [{' '.join(ROOT_FIELDS_WITH_STATUS)}] fields are allowed at the root of "
                                   "the schema if the status subresource is enabled"))
    if schema.get("nullable"):
        errs.append(forbidden(f"{root}.nullable", "nullable cannot be true at the root"))
    errs += sorted(structural_errors(schema, root), key=str)
    errs += openapi_errors(schema, root, root=True)
    return errs


ROOT, ITEM, FIELD = "root", "item", "field"
_TYPE_MISSING = {ROOT: "must not be empty at the root", ITEM: "must not be empty for specified array items",
                 FIELD: "must not be empty for specified object fields"}
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]


def structural_errors(s: dict, path: str, level: str = ROOT) -> list[FieldError]:
    """Why a schema is not structural (upstream's ValidateStructural, with its completeness check)."""
    return _invariants(s, path, level) + _completeness(s, s, path, path)


def _invariants(s: Any, path: str, level: str) -> list[FieldError]:
    if not isinstance(s, dict):
        return []
    errs: list[FieldError] = []
    t = s.get("type") or ""
    if t == "array" and not s.get("items"):
        errs.append(required(f"{path}.items", "must be specified"))
    if isinstance(s.get("items"), dict):
        errs += _invariants(s["items"], f"{path}.items", ITEM)
    for k, p in (s.get("properties") or {}).items():
        errs += _invariants(p, f"{path}.properties[{k}]", FIELD)
    if s.get("additionalProperties") is not None:
        if level == ROOT:
            errs.append(forbidden(f"{path}.additionalProperties", "must not be used at the root"))
        if isinstance(s["additionalProperties"], dict):
            errs += _invariants(s["additionalProperties"], f"{path}.additionalProperties", FIELD)
    if s.get(INT_OR_STRING) and s.get(PRESERVE):
        errs.append(invalid(f"{path}.x-kubernetes-preserve-unknown-fields", True,
                            "must be false if x-kubernetes-int-or-string is true"))
    if s.get(INT_OR_STRING) and s.get(EMBEDDED):
        errs.append(invalid(f"{path}.x-kubernetes-embedded-resource", True,
                            "must be false if x-kubernetes-int-or-string is true"))
    skip_any_of = s.get("anyOf") == _INT_OR_STRING_ANY_OF
    all_of = s.get("allOf") or []
    skip_first_all_of = bool(all_of) and isinstance(all_of[0], dict) and all_of[0].get("anyOf") == _INT_OR_STRING_ANY_OF
    errs += _value_validation(s, path, skip_any_of, skip_first_all_of, level)
    embedded = bool(s.get(EMBEDDED))
    if embedded and t != "object":
        errs.append(required(f"{path}.type", "must be object if x-kubernetes-embedded-resource is true") if not t
                    else invalid(f"{path}.type", t, "must be object if x-kubernetes-embedded-resource is true"))
    elif not t and not s.get(INT_OR_STRING) and not s.get(PRESERVE):
        errs.append(required(f"{path}.type", _TYPE_MISSING[level]))
    if embedded and s.get("additionalProperties") is not None:
        errs.append(forbidden(f"{path}.additionalProperties", "must not be used if x-kubernetes-embedded-resource is "
                              "set"))
    if level == ROOT and t and t != "object":
        errs.append(invalid(f"{path}.type", t, "must be object at the root"))
    props = s.get("properties") or {}
    if level == ROOT or embedded:
        for k, want in (("kind", "string"), ("apiVersion", "string"), ("metadata", "object")):
            if isinstance(props.get(k), dict) and (props[k].get("type") or "") != want:
                errs.append(invalid(f"{path}.properties[{k}].type", props[k].get("type") or "", f"must be {want}"))
    if level == ROOT and isinstance(props.get("metadata"), dict):
        meta = props["metadata"]
        inner = set((meta.get("properties") or {}))
        rest = {k: val for k, val in meta.items() if k not in ("type", "default") and val not in (None, False, "")}
        if inner and inner <= {"name", "generateName"}:
            rest.pop("properties", None)
        if rest:
            errs.append(forbidden(f"{path}.properties[metadata]", "must not specify anything other than name and "
                                  "generateName, but metadata is implicitly specified"))
    if embedded and not s.get(PRESERVE) and not props:
        errs.append(required(f"{path}.properties", "must not be empty if x-kubernetes-embedded-resource is true "
                             "without x-kubernetes-preserve-unknown-fields"))
    return errs


def _value_validation(s: dict, path: str, skip_any_of: bool, skip_first_all_of: bool, level: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not skip_any_of:
        for i, sub in enumerate(s.get("anyOf") or []):
            errs += _nested(sub, f"{path}.anyOf[{i}]", False, level)
    for i, sub in enumerate(s.get("allOf") or []):
        errs += _nested(sub, f"{path}.allOf[{i}]", skip_first_all_of and i == 0, level)
    for i, sub in enumerate(s.get("oneOf") or []):
        errs += _nested(sub, f"{path}.oneOf[{i}]", False, level)
    if isinstance(s.get("not"), dict):
        errs += _nested(s["not"], f"{path}.not", False, level)
    return errs


_FORBIDDEN_IN_JUNCTORS = [("type", "must be empty to be structural"),
                          ("additionalProperties", "must be undefined to be structural"),
                          ("default", "must be undefined to be structural"),
                          ("title", "must be empty to be structural"),
                          ("description", "must be empty to be structural"),
                          ("nullable", "must be false to be structural"),
                          (PRESERVE, "must be false to be structural"),
                          (EMBEDDED, "must be false to be structural"),
                          (INT_OR_STRING, "must be false to be structural"),
                          (MAP_KEYS, "must be empty to be structural"),
                          (LIST_TYPE, "must be undefined to be structural")]


def _nested(s: Any, path: str, skip_any_of: bool, level: str) -> list[FieldError]:
    if not isinstance(s, dict):
        return []
    errs = _value_validation(s, path, skip_any_of, False, level)
    if isinstance(s.get("items"), dict):
        errs += _nested(s["items"], f"{path}.items", False, level)
    for k, p in (s.get("properties") or {}).items():
        errs += _nested(p, f"{path}.properties[{k}]", False, FIELD)
    for k, msg in _FORBIDDEN_IN_JUNCTORS:
        if s.get(k) not in (None, False, "", []):
            errs.append(forbidden(f"{path}.{k}", msg))
    if "metadata" in (s.get("properties") or {}):
        errs.append(forbidden(f"{path}.properties[metadata]", "must not be specified in a nested context"))
    return errs


def _completeness(v_: Any, s: Any, s_path: str, v_path: str) -> list[FieldError]:
    """Every field a junctor (anyOf, allOf, oneOf, not) names is specified outside it too."""
    if not isinstance(v_, dict):
        return []
    errs: list[FieldError] = []
    subs = [(x, f"{v_path}.{k}[{i}]") for k in ("allOf", "anyOf", "oneOf") for i, x in enumerate(v_.get(k) or [])]
    if isinstance(v_.get("not"), dict):
        subs.insert(0, (v_["not"], f"{v_path}.not"))
    for sub, path in subs:
        errs += _nested_complete(sub, s, s_path, path)
    return errs


def _nested_complete(n: Any, s: Any, s_path: str, v_path: str) -> list[FieldError]:
    if not isinstance(n, dict):
        return []
    if not isinstance(s, dict):
        return [required(s_path, f"because it is defined in {v_path}")]
    errs = _completeness(n, s, s_path, v_path)
    if isinstance(n.get("items"), dict):
        errs += _nested_complete(n["items"], s.get("items"), f"{s_path}.items", f"{v_path}.items")
    for k, sub in (n.get("properties") or {}).items():
        if k not in (s.get("properties") or {}):
            errs.append(required(f"{s_path}.properties[{k}]", f"because it is defined in {v_path}.properties[{k}]"))
        else:
            errs += _nested_complete(sub, s["properties"][k], f"{s_path}.properties[{k}]", f"{v_path}.properties[{k}]")
    return errs


def openapi_errors(s: Any, path: str, root: bool = False, in_meta: bool = False,
                   no_defaults: str | None = None) -> list[FieldError]:
    """upstream's ValidateCustomResourceDefinitionOpenAPISchema: the part of OpenAPI v3 a CRD may use."""
    if not isinstance(s, dict):
        return []
    errs: list[FieldError] = []
    t = s.get("type")
    if t and t not in OPENAPI_TYPES and t != "null":
        errs.append(not_supported(f"{path}.type", t, OPENAPI_TYPES))
    if s.get("default") is not None and no_defaults is not None:
        errs.append(forbidden(f"{path}.default", "must not be set" + (f" {no_defaults}" if no_defaults else "")))
    for k, msg in (("id", "id is not supported"), ("additionalItems", "additionalItems is not supported"),
                   ("patternProperties", "patternProperties is not supported"),
                   ("definitions", "definitions is not supported"), ("dependencies", "dependencies is not supported"),
                   ("$ref", "$ref is not supported")):
        if s.get(k) not in (None, "", {}):
            errs.append(forbidden(f"{path}.{k}", msg))
    if t == "null":
        errs.append(forbidden(f"{path}.type", "type cannot be set to null, use nullable as an alternative"))
    if isinstance(s.get("items"), list):
        errs.append(forbidden(f"{path}.items", "items must be a schema object and not an array"))
    if in_meta and s.get(EMBEDDED):
        errs.append(forbidden(f"{path}.x-kubernetes-embedded-resource", "must not be used inside of resource meta"))
    if s.get("uniqueItems"):
        errs.append(forbidden(f"{path}.uniqueItems", "uniqueItems cannot be set to true since the runtime complexity "
                              "becomes quadratic"))
    ap = s.get("additionalProperties")
    if ap is not None:
        if s.get("properties") and (ap is False or isinstance(ap, dict)):
            errs.append(forbidden(f"{path}.additionalProperties", "additionalProperties and properties are mutual "
                                  "exclusive"))
        sub_no = "inside additionalProperties applying to object metadata" if in_meta else no_defaults
        errs += openapi_errors(ap, f"{path}.additionalProperties", in_meta=in_meta, no_defaults=sub_no)
    for k, p in (s.get("properties") or {}).items():
        sub_meta, sub_no = in_meta, no_defaults
        if (root or s.get(EMBEDDED)) and k in META_FIELDS:
            sub_meta = True
            if root:
                sub_no = f"in top-level {k}"
        errs += openapi_errors(p, f"{path}.properties[{k}]", in_meta=sub_meta, no_defaults=sub_no)
    if isinstance(s.get("not"), dict):
        errs += openapi_errors(s["not"], f"{path}.not", in_meta=in_meta, no_defaults=no_defaults)
    for k in ("allOf", "oneOf", "anyOf"):
        for i, sub in enumerate(s.get(k) or []):
            errs += openapi_errors(sub, f"{path}.{k}[{i}]", in_meta=in_meta, no_defaults=no_defaults)
    if isinstance(s.get("items"), dict):
        errs += openapi_errors(s["items"], f"{path}.items", in_meta=in_meta, no_defaults=no_defaults)
    if s.get(PRESERVE) is False:
        errs.append(invalid(f"{path}.x-kubernetes-preserve-unknown-fields", False, "must be true or undefined"))
    map_type = s.get("x-kubernetes-map-type")
    if map_type is not None:
        if t != "object":
            errs.append(required(f"{path}.type", "must be object if x-kubernetes-map-type is specified") if not t
                        else v.invalid(f"{path}.type", t, "must be object if x-kubernetes-map-type is specified"))
        if map_type not in ("atomic", "granular"):
            errs.append(not_supported(f"{path}.x-kubernetes-map-type", map_type, ["atomic", "granular"]))
    errs += _list_type_errors(s, path)
    for i, rule in enumerate(s.get("x-kubernetes-validations") or []):
        if not str((rule or {}).get("rule") or "").strip():
            errs.append(required(f"{path}.x-kubernetes-validations[{i}].rule", "rule is not specified"))
        elif re.search(r"[\n\r]", str(rule.get("message") or "")):
            errs.append(v.invalid(f"{path}.x-kubernetes-validations[{i}].message", rule["message"],
                                  "message must not contain line breaks"))
    return errs


def _list_type_errors(s: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    t = s.get("type")
    list_type = s.get(LIST_TYPE)
    items = s.get("items") if isinstance(s.get("items"), dict) else None
    if list_type is not None and t != "array":
        errs.append(required(f"{path}.type", "must be array if x-kubernetes-list-type is specified") if not t
                    else v.invalid(f"{path}.type", t, "must be array if x-kubernetes-list-type is specified"))
    elif list_type == "set" and items is not None:
        if items.get("type") == "array" and items.get(LIST_TYPE) not in (None, "atomic"):
            errs.append(v.invalid(f"{path}.items.x-kubernetes-list-type", items.get(LIST_TYPE),
                                  "must be atomic as item of a list with x-kubernetes-list-type=set"))
        if items.get("type") == "object" and items.get("x-kubernetes-map-type") != "atomic":
            errs.append(FieldError(f"{path}.items.x-kubernetes-map-type", "FieldValueInvalid",
                                   'Invalid value: "set": must be atomic as item of a list with '
                                   "x-kubernetes-list-type=set"))
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        errs.append(not_supported(f"{path}.x-kubernetes-list-type", list_type, ["atomic", "set", "map"]))
    keys = s.get(MAP_KEYS) or []
    if keys:
        if list_type is None:
            errs.append(required(f"{path}.x-kubernetes-list-type", "must be map if x-kubernetes-list-map-keys is "
                                 "non-empty"))
        elif list_type != "map":
            errs.append(v.invalid(f"{path}.x-kubernetes-list-type", list_type, "must be map if "
                                  "x-kubernetes-list-map-keys is non-empty"))
    if list_type == "map":
        if not keys:
            errs.append(required(f"{path}.x-kubernetes-list-map-keys", "must not be empty if x-kubernetes-list-type "
                                 "is map"))
        if s.get("items") is None:
            errs.append(required(f"{path}.items", "must have a schema if x-kubernetes-list-type is map"))
        if items is not None and items.get("type") != "object":
            errs.append(v.invalid(f"{path}.items.type", items.get("type") or "", "must be object if parent array's "
                                  "x-kubernetes-list-type is map"))
        if items is not None and items.get("type") == "object":
            props = items.get("properties") or {}
            text = "[]string{" + ", ".join(f'"{k}"' for k in keys) + "}"
            for k in keys:
                if k in props:
                    if props[k].get("type") in ("array", "object"):
                        errs.append(v.invalid(f"{path}.items.properties[{k}].type", "object", "must be a scalar type "
                                              "if parent array's x-kubernetes-list-type is map"))
                else:
                    errs.append(FieldError(f"{path}.x-kubernetes-list-map-keys", "FieldValueInvalid",
                                           f"Invalid value: {text}: entries must all be names of item properties"))
            if len(set(keys)) != len(keys):
                errs.append(FieldError(f"{path}.x-kubernetes-list-map-keys", "FieldValueInvalid",
                                       f"Invalid value: {text}: must not contain duplicate entries"))
    if list_type in ("set", "map") and items is not None:
        if items.get("nullable"):
            errs.append(forbidden(f"{path}.items.nullable", f"cannot be nullable when x-kubernetes-list-type is "
                                  f"{list_type}"))
        if list_type == "map":
            req = set(items.get("required") or [])
            for k in keys:
                prop = (items.get("properties") or {}).get(k)
                if prop is None:
                    continue
                if k not in req and prop.get("default") is None:
                    errs.append(required(f"{path}.items.properties[{k}].default", "this property is in "
                                         "x-kubernetes-list-map-keys, so it must have a default or be a required "
                                         "property"))
                if prop.get("nullable"):
                    errs.append(forbidden(f"{path}.items.properties[{k}].nullable", "this property is in "
                                          "x-kubernetes-list-map-keys, so it cannot be nullable"))
    return errs
