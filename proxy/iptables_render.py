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

from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.config import Config
from proxy.model import ServicePort, ext_chain, fw_chain, plan, sep_chain, svc_chain, svl_chain

FILTER_CHAINS = ["KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL", "KUBE-FORWARD",
                 "KUBE-PROXY-FIREWALL"]
NAT_CHAINS = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
# the per-service and per-endpoint chains (upstream's isServiceChainName)
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")

# The jumps from the built-in chains, checked (-C) in each full sync and put back (-I) where missing.
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


class _Recorder:
    """Stands in for a Table while one service port is rendered: the calls, to replay."""

    def __init__(self, table: str, ops: list):
        self.table, self.ops = table, ops

    def chain(self, name: str) -> None:
        self.ops.append((self.table, name, None))

    def add(self, name: str, rule: str) -> None:
        self.ops.append((self.table, name, rule))


def render(ports: list[ServicePort], cfg: Config, memo: dict | None = None,
           emit: Callable[[dict[str, list[str]], Table], None] | None = None) -> Ruleset:
    """The whole ruleset for `ports`. With `memo` (kept by the caller with the same `cfg`), a
    service port equal to last time's is not rendered again: a sync costs what changed. `emit`
    is handed each service port's own nat chains and the nat table, as soon as they are added."""
    flt, nat = Table(), Table()
    for c in FILTER_CHAINS:
        flt.chain(c)
    for c in NAT_CHAINS:
        nat.chain(c)
    mark = cfg.mark
    owners: dict[str, set[str]] = {}
    fresh = {}
    for sp in sorted(ports, key=lambda p: (p.key, p.protocol)):
        k = (sp.key, sp.protocol)
        hit = memo.get(k) if memo is not None else None
        if hit is not None and (hit[0] is sp or hit[0] == sp):
            _, own, shared, owned = hit
        else:
            ops: list = []
            owned = _service(sp, cfg, _Recorder("filter", ops), _Recorder("nat", ops))
            # the port's own chains as whole lists, kept as the same objects while it is unchanged
            # (a partial sync tells them unchanged by identity); its rules in shared chains, to append
            own = {c: [] for t, c, rule in ops if rule is None}
            shared = []
            for t, c, rule in ops:
                if c in own and t == "nat":
                    if rule is not None:
                        own[c].append(rule)
                elif rule is not None:
                    shared.append((t, c, rule))
        fresh[k] = (sp, own, shared, owned)
        nat.chains.update(own)
        for table, chain, rule in shared:
            (flt if table == "filter" else nat).add(chain, rule)
        owners[sp.key + "/" + sp.proto] = owned
        if emit is not None:
            emit(own, nat)
    if memo is not None:
        memo.clear()
        memo.update(fresh)
    last = '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain"'
    if not cfg.nodeport_addresses:
        nat.add("KUBE-SERVICES", f"{last} -m addrtype --dst-type LOCAL"
                                 f"{'' if cfg.localhost_nodeports else ' ! -d 127.0.0.0/8'} -j KUBE-NODEPORTS")
    else:
        for ip in cfg.node_ips + (["127.0.0.1"] if cfg.localhost_nodeports_enabled else []):
            nat.add("KUBE-SERVICES", f"{last} -d {ip} -j KUBE-NODEPORTS")
    nat.add("KUBE-MARK-MASQ", f"-j MARK --or-mark {mark}")
    nat.add("KUBE-POSTROUTING", f"-m mark ! --mark {mark}/{mark} -j RETURN")
    nat.add("KUBE-POSTROUTING", f"-j MARK --xor-mark {mark}")
    nat.add("KUBE-POSTROUTING", '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
                                + (" --random-fully" if cfg.random_fully else ""))
    flt.add("KUBE-FIREWALL", '-m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 '
                             "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")
    flt.add("KUBE-FORWARD", f"-m conntrack --ctstate INVALID{cfg.nfacct_match('ct_state_invalid_dropped_pkts')} -j DROP")
    flt.add("KUBE-FORWARD", f'-m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT')
    flt.add("KUBE-FORWARD", '-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate '
                            "RELATED,ESTABLISHED -j ACCEPT")
    return Ruleset(flt, nat, owners)


