"""What kubeadm writes that more than one netlab part needs, below them both: the CoreDNS Corefile
(netlab.lab.addons puts it in the `coredns` ConfigMap; netlab-dns serves it when given none, as
CoreDNS has a default of its own)."""

from __future__ import annotations


def corefile(domain: str = "cluster.local") -> str:
    """The Corefile kubeadm installs, less `forward . /etc/resolv.conf`: nothing leaves a lab."""
    return f"""\
.:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    cache 30
    loop
    reload
    loadbalance
}}
"""
