"""The lab's API access: certificates, the bearer token, the API server's loopback port and the
kubeconfig (context `netlab-<name>`) that kubectl and the Python client use: the admin's, with
kubeadm's `kubernetes-admin` client certificate (group kubeadm:cluster-admins), and one a
component (kubeconfigs/<component>.conf), each with its own certificate and identity."""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

import yaml

from netlab.kit.cluster import Cluster
from netlab.lab.pki import client_cert, make_pki, make_token

ADMIN = ("admin", "kubernetes-admin", ("kubeadm:cluster-admins",))
# each component's user (and groups), as kubeadm's kubeconfigs name them; netlab's own agents get
# users of their own, bound to their roles in the API server's bootstrap policy
COMPONENTS = {
    "kube-controller-manager": ("system:kube-controller-manager", ()),
    "kube-scheduler": ("system:kube-scheduler", ()),
    "kube-proxy": ("system:kube-proxy", ()),
    "netpol-agent": ("netlab:netpol-agent", ()),
    "lb-speaker": ("netlab:lb-speaker", ()),
}


def kubelet_user(node: str) -> tuple[str, tuple[str, ...]]:
    return f"system:node:{node}", ("system:nodes",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bootstrap(cluster: Cluster, port: int | None = None, token: str | None = None) -> Path:
    """Make the PKI, token (a new one unless given), port and kubeconfig in the lab's state
    directory; returns the kubeconfig."""
    layout = cluster.layout
    layout.state.mkdir(parents=True, exist_ok=True)
    cp = cluster.nodes[0]
    domain = cluster.dns_domain
    make_pki(layout.pki, ["127.0.0.1", cp.ip, cluster.api_service_ip],
             ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
              f"kubernetes.default.svc.{domain}", f"{cluster.name}-control-plane"])
    token = make_token(layout.token, token)
    client_cert(layout.pki, ADMIN[0], ADMIN[1], ADMIN[2])
    port = port or free_port()
    layout.apiserver_port.write_text(str(port))
    return write(cluster, f"https://127.0.0.1:{port}", token)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write(cluster: Cluster, server: str, token: str | None, path: Path | None = None,
          stem: str = ADMIN[0], user: str = "admin") -> Path:
    """A kubeconfig for the user of pki/<stem>.crt (embedded, as kubeadm embeds them), or for
    the bearer `token` where the certificate is not on this machine (a joined node)."""
    name = f"netlab-{cluster.name}"
    ca = _b64(cluster.layout.ca_cert)
    crt, key = cluster.layout.pki / f"{stem}.crt", cluster.layout.pki / f"{stem}.key"
    creds = {"client-certificate-data": _b64(crt), "client-key-data": _b64(key)} if crt.exists() and key.exists() \
        else {"token": token}
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": f"{name}-{user}", "user": creds}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-{user}"}}],
    }
    path = path or cluster.layout.kubeconfig
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.chmod(path, 0o600)
    return path


def in_lab(cluster: Cluster) -> Path:
    """A kubeconfig for components inside the lab: the API server at the control-plane node's
    address :6443, the way kubelets and kube-proxies reach it in a real cluster."""
    token = cluster.layout.token.read_text().strip()
    server = f"https://{cluster.nodes[0].ip}:6443"
    components(cluster, server, token)
    return write(cluster, server, token, cluster.layout.kubeconfig_node)


def components(cluster: Cluster, server: str, token: str) -> None:
    """Each component's kubeconfig with its own client certificate (where the CA's key is here)."""
    layout = cluster.layout
    users = dict(COMPONENTS)
    users.update({f"kubelet-{n.name}": kubelet_user(n.name) for n in cluster.nodes})
    for comp, (cn, orgs) in users.items():
        if layout.ca_key.exists():
            client_cert(layout.pki, comp, cn, orgs)
        write(cluster, server, token, layout.component_kubeconfig(comp), comp, comp)


def joined(cluster: Cluster, token: str, ca: bytes) -> None:
    """A joined node's token, CA and kubeconfigs, all naming the control plane's API server."""
    layout = cluster.layout
    layout.pki.mkdir(parents=True, exist_ok=True)
    layout.ca_cert.write_bytes(ca)
    layout.token.write_text(token + "\n")
    os.chmod(layout.token, 0o600)
    write(cluster, cluster.host.server, token)
    write(cluster, cluster.host.server, token, layout.kubeconfig_node)
    components(cluster, cluster.host.server, token)
