"""The RBAC authorizer, as upstream's: a request is allowed when a rule of a role bound to the
user allows it (ClusterRoleBindings everywhere, RoleBindings in their namespace); nothing ever
denies. The bindings and roles are read from the store once and kept until one of them changes;
a ClusterRole with an aggregationRule gets the rules of the ClusterRoles its selectors pick
(upstream's clusterrole-aggregation controller), written back to the stored object."""

from __future__ import annotations

import logging
import threading

from netlab.api.resources import lookup
from netlab.api.selectors import selector_matches
from netlab.control.apiserver.auth.attributes import Attributes
from netlab.control.apiserver.auth.identity import User

log = logging.getLogger("netlab.apiserver.rbac")
GROUP = "rbac.authorization.k8s.io"


def _has(values: list | None, want: str) -> bool:
    return bool(values) and ("*" in values or want in values)


def resource_matches(resources: list | None, a: Attributes) -> bool:
    for r in resources or []:
        if r == "*" or r == a.full_resource:
            return True
        if a.subresource and (r == f"*/{a.subresource}" or r == f"{a.resource}/*"):
            return True
    return False


def path_matches(urls: list | None, path: str) -> bool:
    for u in urls or []:
        if u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])):
            return True
    return False


def rule_allows(rule: dict, a: Attributes) -> bool:
    if not _has(rule.get("verbs"), a.verb):
        return False
    if not a.resource_request:
        return path_matches(rule.get("nonResourceURLs"), a.path)
    names = rule.get("resourceNames") or []
    return (_has(rule.get("apiGroups"), a.group) and resource_matches(rule.get("resources"), a)
            and (not names or a.name in names))


def subject_matches(subject: dict, user: User, binding_ns: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return bool(ns) and user.name == f"system:serviceaccount:{ns}:{name}"
    return False


class RBAC:
    def __init__(self, objects):
        self.objects = objects
        self._lock = threading.Lock()
        self._state: tuple | None = None
        self.r = {p: lookup(GROUP, "v1", p) for p in ("roles", "clusterroles", "rolebindings", "clusterrolebindings")}

    def invalidate(self) -> None:
        self._state = None

    def _list(self, plural: str) -> list[dict]:
        items, _ = self.objects.store.list(self.objects.key(self.r[plural], None))
        return items

    def state(self) -> tuple:
        st = self._state
        if st is not None:
            return st
        with self._lock:
            croles = {c["metadata"]["name"]: c for c in self._list("clusterroles")}
            self._aggregate(croles)
            roles = {(x["metadata"]["namespace"], x["metadata"]["name"]): x for x in self._list("roles")}
            rbs: dict[str, list[dict]] = {}
            for b in self._list("rolebindings"):
                rbs.setdefault(b["metadata"]["namespace"], []).append(b)
            st = self._state = (croles, roles, self._list("clusterrolebindings"), rbs)
        return st

    def _aggregate(self, croles: dict[str, dict]) -> None:
        """Each aggregated ClusterRole's rules: those of the roles its selectors pick, in name order,
        until nothing changes (view aggregates into edit, edit into admin)."""
        for _ in range(8):
            if not self._aggregate_once(croles):
                return

    def _aggregate_once(self, croles: dict[str, dict]) -> bool:
        changed = False
        for name, role in sorted(croles.items()):
            selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors")
            if not selectors:
                continue
            rules: list[dict] = []
            for other_name, other in sorted(croles.items()):
                if other_name == name:
                    continue
                labels = other["metadata"].get("labels") or {}
                if any(selector_matches(s, labels) for s in selectors):
                    for rule in other.get("rules") or []:
                        if rule not in rules:
                            rules.append(rule)
            if rules != (role.get("rules") or []):
                role["rules"] = rules
                changed = True
                try:
                    self.objects.store.update(self.objects.key(self.r["clusterroles"], None, name), role)
                except Exception as e:  # noqa: BLE001 - the next change tries again
                    log.warning("aggregating clusterrole %s: %s", name, e)
        return changed

    def role_rules(self, ref: dict, ns: str) -> list[dict]:
        croles, roles, _, _ = self.state()
        if ref.get("kind") == "ClusterRole":
            role = croles.get(ref.get("name", ""))
        else:
            role = roles.get((ns, ref.get("name", "")))
        return (role or {}).get("rules") or []

    def bindings_for(self, user: User, namespace: str) -> list[tuple[dict, str]]:
        """The (roleRef, namespace of the binding or "") that apply to `user` in `namespace`."""
        _, _, crbs, rbs = self.state()
        out = [(b.get("roleRef") or {}, "") for b in crbs
               if any(subject_matches(s, user, "") for s in b.get("subjects") or [])]
        if namespace:
            out += [(b.get("roleRef") or {}, namespace) for b in rbs.get(namespace, [])
                    if any(subject_matches(s, user, namespace) for s in b.get("subjects") or [])]
        return out

    def rules_for(self, user: User, namespace: str) -> list[dict]:
        rules: list[dict] = []
        for ref, ns in self.bindings_for(user, namespace):
            rules += self.role_rules(ref, ns)
        return rules

    def allows(self, a: Attributes) -> bool:
        ns = a.namespace if a.resource_request else ""
        for ref, bns in self.bindings_for(a.user, ns):
            if any(rule_allows(rule, a) for rule in self.role_rules(ref, bns)):
                return True
        return False
