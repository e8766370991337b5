"""The Node authorizer, as upstream's: a kubelet (system:node:<name> in system:nodes) may do
what the system:node role allows, except that Secrets, ConfigMaps, PersistentVolumeClaims and
service-account tokens are only those a pod bound to its node refers to. NodeRestriction's
admission (a kubelet changes only its own Node and its own pods) is in admission.py."""

from __future__ import annotations

from netlab.api.podrefs import pod_refs
from netlab.api.resources import lookup
from netlab.control.apiserver.auth import policy, rbac
from netlab.control.apiserver.auth.attributes import Attributes

GRAPHED = {("", "secrets"), ("", "configmaps"), ("", "persistentvolumeclaims"), ("", "persistentvolumes")}
NODE_RULES = policy.CLUSTER_ROLES["system:node"][0]


class NodeAuthorizer:
    def __init__(self, objects):
        self.objects = objects
        self.pods = lookup("", "v1", "pods")
        self.claims = lookup("", "v1", "persistentvolumeclaims")

    def pods_on(self, node: str, namespace: str) -> list[dict]:
        items, _ = self.objects.store.list(self.objects.key(self.pods, namespace or None))
        return [p for p in items if (p.get("spec") or {}).get("nodeName") == node]

    def related(self, node: str, a: Attributes, kind: str) -> bool:
        if kind == "persistentvolumes":  # cluster-scoped: through a claim of a pod of the node
            return bool(a.name) and a.name in self.volumes_of(node)
        if not a.name or not a.namespace:
            return False
        return any(a.name in pod_refs(p)[kind] for p in self.pods_on(node, a.namespace))

    def volumes_of(self, node: str) -> set[str]:
        """The PersistentVolumes the claims of the node's pods are bound to (pod -> claim -> volume)."""
        out = set()
        for p in self.pods_on(node, ""):
            for claim in pod_refs(p)["persistentvolumeclaims"]:
                obj = self.objects.store.get(self.objects.key(self.claims, p["metadata"]["namespace"], claim))
                if obj and (obj.get("spec") or {}).get("volumeName"):
                    out.add(obj["spec"]["volumeName"])
        return out

    def decide(self, a: Attributes) -> tuple[bool | None, str]:
        """(True: allowed, None: no opinion, with why) for a kubelet's request."""
        node = a.user.node
        if node is None:
            return None, ""
        if not a.resource_request:
            return None, ""
        if (a.group, a.resource) in GRAPHED and not a.subresource:
            if a.verb in ("get", "list", "watch") and self.related(node, a, a.resource):
                return True, ""
            return None, f"no relationship found between node '{node}' and this object"
        if (a.group, a.resource, a.subresource) == ("", "serviceaccounts", "token"):
            if a.verb == "create" and self.related(node, a, "serviceaccounts"):
                return True, ""
            return None, f"no relationship found between node '{node}' and this object"
        if any(rbac.rule_allows(rule, a) for rule in NODE_RULES):
            return True, ""
        return None, ""
