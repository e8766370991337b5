"""iptables mode: the rules upstream kube-proxy's iptables proxier (pkg/proxy/iptables) writes,
rendered as a pure function of (service ports with endpoints, node config).

Chains and their roles, as on a real node:
  nat    KUBE-SERVICES     one rule per ClusterIP/externalIP/LB IP -> KUBE-SVC/KUBE-EXT/KUBE-FW;
                           last: local destinations -> KUBE-NODEPORTS
         KUBE-NODEPORTS    one rule per NodePort -> KUBE-EXT
         KUBE-SVC-<hash>   masquerade off-cluster sources, then pick an endpoint: random with
                           probability 1/n, 1/(n-1), ... (ClientIP affinity: `recent` match first)
         KUBE-SVL-<hash>   the same over this node's endpoints (traffic policy Local)
         KUBE-EXT-<hash>   external traffic: masquerade (Cluster policy) then the policy chain
         KUBE-FW-<hash>    loadBalancerSourceRanges
         KUBE-SEP-<hash>   one endpoint: masquerade hairpin traffic, DNAT to ip:port
         KUBE-MARK-MASQ, KUBE-POSTROUTING  the masquerade mark (0x4000) and the SNAT it triggers
  filter KUBE-SERVICES, KUBE-EXTERNAL-SERVICES  REJECT for services without endpoints
         KUBE-FORWARD, KUBE-FIREWALL, KUBE-PROXY-FIREWALL, KUBE-NODEPORTS
Chain names hash the service port name ("ns/svc:port"), protocol and endpoint as upstream does
(sha256, base32, 16 characters), so they match a real node's for the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.model import ServicePort, ext_chain, fw_chain, sep_chain, svc_chain, svl_chain

FILTER_CHAINS = ["KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL", "KUBE-FORWARD",
                 "KUBE-PROXY-FIREWALL"]
NAT_CHAINS = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]

# The jumps from the built-in chains, ensured (iptables -C, else -I) before each sync.
JUMPS = [
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" '
                        "-j KUBE-PROXY-FIREWALL"),
    ("filter", "INPUT", '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS'),
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service '
                        'portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "INPUT", "-j KUBE-FIREWALL"),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" '
                          "-j KUBE-PROXY-FIREWALL"),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
                          "-j KUBE-SERVICES"),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service '
                          'portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" '
                         "-j KUBE-PROXY-FIREWALL"),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
                         "-j KUBE-SERVICES"),
    ("filter", "OUTPUT", "-j KUBE-FIREWALL"),
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
]


@dataclass
class Config:
    node_name: str = ""
    cluster_cidr: str = ""          # pods' CIDR: traffic from outside it to a ClusterIP is masqueraded
    masquerade_all: bool = False
    masquerade_bit: int = 14
    nodeport_addresses: list[str] = field(default_factory=list)  # empty: every local address

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"


@dataclass
class Table:
    """Chains in the order they are declared, each with its rules (the text after `-A CHAIN`)."""
    chains: dict[str, list[str]] = field(default_factory=dict)

    def chain(self, name: str) -> list[str]:
        return self.chains.setdefault(name, [])

    def add(self, name: str, rule: str) -> None:
        self.chain(name).append(rule)


@dataclass
class Ruleset:
    filter: Table
    nat: Table
    owners: dict[str, set[str]]  # service port key -> the nat chains it owns (for partial syncs)

    def tables(self) -> dict[str, Table]:
        return {"filter": self.filter, "nat": self.nat}


def _comment(text: str) -> str:
    # iptables-save quotes a comment that holds a space; upstream writes them the same way
    return f'"{text}"' if " " in text or not text else text


def render(ports: list[ServicePort], cfg: Config) -> Ruleset:
    flt, nat = Table(), Table()
    for c in FILTER_CHAINS:
        flt.chain(c)
    for c in NAT_CHAINS:
        nat.chain(c)
    mark = cfg.mark
    owners: dict[str, set[str]] = {}
    for sp in sorted(ports, key=lambda p: (p.key, p.protocol)):
        owners[sp.key + "/" + sp.proto] = _service(sp, cfg, flt, nat)
    nat.add("KUBE-SERVICES", '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in '
                             'this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    nat.add("KUBE-MARK-MASQ", f"-j MARK --or-mark {mark}")
    nat.add("KUBE-POSTROUTING", f"-m mark ! --mark {mark}/{mark} -j RETURN")
    nat.add("KUBE-POSTROUTING", f"-j MARK --xor-mark {mark}")
    nat.add("KUBE-POSTROUTING", '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE '
                                "--random-fully")
    flt.add("KUBE-FIREWALL", '-m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 '
                             "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")
    flt.add("KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP")
    flt.add("KUBE-FORWARD", f'-m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT')
    flt.add("KUBE-FORWARD", '-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate '
                            "RELATED,ESTABLISHED -j ACCEPT")
    return Ruleset(flt, nat, owners)


def _service(sp: ServicePort, cfg: Config, flt: Table, nat: Table) -> set[str]:
    """One service port's rules; returns the per-service nat chains it made."""
    key, proto = sp.key, sp.proto
    match = f"-m {proto} -p {proto}"
    cluster_eps, local_eps, reachable = sp.categorize(cfg.node_name)
    svc, svl, ext, fw = svc_chain(sp), svl_chain(sp), ext_chain(sp), fw_chain(sp)
    internal_chain = svl if sp.itp_local else svc
    external_chain = svl if sp.etp_local else svc
    has_internal = bool(local_eps if sp.itp_local else cluster_eps)
    has_external = bool(local_eps if sp.etp_local else cluster_eps)
    has_any = bool(cluster_eps or local_eps)
    uses_svc = bool(cluster_eps) and (not sp.itp_local or (sp.externally_accessible and not sp.etp_local))
    uses_svl = bool(local_eps) and (sp.itp_local or (sp.etp_local and sp.externally_accessible))
    uses_ext = has_external and sp.externally_accessible
    uses_fw = uses_ext and bool(sp.lb_ips) and bool(sp.lb_source_ranges)
    owned = set()
    for chain, used in ((svc, uses_svc), (svl, uses_svl), (ext, uses_ext), (fw, uses_fw)):
        if used:
            nat.chain(chain)
            owned.add(chain)

    # traffic to the ClusterIP
    cip = f'-m comment --comment "{key} cluster IP" {match} -d {sp.cluster_ip} --dport {sp.port}'
    if has_internal:
        if cfg.masquerade_all:
            nat.add(internal_chain, f"{cip} -j KUBE-MARK-MASQ")
        elif cfg.cluster_cidr:
            nat.add(internal_chain, f"{cip} ! -s {cfg.cluster_cidr} -j KUBE-MARK-MASQ")
        nat.add("KUBE-SERVICES", f"{cip} -j {internal_chain}")
    else:
        flt.add("KUBE-SERVICES", f'-m comment --comment "{key} has no endpoints" {match} -d {sp.cluster_ip} '
                                 f"--dport {sp.port} -j REJECT")

    # external traffic: externalIPs, load balancer IPs, NodePorts
    no_ext = "has no local endpoints" if has_any else "has no endpoints"
    no_ext_target = "DROP" if has_any else "REJECT"
    for eip in sp.external_ips:
        if uses_ext:
            nat.add("KUBE-SERVICES", f'-m comment --comment "{key} external IP" {match} -d {eip} --dport {sp.port} '
                                     f"-j {ext}")
        else:
            flt.add("KUBE-EXTERNAL-SERVICES", f'-m comment --comment "{key} {no_ext}" {match} -d {eip} '
                                              f"--dport {sp.port} -j {no_ext_target}")
    for lb in sp.lb_ips:
        if uses_ext:
            nat.add("KUBE-SERVICES", f'-m comment --comment "{key} loadbalancer IP" {match} -d {lb} --dport {sp.port} '
                                     f"-j {fw if uses_fw else ext}")
            if uses_fw:
                flt.add("KUBE-PROXY-FIREWALL", f'-m comment --comment "{key} traffic not accepted by {fw}" {match} '
                                               f"-d {lb} --dport {sp.port} -j DROP")
        else:
            flt.add("KUBE-EXTERNAL-SERVICES", f'-m comment --comment "{key} {no_ext}" {match} -d {lb} '
                                              f"--dport {sp.port} -j {no_ext_target}")
    if sp.node_port:
        dests = [f"-d {a} " for a in cfg.nodeport_addresses] or [""]
        for d in dests:
            if uses_ext:
                nat.add("KUBE-NODEPORTS", f"-m comment --comment {_comment(key)} {match} {d}--dport {sp.node_port} "
                                          f"-j {ext}")
            else:
                flt.add("KUBE-EXTERNAL-SERVICES", f'-m comment --comment "{key} {no_ext}" -m addrtype --dst-type LOCAL '
                                                  f"{match} {d}--dport {sp.node_port} -j {no_ext_target}")
    if sp.health_check_node_port:
        flt.add("KUBE-NODEPORTS", f'-m comment --comment "{key} health check node port" -m tcp -p tcp --dport '
                                  f"{sp.health_check_node_port} -j ACCEPT")

    if uses_fw:
        for src in sp.lb_source_ranges:
            nat.add(fw, f'-m comment --comment "{key} loadbalancer IP" -s {src} -j {ext}')
    if uses_ext:
        if not sp.etp_local:
            nat.add(ext, f'-m comment --comment "masquerade traffic for {key} external destinations" -j KUBE-MARK-MASQ')
        else:
            if cfg.cluster_cidr and uses_svc:
                nat.add(ext, f'-m comment --comment "pod traffic for {key} external destinations" -s {cfg.cluster_cidr} '
                             f"-j {svc}")
            nat.add(ext, f'-m comment --comment "masquerade LOCAL traffic for {key} external destinations" -m addrtype '
                         "--src-type LOCAL -j KUBE-MARK-MASQ")
            if uses_svc:
                nat.add(ext, f'-m comment --comment "route LOCAL traffic for {key} external destinations" -m addrtype '
                             f"--src-type LOCAL -j {svc}")
        nat.add(ext, f"-j {external_chain}")

    # endpoint selection and the endpoints' DNAT
    if uses_svc:
        _select(nat, svc, sp, cluster_eps)
    if uses_svl:
        _select(nat, svl, sp, local_eps)
    for ep in reachable:
        sep = sep_chain(sp, ep)
        nat.chain(sep)
        owned.add(sep)
        nat.add(sep, f"-m comment --comment {_comment(key)} -s {ep.ip} -j KUBE-MARK-MASQ")
        recent = f"-m recent --name {sep} --set " if sp.affinity_seconds else ""
        nat.add(sep, f"-m comment --comment {_comment(key)} {recent}{match} -j DNAT --to-destination {ep.addr}")
    return owned