def _service(sp: ServicePort, cfg: Config, flt: Table, nat: Table) -> set[str]:
    """One service port's rules, in upstream's order; returns the per-service nat chains it made."""
    key, proto = sp.key, sp.proto
    match = f"-m {proto} -p {proto}"
    p = plan(sp, cfg.node_name)
    cluster_eps, local_eps, reachable = p.cluster, p.local, p.reachable
    has_any, has_internal, has_external = p.has_any, p.has_internal, p.has_external
    uses_svc, uses_svl, uses_ext, uses_fw = p.uses_cluster, p.uses_local, p.uses_external, p.uses_firewall
    svc, svl, ext, fw = svc_chain(sp), svl_chain(sp), ext_chain(sp), fw_chain(sp)
    internal_chain = svl if sp.itp_local else svc
    external_policy = svl if sp.etp_local else svc
    owned = set()
    for chain, used in ((svc, uses_svc), (svl, uses_svl), (ext, uses_ext), (fw, uses_fw)):
        if used:
            nat.chain(chain)
            owned.add(chain)
    # where traffic goes when there is nothing to send it to: REJECT with no endpoints at all,
    # DROP when only the Local policy finds none
    no_eps = ("REJECT", f'"{key} has no endpoints"') if not has_any else ("DROP", f'"{key} has no local endpoints"')

    # the ClusterIP
    cip = f'-m comment --comment "{key} cluster IP" {match} -d {sp.cluster_ip} --dport {sp.port}'
    if has_internal:
        nat.add("KUBE-SERVICES", f"{cip} -j {internal_chain}")
    else:
        flt.add("KUBE-SERVICES", f"-m comment --comment {no_eps[1]} {match} -d {sp.cluster_ip} --dport {sp.port} "
                                 f"-j {no_eps[0]}")
    # externalIPs
    for eip in sp.external_ips:
        if has_any:
            nat.add("KUBE-SERVICES", f'-m comment --comment "{key} external IP" {match} -d {eip} --dport {sp.port} '
                                     f"-j {ext}")
        if not has_external:
            flt.add("KUBE-EXTERNAL-SERVICES", f"-m comment --comment {no_eps[1]} {match} -d {eip} --dport {sp.port} "
                                              f"-j {no_eps[0]}")
    # load balancer IPs, through the firewall chain when source ranges are set
    for lb in sp.lb_ips:
        if has_any:
            nat.add("KUBE-SERVICES", f'-m comment --comment "{key} loadbalancer IP" {match} -d {lb} --dport {sp.port} '
                                     f"-j {fw if uses_fw else ext}")
        if uses_fw:
            flt.add("KUBE-PROXY-FIREWALL", f'-m comment --comment "{key} traffic not accepted by {fw}" {match} '
                                           f"-d {lb} --dport {sp.port} -j DROP")
    if not has_external:
        for lb in sp.lb_ips:
            flt.add("KUBE-EXTERNAL-SERVICES", f"-m comment --comment {no_eps[1]} {match} -d {lb} --dport {sp.port} "
                                              f"-j {no_eps[0]}")
    # NodePorts (not subject to loadBalancerSourceRanges, as upstream)
    if sp.node_port:
        if has_any:
            if cfg.localhost_nodeports_enabled:
                nat.add("KUBE-NODEPORTS", f"-m comment --comment {_comment(key)} {match} -d 127.0.0.0/8 "
                                          f"--dport {sp.node_port}{cfg.nfacct_match('localhost_nps_accepted_pkts')} "
                                          f"-j {ext}")
            nat.add("KUBE-NODEPORTS", f"-m comment --comment {_comment(key)} {match} --dport {sp.node_port} -j {ext}")
        if not has_external:
            flt.add("KUBE-EXTERNAL-SERVICES", f"-m comment --comment {no_eps[1]} -m addrtype --dst-type LOCAL "
                                              f"{match} --dport {sp.node_port} -j {no_eps[0]}")
    if sp.health_check_node_port:
        flt.add("KUBE-NODEPORTS", f'-m comment --comment "{key} health check node port" -m tcp -p tcp --dport '
                                  f"{sp.health_check_node_port} -j ACCEPT")

    # the external chain: masquerade (Cluster policy), or keep the client's address (Local)
    if uses_ext:
        if not sp.etp_local:
            nat.add(ext, f'-m comment --comment "masquerade traffic for {key} external destinations" -j KUBE-MARK-MASQ')
        else:
            if cfg.cluster_cidr:  # pods going out to an external IP come back in as if from outside: Cluster
                nat.add(ext, f'-m comment --comment "pod traffic for {key} external destinations" '
                             f"-s {cfg.cluster_cidr} -j {svc}")
            nat.add(ext, f'-m comment --comment "masquerade LOCAL traffic for {key} external destinations" -m addrtype '
                         "--src-type LOCAL -j KUBE-MARK-MASQ")
            nat.add(ext, f'-m comment --comment "route LOCAL traffic for {key} external destinations" -m addrtype '
                         f"--src-type LOCAL -j {svc}")
        if has_external:
            nat.add(ext, f"-j {external_policy}")
    if uses_fw:
        for src in sp.lb_source_ranges:
            nat.add(fw, f'-m comment --comment "{key} loadbalancer IP" -s {src} -j {ext}')
        # what reaches the end was not DNATed: KUBE-PROXY-FIREWALL drops it
        nat.add(fw, f'-m comment --comment "other traffic to {key} will be dropped by KUBE-PROXY-FIREWALL"')

    # internal traffic from outside the cluster CIDR is masqueraded
    if has_internal:
        if cfg.masquerade_all:
            nat.add(internal_chain, f"{cip} -j KUBE-MARK-MASQ")
        elif cfg.cluster_cidr:
            nat.add(internal_chain, f"{cip} ! -s {cfg.cluster_cidr} -j KUBE-MARK-MASQ")
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


def restore_text(rs: Ruleset, table: str, chains: set[str] | None = None, stale: set[str] = frozenset(),
                 extra: list[str] = ()) -> str:
    """iptables-restore --noflush input for one table: every chain (or only `chains`, plus the
    always-rewritten top-level ones) declared, which flushes it, and its rules; stale chains
    declared and deleted; then the `extra` lines."""
    t = rs.tables()[table]
    base = set(FILTER_CHAINS if table == "filter" else NAT_CHAINS)
    names = [c for c in t.chains if chains is None or c in base or c in chains]
    lines = [f"*{table}"] + [f":{c} - [0:0]" for c in names] + [f":{c} - [0:0]" for c in sorted(stale)]
    for c in names:
        lines += [f"-A {c} {r}" for r in t.chains[c]]
    lines += [f"-X {c}" for c in sorted(stale)]
    lines += extra
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
