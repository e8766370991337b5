"""RBAC's escalation check, as upstream's: a user may write a Role or ClusterRole only with rules it
holds itself (or with the `escalate` verb on it), and bind a role only if it holds the role's rules
(or has the `bind` verb on it). A rule is held when every (group, resource, verb, name) it names is
covered by a rule of the user's, wildcards matching only wildcards or anything."""

from __future__ import annotations

from netlab.control.apiserver.auth.attributes import Attributes
from netlab.control.apiserver.auth.identity import MASTERS, User
from netlab.control.apiserver.errors import APIError

GROUP = "rbac.authorization.k8s.io"


def _covers(owner: dict, item: dict) -> bool:
    def has(values, want):
        return "*" in (values or []) or want in (values or [])
    if not has(owner.get("verbs"), item["verb"]):
        return False
    if "url" in item:
        urls = owner.get("nonResourceURLs") or []
        return any(u == "*" or u == item["url"] or (u.endswith("*") and item["url"].startswith(u[:-1])) for u in urls)
    if not has(owner.get("apiGroups"), item["group"]):
        return False
    res, sub = item["resource"].partition("/")[::2]
    if not any(r in ("*", item["resource"]) or (sub and r in (f"*/{sub}", f"{res}/*")) for r in owner.get("resources") or []):
        return False
    names = owner.get("resourceNames") or []
    return not names or (item["name"] is not None and item["name"] in names)


def _items(rule: dict) -> list[dict]:
    """A rule broken into its single permissions."""
    out = []
    for verb in rule.get("verbs") or []:
        for url in rule.get("nonResourceURLs") or []:
            out.append({"verb": verb, "url": url})
        for g in rule.get("apiGroups") or []:
            for r in rule.get("resources") or []:
                for n in rule.get("resourceNames") or [None]:
                    out.append({"verb": verb, "group": g, "resource": r, "name": n})
    return out


def _go_rule(rule: dict) -> str:
    parts = []
    for k, label in (("apiGroups", "APIGroups"), ("resources", "Resources"), ("resourceNames", "ResourceNames"),
                     ("nonResourceURLs", "NonResourceURLs"), ("verbs", "Verbs")):
        if rule.get(k):
            parts.append(f"{label}:[{' '.join(chr(34) + v + chr(34) for v in rule[k])}]")
    return "{" + ", ".join(parts) + "}"


def missing(authorizer, user: User, namespace: str, rules: list[dict]) -> list[dict]:
    if MASTERS in user.groups:
        return []
    held = authorizer.rbac.rules_for(user, namespace)
    return [r for r in rules or [] if not all(any(_covers(o, it) for o in held) for it in _items(r))]


def check_role(authorizer, user: User, plural: str, namespace: str, name: str, rules: list[dict]) -> None:
    if authorizer.decide(Attributes(user, "escalate", group=GROUP, namespace=namespace, resource=plural,
                                    name=name))[0]:
        return
    lacking = missing(authorizer, user, namespace, rules)
    if lacking:
        raise _forbidden(plural, name, user, lacking)


def check_binding(authorizer, user: User, plural: str, namespace: str, name: str, ref: dict) -> None:
    role_plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
    role_ns = "" if role_plural == "clusterroles" else namespace
    if authorizer.decide(Attributes(user, "bind", group=GROUP, namespace=role_ns, resource=role_plural,
                                    name=ref.get("name", "")))[0]:
        return
    rules = authorizer.rbac.role_rules(ref, namespace)
    lacking = missing(authorizer, user, namespace, rules)
    if lacking:
        raise _forbidden(plural, name, user, lacking)


def _forbidden(plural: str, name: str, user: User, lacking: list[dict]) -> APIError:
    groups = ",".join(f'"{g}"' for g in user.groups)
    msg = (f'{plural}.{GROUP} "{name}" is forbidden: user "{user.name}" (groups=[{groups}]) is attempting to grant '
           f'RBAC permissions not currently held:\n' + "\n".join(_go_rule(r) for r in lacking))
    return APIError(403, "Forbidden", msg, {"name": name, "group": GROUP, "kind": plural})
