"""kube-proxy's configuration shared by every mode (upstream's KubeProxyConfiguration, the part
the renderers read): the node, the cluster's CIDRs, masquerading and NodePort addresses."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass
class Config:
    node_name: str = ""
    cluster_cidr: str = ""          # pods' CIDR: traffic from outside it to a ClusterIP is masqueraded
    masquerade_all: bool = False
    masquerade_bit: int = 14
    nodeport_addresses: list[str] = field(default_factory=list)  # empty: every local address
    node_ips: list[str] = field(default_factory=list)  # this node's addresses that accept NodePorts
    localhost_nodeports: bool = True  # --iptables-localhost-nodeports (needs route_localnet)
    random_fully: bool = True         # MASQUERADE --random-fully, where iptables has it
    nfacct: bool = False              # count with -m nfacct (upstream, when it could make the counters)
    service_cidrs: list[str] = field(default_factory=list)  # nftables: traffic to unallocated ClusterIPs dropped

    @property
    def localhost_nodeports_enabled(self) -> bool:
        """NodePorts on 127.0.0.1: when enabled and the NodePort addresses include loopback."""
        return self.localhost_nodeports and (not self.nodeport_addresses or any(
            ipaddress.ip_address("127.0.0.1") in ipaddress.ip_network(c, strict=False)
            for c in self.nodeport_addresses))

    def nfacct_match(self, name: str) -> str:
        return f" -m nfacct --nfacct-name {name}" if self.nfacct else ""

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"
