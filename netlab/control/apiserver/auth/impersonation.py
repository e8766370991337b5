"""Impersonation, as upstream's filter: Impersonate-User, -Group, -Uid and -Extra-<key> headers
make the request another user's, once the caller may `impersonate` each of them (users, groups,
serviceaccounts, uids, userextras/<key>); denied, a 403 naming what was refused."""

from __future__ import annotations

from urllib.parse import unquote

from netlab.control.apiserver.auth import identity
from netlab.control.apiserver.auth.attributes import Attributes
from netlab.control.apiserver.auth.authz import forbidden
from netlab.control.apiserver.auth.identity import User
from netlab.control.apiserver.errors import bad_request

EXTRA = "impersonate-extra-"


def impersonate(headers, user: User, authorizer) -> User:
    name = headers.get("Impersonate-User", "")
    groups = headers.getall("Impersonate-Group", [])
    uid = headers.get("Impersonate-Uid", "")
    extra: dict[str, list[str]] = {}
    for k, val in headers.items():
        if k.lower().startswith(EXTRA):
            extra.setdefault(unquote(k[len(EXTRA):]).lower(), []).append(val)
    if not name:
        if groups or uid or extra:
            raise bad_request("requested impersonation of groups, a uid or extra without impersonating a user")
        return user

    def check(a: Attributes) -> None:
        allowed, reason = authorizer.decide(a)
        if not allowed:
            raise forbidden(a, reason)

    sa = identity.split_sa(name)
    if sa:
        check(Attributes(user, "impersonate", namespace=sa[0], resource="serviceaccounts", name=sa[1]))
    else:
        check(Attributes(user, "impersonate", resource="users", name=name))
    for g in groups:
        check(Attributes(user, "impersonate", resource="groups", name=g))
    if uid:
        check(Attributes(user, "impersonate", group="authentication.k8s.io", resource="uids", name=uid))
    for k, values in extra.items():
        for val in values:
            check(Attributes(user, "impersonate", group="authentication.k8s.io", resource="userextras",
                             subresource=k, name=val))
    if sa:
        out = identity.sa_user(*sa, uid)
        out.groups = [*dict.fromkeys(out.groups + groups)]
    else:
        out = User(name, uid, list(groups), extra)
        if name != identity.ANONYMOUS and identity.AUTHENTICATED not in out.groups:
            out.groups.append(identity.AUTHENTICATED)
        elif name == identity.ANONYMOUS and identity.UNAUTHENTICATED not in out.groups:
            out.groups.append(identity.UNAUTHENTICATED)
    out.extra = extra or out.extra
    return out
