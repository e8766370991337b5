"""Admission of the writes identities make, as upstream's plugins: NodeRestriction (a kubelet
changes only its own Node, without node-restriction.kubernetes.io/ labels, and only the pods
bound to it; it asks tokens only for those pods) and PodSecurity (the namespace's
pod-security.kubernetes.io/enforce|warn|audit levels, baseline and restricted)."""

from __future__ import annotations



from netlab.api.resources import lookup
from netlab.control.apiserver.auth.identity import User
from netlab.control.apiserver.errors import APIError

RESTRICTED_LABEL_PREFIX = "node-restriction.kubernetes.io/"


def _forbid(resource: str, name: str, msg: str, group: str = "") -> APIError:
    what = f"{resource}.{group}" if group else resource
    return APIError(403, "Forbidden", f'{what} "{name}" is forbidden: {msg}' if name else f"{what} is forbidden: {msg}",
                    {"name": name, "kind": resource} if name else {"kind": resource})


def token_request(objects, user: User, namespace: str, name: str, body: dict) -> None:
    node = user.node
    if node is None:
        return
    ref = (body.get("spec") or {}).get("boundObjectRef") or {}
    msg = f"node '{node}' may only request tokens bound to pods scheduled to it"
    if ref.get("kind") != "Pod":
        raise _forbid("serviceaccounts", name, f"node requested token not bound to a pod: {msg}")
    pod = objects.store.get(objects.key(lookup("", "v1", "pods"), namespace, ref.get("name", "")))
    if pod is None or (pod.get("spec") or {}).get("nodeName") != node:
        raise _forbid("serviceaccounts", name, f"node requested token bound to a pod scheduled on a different node: "
                      f"{msg}")


def _labels_in(body, content_type: str) -> list[str]:
    """The label keys a write's body sets (an object, a merge patch or a JSON patch)."""
    if isinstance(body, list):  # JSON patch
        return [op.get("path", "").rsplit("/", 1)[-1].replace("~1", "/") for op in body
                if isinstance(op, dict) and op.get("path", "").startswith("/metadata/labels")]
    if isinstance(body, dict):
        labels = (body.get("metadata") or {}).get("labels") or {}
        return [k for k, val in labels.items() if val is not None] if isinstance(labels, dict) else []
    return []


def node_write(objects, user: User, r, namespace: str | None, name: str | None, sub: str | None, body,
               content_type: str = "", old_labels: dict | None = None) -> None:
    """NodeRestriction for a kubelet's writes to Nodes and Pods."""
    node = user.node
    if node is None:
        return
    if r.plural == "nodes":
        target = name or ((body or {}).get("metadata") or {}).get("name", "")
        if target != node:
            raise _forbid("nodes", target, f'node "{node}" is not allowed to modify node "{target}"')
        new = [k for k in _labels_in(body, content_type) if k.startswith(RESTRICTED_LABEL_PREFIX)
               and (old_labels or {}).get(k) is None]
        if new:
            raise _forbid("nodes", target, f'is not allowed to modify labels: {", ".join(sorted(new))}')
    elif r.plural == "leases":
        target = name or ((body or {}).get("metadata") or {}).get("name", "")
        if namespace == "kube-node-lease" and target != node:
            raise _forbid("leases", target, "can only access node lease with the same name as the requesting node",
                          "coordination.k8s.io")
    elif r.plural == "pods" and name:
        pod = objects.store.get(objects.key(r, namespace, name))
        if pod is not None and (pod.get("spec") or {}).get("nodeName") != node:
            raise _forbid("pods", name, f'node "{node}" can only update pod status for pods with spec.nodeName set '
                          f'to itself' if sub == "status" else f'node "{node}" can only modify pods bound to it')
    elif r.plural == "pods" and not name:
        raise _forbid("pods", "", f'pod does not have "kubernetes.io/config.mirror" annotation, node "{node}" can only '
                      f'create mirror pods')


