"""IPVS mode: the kernel's IP Virtual Server does the load balancing, as upstream's ipvs proxier
(pkg/proxy/ipvs) sets it up: every Service IP on the dummy interface kube-ipvs0, one virtual
server per IP and port with the round-robin scheduler (persistent for ClientIP affinity), one
real server per endpoint, and the few iptables rules around it matching ipsets (KUBE-CLUSTER-IP,
KUBE-NODE-PORT-TCP, ...) for masquerading. Needs the kernel's ip_vs module.

What IPVS mode programs, as pure functions of (service ports, config); ipvs_sync programs it."""

from __future__ import annotations

from proxy.config import Config
from proxy.model import ServicePort

DUMMY = "kube-ipvs0"

def bound_addresses(ports: list[ServicePort]) -> list[str]:
    """What goes on kube-ipvs0 so that the node's kernel takes the packets to IPVS: cluster IPs,
    external IPs and load-balancer ingress IPs, as upstream binds them."""
    return sorted({f"{ip}/32" for sp in ports for ip in [sp.cluster_ip, *sp.external_ips, *sp.lb_ips]})


def virtual_servers(ports: list[ServicePort], cfg: Config) -> dict:
    out = {}
    for sp in ports:
        cluster, local, _ = sp.categorize(cfg.node_name)
        internal = local if sp.itp_local else cluster
        external = local if sp.etp_local else cluster
        persist = sp.affinity_seconds
        out[(sp.cluster_ip, sp.port, sp.protocol)] = ("rr", persist, [(e.ip, e.port) for e in internal])
        for ip in sp.external_ips + sp.lb_ips:
            out[(ip, sp.port, sp.protocol)] = ("rr", persist, [(e.ip, e.port) for e in external])
        if sp.node_port:
            for ip in cfg.node_ips:
                out[(ip, sp.node_port, sp.protocol)] = ("rr", persist, [(e.ip, e.port) for e in external])
    return out


def ipsets(ports: list[ServicePort]) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {"KUBE-CLUSTER-IP": [], "KUBE-EXTERNAL-IP": [], "KUBE-LOAD-BALANCER": [],
                                  "KUBE-LOAD-BALANCER-LOCAL": [], "KUBE-NODE-PORT-TCP": [], "KUBE-NODE-PORT-UDP": [],
                                  "KUBE-LOOP-BACK": []}
    for sp in ports:
        p = sp.proto
        sets["KUBE-CLUSTER-IP"].append(f"{sp.cluster_ip},{p}:{sp.port}")
        sets["KUBE-EXTERNAL-IP"] += [f"{ip},{p}:{sp.port}" for ip in sp.external_ips]
        sets["KUBE-LOAD-BALANCER"] += [f"{ip},{p}:{sp.port}" for ip in sp.lb_ips]
        if sp.etp_local:  # the client's address kept: no masquerade (and only local real servers)
            sets["KUBE-LOAD-BALANCER-LOCAL"] += [f"{ip},{p}:{sp.port}" for ip in sp.lb_ips]
        if sp.node_port and sp.protocol in ("TCP", "UDP"):
            sets[f"KUBE-NODE-PORT-{sp.protocol}"].append(str(sp.node_port))
        sets["KUBE-LOOP-BACK"] += [f"{e.ip},{p}:{e.port},{e.ip}" for e in sp.endpoints]
    return sets


def iptables_rules(cfg: Config) -> list[str]:
    masq = f"! -s {cfg.cluster_cidr} " if cfg.cluster_cidr else ""
    return [
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service lb portal" -m set --match-set KUBE-LOAD-BALANCER '
        "dst,dst -j KUBE-LOAD-BALANCER",
        f'-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" '
        f"-m set --match-set KUBE-CLUSTER-IP dst,dst {masq}-j KUBE-MARK-MASQ",
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter '
        'purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ',
        "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT",
        "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT",
        "-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j ACCEPT",
        '-A KUBE-LOAD-BALANCER -m comment --comment "Kubernetes service load balancer ip + port with '
        'externalTrafficPolicy=local" -m set --match-set KUBE-LOAD-BALANCER-LOCAL dst,dst -j RETURN',
        "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ",
        '-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" '
        "-m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ",
        '-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin '
        'purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE',
    ]


IPVS_NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER", "KUBE-MARK-MASQ", "KUBE-POSTROUTING")


def nat_text(cfg: Config) -> str:
    """The nat table's rules in IPVS mode (the chains flushed and rewritten in one restore)."""
    mark = cfg.mark
    rules = iptables_rules(cfg) + [
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}",
        f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE',
    ]
    return "*nat\n" + "".join(f":{c} - [0:0]\n" for c in IPVS_NAT_CHAINS) + "\n".join(rules) + "\nCOMMIT\n"


def describe(ports: list[ServicePort], cfg: Config) -> str:
    """What `ipvsadm -Ln`, `ipset list` and `iptables-save` would show, for `netlab-proxy render`."""
    lines = ["# ipvsadm -Ln", "Prot LocalAddress:Port Scheduler Flags", "  -> RemoteAddress:Port   Forward Weight"]
    for (ip, port, proto), (sched, persist, reals) in sorted(virtual_servers(ports, cfg).items()):
        lines.append(f"{proto} {ip}:{port} {sched}" + (f" persistent {persist}" if persist else ""))
        lines += [f"  -> {rip}:{rport}   Masq 1" for rip, rport in reals]
    lines.append(f"# ip addr show {DUMMY}")
    lines += [f"inet {a}" for a in bound_addresses(ports)]
    for name, members in ipsets(ports).items():
        lines.append(f"# ipset list {name}")
        lines += [f"  {m}" for m in members]
    lines.append("# iptables-save -t nat (ipvs mode)")
    lines += iptables_rules(cfg)
    return "\n".join(lines) + "\n"
