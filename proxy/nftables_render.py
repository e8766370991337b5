"""nftables mode: the table upstream's nftables proxier (pkg/proxy/nftables) programs.

One table, `ip kube-proxy`. Traffic is dispatched by verdict maps instead of rule lists:
`service-ips` (ClusterIP, external and load-balancer IP . protocol . port -> service chain) and
`service-nodeports` (protocol . port -> external chain), so the first packet's cost does not grow
with the number of Services as the iptables mode's KUBE-SERVICES list does. A service chain picks
an endpoint with `numgen random mod N vmap { 0 : goto endpoint-..., ... }`; an endpoint chain
DNATs. Services without endpoints are rejected through `no-endpoint-services`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple

from proxy.config import Config
from proxy.model import Endpoint, ServicePort, plan

TABLE = "kube-proxy"
T = f"ip {TABLE}"


@functools.lru_cache(maxsize=1 << 18)
def _hashed(name: str) -> str:
    """Upstream's hashAndTruncate: the name prefixed with 8 base32 characters of its sha256
    (which 5 bytes of the digest give)."""
    return base64.b32encode(hashlib.sha256(name.encode()).digest()[:5]).decode() + "-" + name


def _base(sp: ServicePort) -> str:
    return _hashed(f"{sp.namespace}/{sp.name}/{sp.proto}/{sp.port_name}")


def service_chain(sp: ServicePort) -> str:
    return f"service-{_base(sp)}"


def local_chain(sp: ServicePort) -> str:
    return f"local-{_base(sp)}"


def external_chain(sp: ServicePort) -> str:
    return f"external-{_base(sp)}"


def firewall_chain(sp: ServicePort) -> str:
    return f"firewall-{_base(sp)}"


def _endpoint_base(sp: ServicePort, ep: Endpoint) -> str:
    return _hashed(f"{sp.namespace}/{sp.name}/{sp.proto}/{sp.port_name}__{ep.ip}/{ep.port}")


def endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    return f"endpoint-{_endpoint_base(sp, ep)}"


def affinity_set(sp: ServicePort, ep: Endpoint) -> str:
    return f"affinity-{_endpoint_base(sp, ep)}"


@dataclass
class Ruleset:
    """Chains, map and set elements, affinity sets. render() gives the base chains and elements
    here and each service port's own in `parts`, kept from sync to sync for the ports that did
    not change, so a partial sync compares only the parts that are new objects."""
    chains: dict[str, list[str]] = field(default_factory=dict)     # name -> rules
    elements: dict[str, list[str]] = field(default_factory=dict)   # map/set name -> elements
    sets: dict[str, str] = field(default_factory=dict)             # affinity sets -> definition
    parts: dict[tuple[str, str], Ruleset] = field(default_factory=dict)  # (port key, protocol) -> its part

    def add(self, chain: str, rule: str) -> None:
        self.chains.setdefault(chain, []).append(rule)

    def merged(self, keys=None) -> Ruleset:
        """One ruleset of the base and the parts (only the parts of `keys`, if given)."""
        out = Ruleset(dict(self.chains), {n: list(e) for n, e in self.elements.items()}, dict(self.sets))
        for k in sorted(self.parts if keys is None else keys):  # the parts in a stable order
            part = self.parts.get(k)
            if part is None:
                continue
            out.chains.update(part.chains)
            out.sets.update(part.sets)
            for name, elements in part.elements.items():
                if elements:
                    out.elements.setdefault(name, []).extend(elements)
        return out


BASE_CHAINS = {
    "filter-prerouting-pre-dnat": "type filter hook prerouting priority -110 ;",
    "filter-output-pre-dnat": "type filter hook output priority -110 ;",
    "filter-forward": "type filter hook forward priority 0 ;",
    "filter-input": "type filter hook input priority 0 ;",
    "filter-output": "type filter hook output priority 0 ;",
    "nat-output": "type nat hook output priority -100 ;",
    "nat-postrouting": "type nat hook postrouting priority 100 ;",
    "nat-prerouting": "type nat hook prerouting priority -100 ;",
    "reject-chain": 'comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ;',
}
MAPS = {
    "firewall-ips": 'type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to '
                    'LoadBalancerSourceRanges" ;',
    "no-endpoint-nodeports": 'type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to '
                             'service nodeports with no endpoints" ;',
    "no-endpoint-services": 'type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject '
                            'packets to services with no endpoints" ;',
    "service-ips": 'type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and '
                   'LoadBalancer IP traffic" ;',
    "service-nodeports": 'type inet_proto . inet_service : verdict ; comment "NodePort traffic" ;',
}
SETS = {
    "cluster-ips": 'type ipv4_addr ; comment "Active ClusterIPs" ;',
    "nodeport-ips": 'type ipv4_addr ; comment "IPs that accept NodePort traffic" ;',
}


def render(ports: list[ServicePort], cfg: Config, memo: dict | None = None) -> Ruleset:
    """The whole table for `ports` (cfg.node_ips: the addresses that accept NodePorts). With `memo`
    (kept by the caller with the same `cfg`), a service port equal to last time's is not
    rendered again."""
    rs = Ruleset()
    mark = cfg.mark
    rs.add("cluster-ips-check", 'ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"')
    if cfg.service_cidrs:
        rs.add("cluster-ips-check", f"ip daddr {{ {', '.join(cfg.service_cidrs)} }} drop "
                                    'comment "Drop traffic to unallocated ClusterIPs"')
    for chain in ("filter-prerouting-pre-dnat", "filter-output-pre-dnat"):
        rs.add(chain, "ct state new jump firewall-check")
    for chain, checks in (("filter-forward", ("service-endpoints-check", "cluster-ips-check")),
                          ("filter-input", ("nodeport-endpoints-check", "service-endpoints-check")),
                          ("filter-output", ("service-endpoints-check", "cluster-ips-check"))):
        for check in checks:
            rs.add(chain, f"ct state new jump {check}")
    rs.add("firewall-check", "ip daddr . meta l4proto . th dport vmap @firewall-ips")
    rs.add("mark-for-masquerade", f"mark set mark or {mark}")
    rs.add("masquerading", f"mark and {mark} == 0 return")
    rs.add("masquerading", f"mark set mark xor {mark}")
    rs.add("masquerading", "masquerade fully-random")
    rs.add("nat-output", "jump services")
    rs.add("nat-postrouting", "jump masquerading")
    rs.add("nat-prerouting", "jump services")
    rs.add("nodeport-endpoints-check", "ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports")
    rs.add("reject-chain", "reject")
    rs.add("services", "ip daddr . meta l4proto . th dport vmap @service-ips")
    rs.add("services", "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")
    rs.add("service-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services")
    for name in list(MAPS) + list(SETS):
        rs.elements.setdefault(name, [])
    rs.elements["nodeport-ips"] += cfg.node_ips
    fresh = {}
    for sp in ports:
        k = (sp.key, sp.protocol)
        hit = memo.get(k) if memo is not None else None
        if hit is not None and (hit[0] is sp or hit[0] == sp):
            part = hit[1]
        else:
            part = Ruleset(elements={name: [] for name in list(MAPS) + list(SETS)})
            _service(part, sp, cfg)
        fresh[k] = (sp, part)
        rs.parts[k] = part
    if memo is not None:
        memo.clear()
        memo.update(fresh)
    return rs


def _service(rs: Ruleset, sp: ServicePort, cfg: Config) -> None:
    """One service port, as upstream's syncProxyRules writes it."""
    proto, key = sp.proto, sp.key
    p = plan(sp, cfg.node_name)
    cluster_eps, local_eps, reachable = p.cluster, p.local, p.reachable
    has_any, has_internal, has_external = p.has_any, p.has_internal, p.has_external
    uses_ext, uses_fw = p.uses_external, p.uses_firewall
    svc, loc, ext, fw = service_chain(sp), local_chain(sp), external_chain(sp), firewall_chain(sp)
    internal_chain = loc if sp.itp_local else svc
    external_policy = loc if sp.etp_local else svc
    # nothing to send to: reject when there is no endpoint at all, drop when only Local finds none
    internal_verdict = "goto reject-chain" if not has_any else "drop"
    external_verdict = internal_verdict

    rs.elements["cluster-ips"].append(sp.cluster_ip)
    if has_internal:
        rs.elements["service-ips"].append(f"{sp.cluster_ip} . {proto} . {sp.port} : goto {internal_chain}")
    else:
        rs.elements["no-endpoint-services"].append(
            f'{sp.cluster_ip} . {proto} . {sp.port} comment "{key}" : {internal_verdict}')
    for ip in sp.external_ips:
        if has_any:
            rs.elements["service-ips"].append(f"{ip} . {proto} . {sp.port} : goto {ext}")
        if not has_external:
            rs.elements["no-endpoint-services"].append(f'{ip} . {proto} . {sp.port} comment "{key}" : {external_verdict}')
    for ip in sp.lb_ips:
        if has_any:
            rs.elements["service-ips"].append(f"{ip} . {proto} . {sp.port} : goto {ext}")
        if uses_fw:
            rs.elements["firewall-ips"].append(f"{ip} . {proto} . {sp.port} : goto {fw}")
        if not has_external:
            rs.elements["no-endpoint-services"].append(f'{ip} . {proto} . {sp.port} comment "{key}" : {external_verdict}')
    if sp.node_port:
        if has_any:
            rs.elements["service-nodeports"].append(f"{proto} . {sp.node_port} : goto {ext}")
        if not has_external:
            rs.elements["no-endpoint-nodeports"].append(f'{proto} . {sp.node_port} comment "{key}" : {external_verdict}')

    if uses_fw:
        rs.add(fw, f"ip saddr != {{ {', '.join(sp.lb_source_ranges)} }} drop")
    if has_internal:
        if cfg.masquerade_all:
            rs.add(internal_chain, f"ip daddr {sp.cluster_ip} jump mark-for-masquerade")
        elif cfg.cluster_cidr:
            rs.add(internal_chain, f"ip daddr {sp.cluster_ip} ip saddr != {cfg.cluster_cidr} jump mark-for-masquerade")
    if uses_ext:
        if not sp.etp_local:
            rs.add(ext, "jump mark-for-masquerade")
        else:
            if cfg.cluster_cidr:
                rs.add(ext, f'ip saddr {cfg.cluster_cidr} goto {svc} comment "short-circuit pod traffic"')
            rs.add(ext, 'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"')
            rs.add(ext, f'fib saddr type local goto {svc} comment "short-circuit local traffic"')
        if has_external:
            rs.add(ext, f"goto {external_policy}")

    for chain, eps, used in ((svc, cluster_eps, p.uses_cluster), (loc, local_eps, p.uses_local)):
        if not used:
            continue
        if sp.affinity_seconds:
            for ep in eps:
                rs.add(chain, f"ip saddr @{affinity_set(sp, ep)} goto {endpoint_chain(sp, ep)}")
        targets = " , ".join(f"{i} : goto {endpoint_chain(sp, ep)}" for i, ep in enumerate(eps))
        rs.add(chain, f"numgen random mod {len(eps)} vmap {{ {targets} }}")
    for ep in reachable:
        chain = endpoint_chain(sp, ep)
        rs.add(chain, f"ip saddr {ep.ip} jump mark-for-masquerade")
        if sp.affinity_seconds:
            aff = affinity_set(sp, ep)
            rs.sets[aff] = f"type ipv4_addr ; flags dynamic,timeout ; timeout {sp.affinity_seconds}s ;"
            rs.add(chain, f"update @{aff} {{ ip saddr }}")
        rs.add(chain, f"meta l4proto {proto} dnat to {ep.addr}")