def _select(nat: Table, chain: str, sp: ServicePort, eps: list) -> None:
    """Round robin by probability: the i-th of n endpoints is taken with probability 1/(n-i), so
    each gets 1/n of new connections (ClientIP affinity first sends a known client back)."""
    if sp.affinity_seconds:
        for ep in eps:
            sep = sep_chain(sp, ep)
            nat.add(chain, f'-m comment --comment "{sp.key} -> {ep.addr}" -m recent --name {sep} --rcheck '
                           f"--seconds {sp.affinity_seconds} --reap -j {sep}")
    n = len(eps)
    for i, ep in enumerate(eps):
        prob = f"-m statistic --mode random --probability {1.0 / (n - i):0.10f} " if i < n - 1 else ""
        nat.add(chain, f'-m comment --comment "{sp.key} -> {ep.addr}" {prob}-j {sep_chain(sp, ep)}')


def restore_text(rs: Ruleset, table: str, chains: set[str] | None = None, stale: set[str] = frozenset()) -> str:
    """iptables-restore --noflush input for one table: every chain (or only `chains`, plus the
    always-rewritten top-level ones) declared, which flushes it, and its rules; stale chains
    declared and deleted."""
    t = rs.tables()[table]
    base = set(FILTER_CHAINS if table == "filter" else NAT_CHAINS)
    names = [c for c in t.chains if chains is None or c in base or c in chains]
    lines = [f"*{table}"] + [f":{c} - [0:0]" for c in names] + [f":{c} - [0:0]" for c in sorted(stale)]
    for c in names:
        lines += [f"-A {c} {r}" for r in t.chains[c]]
    lines += [f"-X {c}" for c in sorted(stale)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
