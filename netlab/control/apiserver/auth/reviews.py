"""The APIs that answer about identities and permissions, created and never stored, as
upstream's: TokenRequest (serviceaccounts/token), TokenReview, SelfSubjectReview
(`kubectl auth whoami`), SelfSubjectAccessReview, SubjectAccessReview,
LocalSubjectAccessReview (`kubectl auth can-i`) and SelfSubjectRulesReview (`can-i --list`)."""

from __future__ import annotations

import datetime

from netlab.api.resources import lookup
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.auth import node as node_auth
from netlab.control.apiserver.auth.attributes import Attributes
from netlab.control.apiserver.auth.identity import MASTERS, User
from netlab.control.apiserver.auth.policy import CLUSTER_ROLES
from netlab.control.apiserver.auth.tokens import DEFAULT_EXPIRATION, MIN_EXPIRATION
from netlab.control.apiserver.errors import APIError, bad_request

MAX_EXPIRATION = 1 << 32


def _invalid(kind: str, name: str, errs: list[v.FieldError], group: str) -> APIError:
    causes = [{"reason": e.reason, "message": e.message, "field": e.field} for e in errs]
    return APIError(422, "Invalid", f'{kind} "{name}" is invalid: ' + ", ".join(str(e) for e in errs),
                    {"name": name, "group": group, "kind": kind, "causes": causes})


def token_request(server, namespace: str, name: str, body: dict) -> dict:
    objects = server.objects
    sa = objects.get(lookup("", "v1", "serviceaccounts"), namespace, name)
    spec = dict(body.get("spec") or {})
    exp = spec.get("expirationSeconds")
    exp = DEFAULT_EXPIRATION if exp is None else exp
    errs = []
    if not isinstance(exp, int) or exp < MIN_EXPIRATION:
        errs.append(v.invalid("spec.expirationSeconds", exp, "may not specify a duration less than 10 minutes"))
    elif exp > MAX_EXPIRATION:
        errs.append(v.invalid("spec.expirationSeconds", exp, "may not specify a duration larger than 2^32 seconds"))
    ref = spec.get("boundObjectRef") or None
    if ref and ref.get("kind") not in ("Pod", "Secret", "Node"):
        errs.append(v.not_supported("spec.boundObjectRef.kind", ref.get("kind", ""), ["Pod", "Secret", "Node"]))
    if errs:
        raise _invalid("TokenRequest", name, errs, "authentication.k8s.io")
    bound = node = None
    if ref:
        plural = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}[ref["kind"]]
        r = lookup("", "v1", plural)
        obj = objects.get(r, namespace if r.namespaced else None, ref.get("name", ""))
        if ref.get("uid") and ref["uid"] != obj["metadata"]["uid"]:
            raise APIError(409, "Conflict", f"the UID in the bound object reference ({ref['uid']}) does not match the "
                           f"UID in record. The object might have been deleted and then recreated")
        obj = dict(obj, kind=ref["kind"])
        if ref["kind"] == "Pod":
            if (obj.get("spec") or {}).get("serviceAccountName", "default") != name:
                raise bad_request(f'cannot bind token for serviceaccount "{name}" to pod running with different '
                                  f'serviceaccount name.')
            bound = obj
            node_name = (obj.get("spec") or {}).get("nodeName")
            if node_name:
                try:
                    node = objects.get(lookup("", "v1", "nodes"), None, node_name)
                except APIError:
                    node = None
        elif ref["kind"] == "Secret":
            bound = obj
        else:
            node = obj
        spec["boundObjectRef"] = {"kind": ref["kind"], "apiVersion": ref.get("apiVersion", "v1"),
                                  "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}
    audiences = spec.get("audiences") or server.signer.audiences
    token, expiry = server.signer.issue(namespace, sa, audiences, exp, bound, node)
    spec.update(audiences=list(audiences), expirationSeconds=exp)
    ts = datetime.datetime.fromtimestamp(expiry, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": spec, "status": {"token": token, "expirationTimestamp": ts}}


def _attributes(user: User, spec: dict, namespace: str | None = None) -> Attributes:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if ra:
        return Attributes(user, ra.get("verb", ""), group=ra.get("group", ""), version=ra.get("version", ""),
                          namespace=namespace if namespace is not None else ra.get("namespace", ""),
                          resource=ra.get("resource", ""), subresource=ra.get("subresource", ""),
                          name=ra.get("name", ""))
    if nra:
        return Attributes(user, nra.get("verb", ""), resource_request=False, path=nra.get("path", ""))
    raise _invalid(spec.get("_kind", "SubjectAccessReview"), "", [v.invalid(
        "spec.resourceAttributes", None, "exactly one of nonResourceAttributes or resourceAttributes must be "
        "specified")], "authorization.k8s.io")


def _access(server, a: Attributes) -> dict:
    allowed, reason = server.authorizer.decide(a)
    out: dict = {"allowed": allowed}
    if reason:
        out["reason"] = reason
    return out


def review(server, r, namespace: str | None, body: dict, user: User) -> dict:
    """The answered object of a review kind's create."""
    spec = body.get("spec") or {}
    out = {"kind": r.kind, "apiVersion": r.group_version,
           "metadata": {**(body.get("metadata") or {}), "creationTimestamp": None}}
    if r.plural == "tokenreviews":
        token = spec.get("token", "")
        who = server.authn.token_user(token, spec.get("audiences")) if token else None
        status: dict = {"authenticated": True, "user": who.info(),
                        "audiences": spec.get("audiences") or server.signer.audiences} if who else \
            {"user": {}, "error": "[invalid bearer token, token lookup failed]"}
        return out | {"spec": spec, "status": status}
    if r.plural == "selfsubjectreviews":
        return out | {"status": {"userInfo": user.info()}}
    if r.plural == "selfsubjectrulesreviews":
        ns = spec.get("namespace", "")
        return out | {"spec": spec, "status": rules_review(server, user, ns)}
    if r.plural == "selfsubjectaccessreviews":
        return out | {"spec": spec, "status": _access(server, _attributes(user, spec))}
    subject = User(spec.get("user", ""), spec.get("uid", ""), list(spec.get("groups") or []),
                   dict(spec.get("extra") or {}))
    if not subject.name and not subject.groups:
        raise _invalid(r.kind, "", [v.invalid("spec.user", "", "at least one of user or group must be specified")],
                       "authorization.k8s.io")
    ns = namespace if r.plural == "localsubjectaccessreviews" else None
    return out | {"spec": spec, "status": _access(server, _attributes(subject, spec, ns))}


def rules_review(server, user: User, namespace: str) -> dict:
    rules = list(server.authorizer.rbac.rules_for(user, namespace))
    if MASTERS in user.groups:
        rules = CLUSTER_ROLES["cluster-admin"][0] + rules
    if user.node:
        rules = node_auth.NODE_RULES + rules
    res, nonres = [], []
    for rule in rules:
        if rule.get("nonResourceURLs"):
            item = {"verbs": rule["verbs"], "nonResourceURLs": rule["nonResourceURLs"]}
            if item not in nonres:
                nonres.append(item)
        else:
            item = {"verbs": rule["verbs"], "apiGroups": rule.get("apiGroups") or [],
                    "resources": rule.get("resources") or []}
            if rule.get("resourceNames"):
                item["resourceNames"] = rule["resourceNames"]
            if item not in res:
                res.append(item)
    return {"resourceRules": res, "nonResourceRules": nonres, "incomplete": bool(user.node)}
