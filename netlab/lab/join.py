"""A cluster over several machines (VMs), one node each, made the way kubeadm makes one:

    first machine:  sudo netlab init --advertise-address 192.168.56.10 [--token abcdef.0123456789abcdef]
    every other:    sudo netlab join 192.168.56.10:6443 --token abcdef.0123456789abcdef \\
                        --discovery-token-ca-cert-hash sha256:<hex>

`init` makes the machine's own namespace the control plane and its first node, and prints the
join command. `join` reads the control plane's CA from kube-public/cluster-info over an
unverified connection, checks it against the hash it was given (SHA-256 of the CA's public key,
kubeadm's format) and from then on trusts only it; reads the cluster's subnets and proxy mode
from the kubeadm-config and kube-proxy ConfigMaps; registers the Node; waits for the podCIDR
the node IPAM controller assigns; and starts the node's CNI agent, kubelet and kube-proxy here.
The CNI agents keep host-gw routes between the machines' pod subnets (cni.routes).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import json
import re
import secrets
import socket
import ssl
import string
import time
import urllib.error
import urllib.request

import yaml

from netlab.kit import net
from netlab.kit.cluster import Cluster, Host
from netlab.lab import build as lab
from netlab.lab.build import LabError

TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")  # a kubeadm bootstrap token
API_PORT = 6443


def new_token() -> str:
    chars = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(chars) for _ in range(6)) + "." + "".join(secrets.choice(chars) for _ in range(16))


def ca_cert_hash(pem: bytes) -> str:
    """kubeadm's --discovery-token-ca-cert-hash: sha256 of the CA's DER SubjectPublicKeyInfo."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = x509.load_pem_x509_certificate(pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def machine_ip(toward: str | None = None) -> str:
    """This machine's address: the source of its route toward `toward`, else its one global IPv4."""
    if toward:
        r = net.run(None, ["ip", "-j", "route", "get", toward], check=False)
        if r.returncode != 0:
            raise LabError(f"no route from this machine to the API server at {toward}: {r.stderr.strip()}")
        return json.loads(r.stdout)[0]["prefsrc"]
    addrs = [a for link in net.link_list(None) for a in net.addr_list(None, link["name"])
             if not (ipaddress.ip_interface(a).ip.is_loopback or ipaddress.ip_interface(a).ip.is_link_local)]
    if len(addrs) != 1:
        raise LabError(f"--advertise-address: this machine has {len(addrs)} IPv4 addresses "
                       f"({', '.join(addrs) or 'none'}); name the one other machines reach it at")
    return str(ipaddress.ip_interface(addrs[0]).ip)


def _check_token(token: str) -> None:
    if not TOKEN.match(token):
        raise LabError(f"--token: {token!r} is not a bootstrap token like abcdef.0123456789abcdef "
                       "(6 and 16 characters of a-z and 0-9)")


def init(base: Cluster, node_name: str | None = None, advertise: str | None = None,
         token: str | None = None) -> tuple[Cluster, str]:
    """This machine as the control plane and first node; returns the cluster and the join command."""
    lab.require_root()
    token = token or new_token()
    _check_token(token)
    ip = advertise or machine_ip()
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        raise LabError(f"--advertise-address: {ip!r} is not an IPv4 address") from None
    pod_cidr = str(next(ipaddress.ip_network(base.pod_subnet).subnets(new_prefix=24)))
    cluster = dataclasses.replace(base, host=Host(node_name or hostname(), "control-plane", ip, pod_cidr,
                                                  f"https://{ip}:{API_PORT}"))
    cluster.validate()
    lab.up(cluster, token=token)
    ca = ca_cert_hash(cluster.layout.ca_cert.read_bytes())
    command = f"netlab join {ip}:{API_PORT} --token {token} --discovery-token-ca-cert-hash {ca}"
    cluster.layout.join_command.write_text(command + "\n")
    return cluster, command


def hostname() -> str:
    """kubeadm's default node name: the machine's hostname, lowercased."""
    return socket.gethostname().split(".")[0].lower()


class Unreachable(LabError):
    pass


class _Api:
    """The few calls `join` makes before it has a kubelet: plain HTTPS with the bootstrap token."""

    def __init__(self, server: str, token: str, ca: bytes | None):
        self.server, self.token = server, token
        self.ctx = ssl.create_default_context(cadata=ca.decode() if ca else None)
        if ca is None:  # discovery: the CA is what we are about to learn and check
            self.ctx.check_hostname, self.ctx.verify_mode = False, ssl.CERT_NONE

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(self.server + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.ctx) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                raise LabError(f"the API server at {self.server} refused --token (401 Unauthorized)") from None
            raise
        except (urllib.error.URLError, OSError) as e:
            raise Unreachable(f"cannot reach the API server at {self.server}: {getattr(e, 'reason', e)}") from None


