"""What the four RBAC kinds share: the validation of rules, roleRefs and subjects as upstream's
rbac validation words it, and kubectl's columns. Each kind's module picks its scope."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ["Group", "ServiceAccount", "User"]


def check_rules(rules: Any, namespaced: bool) -> list[v.FieldError]:
    errs: list[v.FieldError] = []
    for i, rule in enumerate(rules or []):
        p = f"rules[{i}]"
        if not rule.get("verbs"):
            errs.append(v.FieldError(f"{p}.verbs", "FieldValueRequired",
                                     "Required value: verbs must contain at least one value"))
        urls = rule.get("nonResourceURLs") or []
        if urls and namespaced:
            errs.append(v.invalid(f"{p}.nonResourceURLs", urls, "namespaced rules cannot apply to non-resource URLs"))
            continue
        if urls:
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                errs.append(v.invalid(f"{p}.nonResourceURLs", urls,
                                      "rules cannot apply to both regular resources and non-resource URLs"))
            continue
        if not rule.get("apiGroups"):
            errs.append(v.FieldError(f"{p}.apiGroups", "FieldValueRequired",
                                     "Required value: resource rules must supply at least one api group"))
        if not rule.get("resources"):
            errs.append(v.FieldError(f"{p}.resources", "FieldValueRequired",
                                     "Required value: resource rules must supply at least one resource"))
    return errs


def check_binding(obj: dict, namespaced: bool) -> list[v.FieldError]:
    errs: list[v.FieldError] = []
    ref = obj.get("roleRef") or {}
    kinds = ["ClusterRole", "Role"] if namespaced else ["ClusterRole"]
    if ref.get("apiGroup") != GROUP:
        errs.append(v.not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), [GROUP]))
    if ref.get("kind") not in kinds:
        errs.append(v.not_supported("roleRef.kind", ref.get("kind", ""), kinds))
    if not ref.get("name"):
        errs.append(v.required("roleRef.name"))
    for i, s in enumerate(obj.get("subjects") or []):
        p = f"subjects[{i}]"
        if not s.get("name"):
            errs.append(v.required(f"{p}.name"))
        if s.get("kind") not in SUBJECT_KINDS:
            errs.append(v.not_supported(f"{p}.kind", s.get("kind", ""), SUBJECT_KINDS))
        elif s["kind"] == "ServiceAccount":
            if s.get("apiGroup"):
                errs.append(v.not_supported(f"{p}.apiGroup", s["apiGroup"], [""]))
            if not namespaced and not s.get("namespace"):
                errs.append(v.required(f"{p}.namespace"))
        elif s.get("apiGroup") != GROUP:
            errs.append(v.not_supported(f"{p}.apiGroup", s.get("apiGroup", ""), [GROUP]))
    return errs


class RoleStrategy(base.Strategy):
    name_rule = "path"
    columns = [tables.NAME, tables.col("Created At", "date", desc="CreationTimestamp")]

    def validate(self, obj: dict) -> list[v.FieldError]:
        return check_rules(obj.get("rules"), self.resource.namespaced)

    def row(self, obj: dict) -> list[Any]:
        return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp", "")]


class BindingStrategy(base.Strategy):
    name_rule = "path"
    columns = [tables.NAME, tables.col("Role"), tables.AGE, tables.col("Users", priority=1),
               tables.col("Groups", priority=1), tables.col("ServiceAccounts", priority=1)]

    def defaults(self, obj: dict) -> None:
        for s in obj.get("subjects") or []:
            if s.get("kind") in ("User", "Group") and not s.get("apiGroup"):
                s["apiGroup"] = GROUP

    def validate(self, obj: dict) -> list[v.FieldError]:
        return check_binding(obj, self.resource.namespaced)

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        if obj.get("roleRef") != old.get("roleRef"):
            return [v.invalid("roleRef", obj.get("roleRef"), "cannot change roleRef")]
        return []

    def row(self, obj: dict) -> list[Any]:
        ref = obj.get("roleRef") or {}
        subjects = obj.get("subjects") or []

        def names(kind: str) -> str:
            return ", ".join((f"{s.get('namespace', '')}/{s['name']}" if kind == "ServiceAccount" else s["name"])
                             for s in subjects if s.get("kind") == kind)
        return [obj["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}",
                tables.age(obj["metadata"].get("creationTimestamp")), names("User"), names("Group"),
                names("ServiceAccount")]
