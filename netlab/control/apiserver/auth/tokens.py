"""Service-account tokens: JWTs signed RS256 with the lab's service-account key (pki/sa.key,
as kubeadm's), with upstream's claims: iss, sub, aud, exp, iat, nbf, jti and the
`kubernetes.io` claim naming the namespace, the service account and the object the token is
bound to (a Pod, a Secret or a Node). PyJWT does the signing and checking."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://kubernetes.default.svc.cluster.local"  # kubeadm's --service-account-issuer
DEFAULT_EXPIRATION = 3600  # TokenRequest's default expirationSeconds
MIN_EXPIRATION = 600  # upstream refuses shorter


def ensure_key(pki: Path) -> None:
    """sa.key and sa.pub, made once (kubeadm makes them at init)."""
    key_path, pub_path = pki / "sa.key", pki / "sa.pub"
    if key_path.exists() and pub_path.exists():
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    pub_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))


class Signer:
    """Issues and checks the tokens of one issuer."""

    def __init__(self, pki: Path, issuer: str = ISSUER):
        ensure_key(pki)
        self.key = serialization.load_pem_private_key((pki / "sa.key").read_bytes(), None)
        self.public = self.key.public_key()
        der = self.public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        # upstream's key id: the unpadded base64url of the SHA-256 of the public key's DER
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
        self.issuer = issuer
        self.audiences = [issuer]  # the API server's own audiences (--api-audiences defaults to the issuer)

    def issue(self, namespace: str, sa: dict, audiences: list[str] | None, expiration: int,
              bound: dict | None = None, node: dict | None = None) -> tuple[str, int]:
        """A token for ServiceAccount `sa` and its expiry (Unix time). `bound`: the Pod or Secret
        it is bound to; `node`: the pod's Node, named in the claims as upstream does."""
        now = int(time.time())
        exp = now + expiration
        private = {"namespace": namespace,
                   "serviceaccount": {"name": sa["metadata"]["name"], "uid": sa["metadata"]["uid"]}}
        if bound:
            kind = bound.get("kind", "Pod").lower()
            private[kind] = {"name": bound["metadata"]["name"], "uid": bound["metadata"]["uid"]}
        if node:
            private["node"] = {"name": node["metadata"]["name"], "uid": node["metadata"]["uid"]}
        claims = {"aud": list(audiences or self.audiences), "exp": exp, "iat": now, "nbf": now, "iss": self.issuer,
                  "jti": str(uuid.uuid4()), "sub": f"system:serviceaccount:{namespace}:{sa['metadata']['name']}",
                  "kubernetes.io": private}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid}), exp

    def verify(self, token: str, audiences: list[str] | None = None) -> dict | None:
        """The claims of a valid token of this issuer for one of `audiences` (default: the API
        server's), None for a token that is not one of ours; raises jwt.InvalidTokenError for one
        of ours that is expired or meant for another audience."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return None
        if header.get("alg") != "RS256" or unverified.get("iss") != self.issuer:
            return None
        return jwt.decode(token, self.public, algorithms=["RS256"], audience=audiences or self.audiences,
                          issuer=self.issuer, options={"require": ["exp", "iat", "sub"]})