def _chain_decl(name: str) -> str:
    return f"add chain {T} {name}" + (f" {{ {BASE_CHAINS[name]} }}" if name in BASE_CHAINS else "")


def _element_key(element: str) -> str:
    """`10.96.0.1 . tcp . 443 comment "x" : goto c` -> `10.96.0.1 . tcp . 443`."""
    return element.split(" : ")[0].split(" comment ")[0]


def _rules(name: str, rules: list[str]) -> list[str]:
    """A changed chain's rules. As `add chain NAME { rule ; ... }` nft (1.0) does not first list
    every chain of every table, as it does for `add rule` (~0.2 s at 10k Services, for a change
    of a few rules); a rule naming a set (@...) needs nft's set cache, which only `add rule` fills."""
    if name in BASE_CHAINS or any("@" in r for r in rules):
        return [f"add rule {T} {name} {r}" for r in rules]
    return [f"add chain {T} {name} {{ {' ; '.join(rules)} ; }}"]


class Transaction(NamedTuple):
    text: str            # `nft -f` input
    added: list[str]     # chains it declares anew
    stale: list[str]     # chains it leaves flushed, for a later deletion


def transaction(new: Ruleset, old: Ruleset | None) -> Transaction:
    """What programs `new` where `old` was. Full (old None): the table is replaced in one
    transaction. Partial: of the base and of the service ports whose part is not the same object
    as last time's, map and set elements that went are deleted and new ones added, changed chains
    flushed and rewritten, new ones added, stale ones flushed, all in one transaction. As
    upstream, a stale chain is deleted in a later one: a kernel before 6.2 still counts a
    reference from a map element deleted in the same transaction."""
    out: list[str] = []
    if old is None:
        new = new.merged()
        out += [f"add table {T} {{ comment \"rules for kube-proxy\" ; }}", f"delete table {T}",
                f"add table {T} {{ comment \"rules for kube-proxy\" ; }}"]
        for name in new.chains:
            out.append(_chain_decl(name))
        for name, spec in {**MAPS}.items():
            out.append(f"add map {T} {name} {{ {spec} }}")
        for name, spec in {**SETS, **new.sets}.items():
            out.append(f"add set {T} {name} {{ {spec} }}")
        for name, rules in new.chains.items():
            out += [f"add rule {T} {name} {r}" for r in rules]
        for name, elems in new.elements.items():
            out += [f"add element {T} {name} {{ {e} }}" for e in elems]
        return Transaction("\n".join(out) + "\n", list(new.chains), [])
    changed = [k for k, part in new.parts.items() if old.parts.get(k) is not part]
    changed += [k for k in old.parts if k not in new.parts]
    new, old = new.merged(changed), old.merged(changed)
    for name, spec in new.sets.items():
        if name not in old.sets:
            out.append(f"add set {T} {name} {{ {spec} }}")
    # new chains are declared before any rule jumps to them
    added = [name for name in new.chains if name not in old.chains]
    out += [_chain_decl(name) for name in added]
    for name, rules in new.chains.items():
        if old.chains.get(name) == rules:
            continue
        if name in old.chains:
            out.append(f"flush chain {T} {name}")
        out += _rules(name, rules)
    # element by element: what went or changed is deleted (by key), what is new added
    for name, elems in new.elements.items():
        before, after = set(old.elements.get(name, ())), set(elems)
        out += [f"delete element {T} {name} {{ {_element_key(e)} }}" for e in old.elements.get(name, ())
                if e not in after]
        out += [f"add element {T} {name} {{ {e} }}" for e in elems if e not in before]
    stale = [name for name in old.chains if name not in new.chains]
    out += [f"flush chain {T} {name}" for name in stale]
    # affinity sets are deleted at once: no map element points at them
    out += [f"delete set {T} {name}" for name in old.sets if name not in new.sets]
    return Transaction("\n".join(out) + "\n", added, stale)