def discover(server: str, token: str, ca_hash: str | None, timeout: float) -> bytes:
    """The control plane's CA, from kube-public/cluster-info, checked against `ca_hash` (None: trusted
    unchecked, --discovery-token-unsafe-skip-ca-verification). Until `timeout`, an API server that is
    not up yet, or has no cluster-info yet, is asked again, as kubeadm does (VMs come up together)."""
    end = time.monotonic() + timeout
    while True:
        try:
            info = _Api(server, token, None).call("GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info")
            break
        except (Unreachable, urllib.error.HTTPError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code != 404:
                raise
            if time.monotonic() > end:
                if isinstance(e, Unreachable):
                    raise
                raise LabError(f"the API server at {server} has no kube-public/cluster-info: is it a control plane "
                               "that `netlab init` made?") from None
            time.sleep(1)
    cfg = yaml.safe_load(info["data"]["kubeconfig"])
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
    if ca_hash is not None and ca_cert_hash(ca) != ca_hash.lower():
        raise LabError(f"--discovery-token-ca-cert-hash: the API server at {server} presents a CA whose hash is "
                       f"{ca_cert_hash(ca)}, not {ca_hash}; check the join command `netlab init` printed")
    return ca


def join(server: str, token: str, ca_hash: str | None, name: str, node_name: str | None = None,
         timeout: float = 60, discovery_timeout: float = 300) -> Cluster:
    """This machine as a worker node of the cluster whose API server is at `server` (HOST:PORT)."""
    lab.require_root()
    _check_token(token)
    if ca_hash is not None and not re.match(r"^sha256:[0-9a-fA-F]{64}$", ca_hash):
        raise LabError(f"--discovery-token-ca-cert-hash: {ca_hash!r} is not sha256:<64 hex digits>")
    host, _, port = server.rpartition(":") if ":" in server else (server, "", str(API_PORT))
    url = f"https://{host}:{port}"
    ca = discover(url, token, ca_hash, discovery_timeout)
    api = _Api(url, token, ca)  # from here on, only a server with that CA's certificate
    cm = api.call("GET", "/api/v1/namespaces/kube-system/configmaps/kubeadm-config")
    networking = yaml.safe_load(cm["data"]["ClusterConfiguration"]).get("networking") or {}
    proxy = yaml.safe_load(api.call("GET", "/api/v1/namespaces/kube-system/configmaps/kube-proxy")
                           ["data"]["config.conf"])
    me = node_name or hostname()
    ip = machine_ip(toward=host)
    base = Cluster.from_dict({"name": name, "networking": {
        "podSubnet": networking["podSubnet"], "serviceSubnet": networking["serviceSubnet"],
        "dnsDomain": networking.get("dnsDomain", "cluster.local"), "proxyMode": proxy.get("mode") or "iptables"}})
    lab.check_host(base)
    from netlab.node.kubelet.node import node_object

    try:
        api.call("POST", "/api/v1/nodes", node_object(base, dataclasses.replace(
            base.nodes[0], name=me, role="worker", ip=ip, pod_cidr="")))
    except urllib.error.HTTPError as e:
        if e.code == 409:
            raise LabError(f"a Node named {me!r} is in the cluster already; join with another --node-name, "
                           f"or remove it first: kubectl delete node {me}") from None
        raise
    made = False
    try:
        pod_cidr = _wait(api, me, timeout, lambda n: (n.get("spec") or {}).get("podCIDR"),
                         "a podCIDR from the control plane's node IPAM controller (is kube-controller-manager "
                         "running with --allocate-node-cidrs?)")
        cluster = dataclasses.replace(base, host=Host(me, "worker", ip, pod_cidr, url))
        cluster.validate()
        lab.up(cluster, token=token, ca=ca)
        made = True
        _wait(api, me, timeout, lambda n: any(c.get("type") == "Ready" and c.get("status") == "True"
                                              for c in (n.get("status") or {}).get("conditions") or []),
              f"the kubelet to report node {me} Ready (see: netlab logs --name {name} kubelet-{me})")
    except BaseException:  # nothing half-made: not the machine's node, nor its Node object
        if made:
            lab.down(name)
        try:
            api.call("DELETE", f"/api/v1/nodes/{me}")
        except (LabError, urllib.error.HTTPError):
            pass
        raise
    return cluster


def _wait(api: _Api, node: str, timeout: float, done, what: str):
    """Until `done(Node)` gives something; that."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = done(api.call("GET", f"/api/v1/nodes/{node}"))
        if got:
            return got
        time.sleep(0.2)
    raise LabError(f"waited {timeout:.0f} s for {what}")
