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
    state = cluster.state_dir
    state.mkdir(parents=True, exist_ok=True)
    cp = cluster.nodes[0]
    domain = cluster.dns_domain
    make_pki(state / "pki", ["127.0.0.1", cp.ip, cluster.api_service_ip],
             ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
              f"kubernetes.default.svc.{domain}", f"{cluster.name}-control-plane"])
    token = make_token(state / "token", token)
    port = port or free_port()
    (state / "apiserver.port").write_text(str(port))
    return write(cluster, f"https://127.0.0.1:{port}", token)


def write(cluster: Cluster, server: str, token: str, path: Path | None = None) -> Path:
    state = cluster.state_dir
    name = f"netlab-{cluster.name}"
    ca = base64.b64encode((state / "pki" / "ca.crt").read_bytes()).decode()
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
    }
    path = path or state / "kubeconfig"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.chmod(path, 0o600)
    return path


def in_lab(cluster: Cluster) -> Path:
    """A kubeconfig for components inside the lab: the API server at the control-plane node's
    address :6443, the way kubelets and kube-proxies reach it in a real cluster."""
    token = (cluster.state_dir / "token").read_text().strip()
    return write(cluster, f"https://{cluster.nodes[0].ip}:6443", token, cluster.state_dir / "kubeconfig-node")


def joined(cluster: Cluster, token: str, ca: bytes) -> None:
    """A joined node's token, CA and kubeconfigs, all naming the control plane's API server."""
    (cluster.state_dir / "pki").mkdir(parents=True, exist_ok=True)
    (cluster.state_dir / "pki" / "ca.crt").write_bytes(ca)
    (cluster.state_dir / "token").write_text(token + "\n")
    os.chmod(cluster.state_dir / "token", 0o600)
    write(cluster, cluster.host.server, token)
    write(cluster, cluster.host.server, token, cluster.state_dir / "kubeconfig-node")
