"""The lab's API access: certificates, the bearer token, the API server's loopback port and the
kubeconfig (context `netlab-<name>`) that kubectl and the Python client use."""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

import yaml

from netlab.kit.cluster import Cluster
from netlab.lab.pki import make_pki, make_token


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
    port = port or free_port()
    layout.apiserver_port.write_text(str(port))
    return write(cluster, f"https://127.0.0.1:{port}", token)


def write(cluster: Cluster, server: str, token: str, path: Path | None = None) -> Path:
    name = f"netlab-{cluster.name}"
    ca = base64.b64encode(cluster.layout.ca_cert.read_bytes()).decode()
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
    }
    path = path or cluster.layout.kubeconfig
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.chmod(path, 0o600)
    return path


def in_lab(cluster: Cluster) -> Path:
    """A kubeconfig for components inside the lab: the API server at the control-plane node's
    address :6443, the way kubelets and kube-proxies reach it in a real cluster."""
    token = cluster.layout.token.read_text().strip()
    return write(cluster, f"https://{cluster.nodes[0].ip}:6443", token, cluster.layout.kubeconfig_node)


def joined(cluster: Cluster, token: str, ca: bytes) -> None:
    """A joined node's token, CA and kubeconfigs, all naming the control plane's API server."""
    layout = cluster.layout
    layout.pki.mkdir(parents=True, exist_ok=True)
    layout.ca_cert.write_bytes(ca)
    layout.token.write_text(token + "\n")
    os.chmod(layout.token, 0o600)
    write(cluster, cluster.host.server, token)
    write(cluster, cluster.host.server, token, layout.kubeconfig_node)
