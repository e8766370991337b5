"""What kube-proxy reads from and sets on its node, whatever the mode: the addresses that accept
NodePorts, and the sysctls upstream sets when it starts."""

from __future__ import annotations

import ipaddress
import logging
import subprocess

from netlab.kit import net
from proxy.config import Config

log = logging.getLogger("netlab.proxy")


def node_ips(cfg: Config) -> list[str]:
    """This node's IPv4 addresses that accept NodePorts: those within --nodeport-addresses, or
    by default the node's primary address (of the interface holding the default route), as
    upstream's nftables mode does with `--nodeport-addresses primary`."""
    cidrs = [ipaddress.ip_network(c, strict=False) for c in cfg.nodeport_addresses]
    if cidrs:
        addrs = net.addr_list(None)
    else:
        dev = next((r["dev"] for r in net.route_list(None) if r["dst"] == "default"), None)
        addrs = net.addr_list(None, dev) if dev else []
    out = []
    for a in addrs:
        ip = ipaddress.ip_interface(a).ip
        if ip.version == 4 and not ip.is_loopback and (not cidrs or any(ip in c for c in cidrs)):
            out.append(str(ip))
    return out


def prepare() -> None:
    """What upstream sets on start: route_localnet for NodePorts on 127.0.0.1, and bridged
    traffic through iptables."""
    for key, val in (("net/ipv4/conf/all/route_localnet", "1"), ("net/bridge/bridge-nf-call-iptables", "1")):
        try:
            with open(f"/proc/sys/{key}", "w") as f:
                f.write(val)
        except OSError as e:
            log.warning("cannot set %s: %s", key, e)
    subprocess.run(["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_tcp_be_liberal=1"], capture_output=True)
