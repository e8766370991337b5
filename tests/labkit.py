"""Helpers for lab tests: a lab that is always taken down, and stand-in pods wired by hand."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator

from netlab.kit import net
from netlab.kit.cluster import Cluster, Node
from netlab.lab import build as lab


@contextlib.contextmanager
def host_sysctl(key: str, value: str) -> Iterator[None]:
    """The host's sysctl `key` at `value` for the block, and back to what it was after, whatever
    happens (as on a host with Docker, which turns net.ipv4.ip_forward on)."""
    path = "/proc/sys/" + key.replace(".", "/")
    with open(path) as f:
        before = f.read().strip()
    try:
        with open(path, "w") as f:
            f.write(value)
        yield
    finally:
        with open(path, "w") as f:
            f.write(before)


@contextlib.contextmanager
def running_lab(name: str, nodes: int = 2, components=(), **networking) -> Iterator[Cluster]:
    """A lab that is up for the `with` block and down afterwards, whatever happens."""
    cluster = Cluster.from_dict({"networking": networking} if networking else {}, name=name, nodes=nodes)
    try:
        yield lab.up(cluster, list(components))  # as it is up: free subnets where the defaults are taken
    finally:
        lab.down(name)


def hand_pod(cluster: Cluster, node: Node, host: int) -> tuple[str, str]:
    """A pod-like namespace attached to `node`'s cni0 with address .`host` of its pod CIDR and a
    default route via cni0 (what the kubelet and the CNI plugin do, done by hand). Returns (namespace, ip)."""
    ns = cluster.layout.pod_netns(f"{node.index}x{host}")
    subnet = ipaddress.ip_network(node.pod_cidr)
    ip = str(subnet[host])
    net.ns_create(ns, net.POD_SYSCTLS)
    net.veth(node.netns, f"veth{node.index}x{host}", ns, "eth0")
    net.attach(node.netns, f"veth{node.index}x{host}", "cni0")
    net.addr_add(ns, "eth0", f"{ip}/{subnet.prefixlen}")
    net.route_add(ns, "default", via=node.gateway)
    return ns, ip
