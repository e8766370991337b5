"""A request's user, as upstream's user.Info: name, uid, groups and extra, and the names the
well-known identities go by."""

from __future__ import annotations

from dataclasses import dataclass, field

AUTHENTICATED, UNAUTHENTICATED = "system:authenticated", "system:unauthenticated"
ANONYMOUS = "system:anonymous"
MASTERS = "system:masters"
NODES, NODE_PREFIX = "system:nodes", "system:node:"
SA_PREFIX, SA_GROUP = "system:serviceaccount:", "system:serviceaccounts"
ADMIN, ADMINS = "kubernetes-admin", "kubeadm:cluster-admins"  # kubeadm's admin.conf


@dataclass
class User:
    name: str
    uid: str = ""
    groups: list[str] = field(default_factory=list)
    extra: dict[str, list[str]] = field(default_factory=dict)

    def info(self) -> dict:
        """As authentication.k8s.io's UserInfo."""
        out: dict = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        if self.groups:
            out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out

    @property
    def node(self) -> str | None:
        """The node a kubelet's identity names (system:node:<name> in system:nodes), else None."""
        if self.name.startswith(NODE_PREFIX) and NODES in self.groups:
            return self.name[len(NODE_PREFIX):]
        return None

    @property
    def service_account(self) -> tuple[str, str] | None:
        """(namespace, name) of a service account's user name, else None."""
        return split_sa(self.name)


def split_sa(name: str) -> tuple[str, str] | None:
    if not name.startswith(SA_PREFIX):
        return None
    ns, sep, sa = name[len(SA_PREFIX):].partition(":")
    return (ns, sa) if sep and ns and sa and ":" not in sa else None


def sa_user(namespace: str, name: str, uid: str = "", extra: dict | None = None) -> User:
    return User(f"{SA_PREFIX}{namespace}:{name}", uid, [SA_GROUP, f"{SA_GROUP}:{namespace}", AUTHENTICATED],
                extra or {})


def anonymous() -> User:
    return User(ANONYMOUS, groups=[UNAUTHENTICATED])
