"""What a request asks to do, as upstream's RequestInfo and authorizer.Attributes: a resource
request (verb, API group, namespace, resource, subresource, name) or a non-resource one (a path
and the method's verb)."""

from __future__ import annotations

from dataclasses import dataclass, field

from netlab.control.apiserver.auth.identity import User

METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass
class Attributes:
    user: User
    verb: str
    resource_request: bool = True
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def of_request(user: User, method: str, path: str, query) -> Attributes:
    """The attributes of an HTTP request, as upstream's RequestInfoFactory reads the path."""
    parts = [p for p in path.split("/") if p]
    nonresource = Attributes(user, method.lower(), resource_request=False, path=path)
    if parts[:1] == ["api"]:
        rest = parts[1:]
        group = ""
    elif parts[:1] == ["apis"]:
        rest = parts[2:]
        group = parts[1] if len(parts) > 1 else ""
    else:
        return nonresource
    if len(rest) < 2:  # /api, /api/v1, /apis/<group>, /apis/<group>/<version>: discovery
        return nonresource
    version, rest = rest[0], rest[1:]
    a = Attributes(user, "", group=group, version=version, path=path)
    if rest[0] == "namespaces" and len(rest) >= 2:
        a.namespace = rest[1]
        if len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            rest = rest[2:]
        else:  # the Namespace itself
            rest = ["namespaces", rest[1], *rest[2:]]
    a.resource = rest[0]
    a.name = rest[1] if len(rest) > 1 else ""
    a.subresource = rest[2] if len(rest) > 2 else ""
    if a.resource == "namespaces":
        a.namespace = a.name if a.name else a.namespace
    if method == "GET" or method == "HEAD":
        watch = query.get("watch") in ("1", "true", "True")
        a.verb = "get" if a.name else ("watch" if watch else "list")
        if not a.name:
            # list and watch of one object by name are authorized as that name (upstream's
            # fieldSelector metadata.name), which is how a kubelet watches one Secret
            for term in (query.get("fieldSelector") or "").split(","):
                k, sep, v = term.partition("=")
                if sep and k.strip() == "metadata.name" and v.strip("="):
                    a.name = v.strip("=").strip()
        if a.subresource == "exec":  # since 1.30 an exec over WebSocket (a GET) needs create
            a.verb = "create"
    elif method == "DELETE" and not a.name:
        a.verb = "deletecollection"
    else:
        a.verb = METHOD_VERBS.get(method, method.lower())
    return a
