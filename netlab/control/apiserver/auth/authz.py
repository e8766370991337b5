"""Authorization as kubeadm configures it (--authorization-mode=Node,RBAC), after the
system:masters group that is always allowed; and the 403 a denial becomes, worded as upstream's."""

from __future__ import annotations

from netlab.control.apiserver.auth.attributes import Attributes
from netlab.control.apiserver.auth.identity import MASTERS
from netlab.control.apiserver.auth.node import NodeAuthorizer
from netlab.control.apiserver.auth.rbac import RBAC
from netlab.control.apiserver.errors import APIError


class Authorizer:
    def __init__(self, objects):
        self.node = NodeAuthorizer(objects)
        self.rbac = RBAC(objects)

    def decide(self, a: Attributes) -> tuple[bool, str]:
        if MASTERS in a.user.groups:
            return True, ""
        allowed, reason = self.node.decide(a)
        if allowed:
            return True, ""
        if self.rbac.allows(a):
            return True, "RBAC: allowed"
        return False, reason


def qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def forbidden(a: Attributes, reason: str = "") -> APIError:
    """The 403 of a denied request: `pods is forbidden: User "u" cannot list resource "pods" in
    API group "" at the cluster scope`, with the authorizer's reason after a colon."""
    who = f'User "{a.user.name}"'
    if not a.resource_request:
        msg = f'forbidden: {who} cannot {a.verb} path "{a.path}"'
        details: dict = {}
    else:
        scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
        what = qualified(a.resource, a.group)
        msg = (f'{what} "{a.name}" is forbidden' if a.name else f"{what} is forbidden") + \
            f': {who} cannot {a.verb} resource "{a.full_resource}" in API group "{a.group}" {scope}'
        details = {"kind": a.resource, **({"name": a.name} if a.name else {}), **({"group": a.group} if a.group else {})}
    if reason:
        msg += f": {reason}"
    return APIError(403, "Forbidden", msg, details)
