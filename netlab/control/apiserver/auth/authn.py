"""Authentication, as upstream's union of authenticators: a client certificate the lab's CA
signed (CN the user, O each group, as kubeadm's admin.conf and the components' kubeconfigs carry),
a bearer token that is the lab's static token (the admin's, as a --token-auth-file line) or a
service-account JWT of this API server's issuer whose service account (and bound object) still
exist, or a kubeadm bootstrap token (a Secret kube-system/bootstrap-token-<id>); no credentials
at all is system:anonymous. A token that is presented and not valid is a 401, whatever else the
request carries."""

from __future__ import annotations

import base64
import datetime
import hmac
import logging
import re

import jwt

from netlab.api.resources import lookup
from netlab.control.apiserver.auth import identity
from netlab.control.apiserver.auth.identity import AUTHENTICATED, User
from netlab.control.apiserver.auth.tokens import Signer
from netlab.control.apiserver.errors import APIError

log = logging.getLogger("netlab.apiserver.authn")

POD_NAME, POD_UID = "authentication.kubernetes.io/pod-name", "authentication.kubernetes.io/pod-uid"
NODE_NAME, NODE_UID = "authentication.kubernetes.io/node-name", "authentication.kubernetes.io/node-uid"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
BOOTSTRAP_TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")  # kubeadm's format
BOOTSTRAPPERS = "system:bootstrappers"


class Unauthorized(APIError):
    def __init__(self) -> None:
        super().__init__(401, "Unauthorized", "Unauthorized")


def cert_user(peercert: dict | None) -> User | None:
    """The user of a verified client certificate (ssl's getpeercert() form)."""
    if not peercert:
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject", ()):
        for k, val in rdn:
            if k == "commonName":
                cn = val
            elif k == "organizationName":
                orgs.append(val)
    if not cn:
        return None
    return User(cn, groups=[*orgs, AUTHENTICATED])


class Authenticator:
    def __init__(self, objects, signer: Signer, static_token: str | None):
        self.objects, self.signer, self.static = objects, signer, static_token

    def authenticate(self, authorization: str, peercert: dict | None) -> User:
        if authorization:
            scheme, _, token = authorization.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise Unauthorized()
            user = self.token_user(token)
            if user is None:
                raise Unauthorized()
            return user
        return cert_user(peercert) or identity.anonymous()

    def token_user(self, token: str, audiences: list[str] | None = None) -> User | None:
        """The user a bearer token stands for, or None (TokenReview asks the same)."""
        if self.static and hmac.compare_digest(token.encode(), self.static.encode()):
            return User(identity.ADMIN, groups=[identity.ADMINS, AUTHENTICATED])
        if BOOTSTRAP_TOKEN.match(token):
            return self._bootstrap_user(token)
        try:
            claims = self.signer.verify(token, audiences)
        except jwt.InvalidTokenError as e:
            log.info("service account token refused: %s", e)
            return None
        if claims is None:
            return None
        return self._sa_user(claims)

    def _bootstrap_user(self, token: str) -> User | None:
        """A kubeadm bootstrap token `<id>.<secret>`: the Secret kube-system/bootstrap-token-<id> of
        type bootstrap.kubernetes.io/token, for authentication, not expired, as upstream's
        bootstrap authenticator reads it."""
        tid, secret = token.split(".")
        obj = self.objects.store.get(self.objects.key(lookup("", "v1", "secrets"), "kube-system",
                                                      f"bootstrap-token-{tid}"))
        if obj is None or obj.get("type") != "bootstrap.kubernetes.io/token" or \
                obj["metadata"].get("deletionTimestamp"):
            return None
        data = {k: base64.b64decode(v or "").decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
        if data.get("token-id") != tid or not hmac.compare_digest(data.get("token-secret", ""), secret) or \
                data.get("usage-bootstrap-authentication") != "true":
            return None
        if data.get("expiration"):
            try:
                if datetime.datetime.fromisoformat(data["expiration"].replace("Z", "+00:00")) < \
                        datetime.datetime.now(datetime.timezone.utc):
                    return None
            except ValueError:
                return None
        extra = [g.strip() for g in data.get("auth-extra-groups", "").split(",") if g.strip()]
        return User(f"system:bootstrap:{tid}", groups=[BOOTSTRAPPERS, *extra, AUTHENTICATED])

    def _sa_user(self, claims: dict) -> User | None:
        priv = claims.get("kubernetes.io") or {}
        ns, sa = priv.get("namespace", ""), priv.get("serviceaccount") or {}
        if claims.get("sub") != f"{identity.SA_PREFIX}{ns}:{sa.get('name')}":
            return None
        # a bound token lives only as long as its service account and its object (upstream's
        # legacy-free validator: the same uid, not deleted)
        if not self._alive("serviceaccounts", ns, sa):
            log.info("token of %s/%s refused: the service account is gone", ns, sa.get("name"))
            return None
        extra: dict[str, list[str]] = {}
        for kind, plural in (("pod", "pods"), ("secret", "secrets")):
            ref = priv.get(kind)
            if ref:
                if not self._alive(plural, ns, ref):
                    log.info("token of %s/%s refused: its %s %s is gone", ns, sa.get("name"), kind, ref.get("name"))
                    return None
                if kind == "pod":
                    extra[POD_NAME], extra[POD_UID] = [ref["name"]], [ref["uid"]]
        node = priv.get("node")
        if node:
            extra[NODE_NAME], extra[NODE_UID] = [node["name"]], [node["uid"]]
        if claims.get("jti"):
            extra[CREDENTIAL_ID] = [f"JTI={claims['jti']}"]
        return identity.sa_user(ns, sa["name"], sa.get("uid", ""), extra)

    def _alive(self, plural: str, ns: str, ref: dict) -> bool:
        r = lookup("", "v1", plural)
        obj = self.objects.store.get(self.objects.key(r, ns, ref.get("name", "")))
        if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
            return False
        return not (plural == "pods" and obj["metadata"].get("deletionTimestamp") and
                    (obj.get("status") or {}).get("phase") not in ("Pending", "Running"))
