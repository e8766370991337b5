"""Helpers for lab tests: a lab that is always taken down, and stand-in pods wired by hand."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator

from netlab.lab import build as lab
from netlab.kit import net
from netlab.kit.cluster import Cluster, Node


@contextlib.contextmanager
def running_lab(name: str, nodes: int = 2, components=(), **networking) -> Iterator[Cluster]:
    """A lab that is up for the `with` block and down afterwards, whatever happens."""
    cluster = Cluster.from_dict({"networking": networking} if networking else {}, name=name, nodes=nodes)
    try:
        lab.up(cluster, list(components))
        yield cluster
    finally:
        lab.down(name)


def hand_pod(cluster: Cluster, node: Node, host: int) -> tuple[str, str]:
    """A pod-like namespace attached to `node`'s cni0 with address .`host` of its pod CIDR and a
    default route via cni0 (what the CNI plugin does, done by hand). Returns (namespace, ip)."""
    ns = f"{cluster.name}-pod-{node.index}-{host}"
    subnet = ipaddress.ip_network(node.pod_cidr)
    ip = str(subnet[host])
    net.ns_create(ns)
    net.veth(node.netns, f"veth{node.index}x{host}", ns, "eth0")
    net.attach(node.netns, f"veth{node.index}x{host}", "cni0")
    net.addr_add(ns, "eth0", f"{ip}/{subnet.prefixlen}")
    net.route_add(ns, "default", via=node.gateway)
    return ns, ip
