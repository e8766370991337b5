"""The node's NetworkPolicy rules: a pure function of (policies, pods, namespaces, node), as
kube-proxy's rendering is of its Services. The result is one nftables table, `inet netlab-netpol`,
laid out as Calico's nftables mode lays out its policy (one dispatch by pod address, a chain per
pod that jumps to a chain per policy, named sets of peer addresses), written by `sync` in one
transaction that replaces the table whole, as kube-network-policies writes its own.

    chain egress-forward   hook forward, priority filter      from a pod of this node
    chain ingress-forward  hook forward, priority filter + 1  to a pod of this node
    chain egress-input     hook input, priority 101           from a pod of this node to the node
    chain egress-output    hook output, priority filter       (IPVS sends Service traffic on from here)
    chain ingress-output   hook output, priority filter + 1   to a pod: the node's own traffic passes
        ct state established,related accept                  replies, and the rest of allowed connections
        ip daddr vmap @ingress-pods                           an isolated pod -> its chain; others pass
    chain pod-ingress-<ns>/<pod>     jump ingress-<ns>/<policy> comment "NetworkPolicy <ns>/<policy>" ...;
                                     counter drop comment "default deny ingress of <ns>/<pod> (<policies>)"
    chain ingress-<ns>/<policy>      one rule per (rule, peer, kind of port) that accepts
    set   ingress-<ns>/<policy>/<i>/<j>   the addresses of the pods that peer j of rule i selects

Forward and input come after prerouting, where kube-proxy's iptables and nftables modes DNAT a
Service's address to a backend (priority dstnat), so a policy sees the backend pod. An accept
ends only the base chain it is in: egress and ingress are judged one after the other, and the
first policy chain that accepts ends a pod's chain, which makes the union of its policies.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from netlab.api.selectors import format_label_selector, selector_matches
from netpol.model import NAME_LABEL, Peer, Pod, Policy, Port, Rule, namespace_labels, pod_view, policy_view

TABLE = "netlab-netpol"
FAMILY = "inet"
DIRECTIONS = ("egress", "ingress")
ESTABLISHED = "ct state established,related accept"
FROM_NODE = 'fib saddr type local accept comment "from this node: always allowed (the kubelet\'s probes)"'
# base chain -> (hook, priority, rules). An accept ends only its own base chain, so each hook has
# an egress chain and, one priority later, an ingress chain: a packet between two pods of this
# node is judged by both. (The input hook's priority is after IPVS's, srcnat - 2 and - 1, which
# takes Service traffic there and sends it on through output, as kube-network-policies notes.)
BASE_CHAINS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "egress-forward": ("forward", "filter", (ESTABLISHED, "ip saddr vmap @egress-pods")),
    "ingress-forward": ("forward", "filter + 1", (ESTABLISHED, "ip daddr vmap @ingress-pods")),
    "egress-input": ("input", "101", (ESTABLISHED, "ip saddr vmap @egress-pods")),
    "egress-output": ("output", "filter", (ESTABLISHED, "ip saddr vmap @egress-pods")),
    "ingress-output": ("output", "filter + 1", (ESTABLISHED, FROM_NODE, "ip daddr vmap @ingress-pods")),
}
NFT_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
MAX_NAME = 255      # nftables' limit on chain and set names
MAX_COMMENT = 128   # and on comments
MAX_LOG_PREFIX = 127
# the words the comments start with, which `netlab trace` and `netlab rules --policy` look for
POLICY_WORD = "NetworkPolicy"
DEFAULT_DENY = "default deny"


@dataclass
class NftSet:
    name: str
    type: str
    comment: str = ""
    elements: list[str] = field(default_factory=list)
    flags: str = ""
    is_map: bool = False


@dataclass
class Chain:
    name: str
    rules: list[str] = field(default_factory=list)
    hook: str = ""
    comment: str = ""


@dataclass
class Ruleset:
    """The table for one node; `text` is the `nft -f` input that replaces it."""
    node: str
    comment: str
    sets: dict[str, NftSet] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)

    @property
    def text(self) -> str:
        t = f"{FAMILY} {TABLE}"
        out = [f"add table {t}", f"delete table {t}", f"table {t} {{", f"\tcomment {_q(self.comment)}"]
        for s in self.sets.values():
            out.append(f"\t{'map' if s.is_map else 'set'} {s.name} {{")
            out.append(f"\t\ttype {s.type}")
            if s.flags:
                out.append(f"\t\tflags {s.flags}")
            if s.comment:
                out.append(f"\t\tcomment {_q(s.comment)}")
            if s.elements:
                out.append("\t\telements = { " + ",\n\t\t\t     ".join(s.elements) + " }")
            out.append("\t}")
        for c in self.chains.values():
            out.append(f"\tchain {c.name} {{")
            if c.hook:
                out.append(f"\t\t{c.hook}")
            if c.comment:
                out.append(f"\t\tcomment {_q(c.comment)}")
            out += [f"\t\t{r}" for r in c.rules]
            out.append("\t}")
        out.append("}")
        return "\n".join(out) + "\n"


def _q(text: str, limit: int = MAX_COMMENT) -> str:
    text = text.replace('"', "'")
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f'"{text}"'


def _ident(name: str) -> str:
    """A chain or set name within nftables' length limit: a long one keeps its start and gets a
    hash of the whole, so it stays unique and still reads as what it names."""
    if len(name) <= MAX_NAME:
        return name
    return name[:MAX_NAME - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def policy_chain(direction: str, policy: Policy) -> str:
    return _ident(f"{direction}-{policy.key}")


def pod_chain(direction: str, pod: Pod) -> str:
    return _ident(f"pod-{direction}-{pod.key}")


def peer_set(direction: str, policy: Policy, i: int, j: int) -> str:
    return _ident(f"{direction}-{policy.key}/{i}/{j}")


def named_ports_set(direction: str, policy: Policy, i: int) -> str:
    return _ident(f"{direction}-{policy.key}/{i}/named-ports")


def _ip_key(addr: str) -> tuple:
    a = ipaddress.ip_address(addr.split(" ", 1)[0])
    return (a.version, int(a))


class _Cluster:
    """What the selectors are evaluated against: every pod that takes part, by namespace, and
    the namespaces' labels (a namespace known only from its pods has its name label)."""

    def __init__(self, pods: Iterable[Pod], namespaces: dict[str, dict[str, str]]):
        self.pods = sorted(pods, key=lambda p: (p.namespace, p.name))
        self.ns_labels = namespaces

    def labels_of(self, namespace: str) -> dict[str, str]:
        return self.ns_labels.get(namespace) or {NAME_LABEL: namespace}

    def peer_pods(self, policy: Policy, peer: Peer) -> list[Pod]:
        if peer.namespace_selector is None:
            in_ns = {policy.namespace}
        else:
            in_ns = {ns for ns in {p.namespace for p in self.pods}
                     if selector_matches(peer.namespace_selector, self.labels_of(ns))}
        return [p for p in self.pods if p.namespace in in_ns
                and (peer.pod_selector is None or selector_matches(peer.pod_selector, p.labels))]


def _selector(sel: dict) -> str:
    """kubectl's form of a selector; `{}` for the empty one (every pod, every namespace)."""
    text = format_label_selector(sel)
    return "{}" if text == "<none>" else text


def _describe_peer(peer: Peer) -> str:
    if peer.is_block:
        return f"ipBlock {peer.cidr}" + (f" except {', '.join(peer.except_)}" if peer.except_ else "")
    parts = []
    if peer.namespace_selector is not None:
        parts.append(f"namespaceSelector {_selector(peer.namespace_selector)}")
    if peer.pod_selector is not None:
        parts.append(f"podSelector {_selector(peer.pod_selector)}")
    return " and ".join(parts)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Port ranges merged where they overlap or touch (nftables refuses overlapping intervals)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return out


def _port_text(p: Port) -> str:
    if p.port is None:
        return p.protocol
    return f"{p.protocol}/{p.port}" + (f"-{p.end_port}" if p.end_port else "")


def _port_matches(rs: Ruleset, direction: str, policy: Policy, i: int, rule: Rule,
                  owners: list[Pod]) -> list[tuple[str, str]]:
    """The alternatives a rule's ports make, each (match, description): numbered ports and
    ranges as one set of protocol . port, whole protocols, and named ports resolved on `owners`
    (the pods the policy selects for ingress, every pod for egress: a named port is the
    destination's). No ports: one alternative that matches every port."""
    if not rule.ports:
        return [("", "")]
    numbered: dict[str, list[tuple[int, int]]] = {}
    whole: list[str] = []
    named: list[tuple[str, str]] = []
    for p in rule.ports:
        proto = NFT_PROTO.get(p.protocol)
        if proto is None:
            continue
        if p.port is None:
            whole.append(proto)
        elif isinstance(p.port, int):
            numbered.setdefault(proto, []).append((p.port, max(p.port, p.end_port or p.port)))
        else:
            named.append((p.port, p.protocol))
    out = []
    if numbered:
        elems = [f"{proto} . {lo}" if lo == hi else f"{proto} . {lo}-{hi}"
                 for proto in sorted(numbered) for lo, hi in _merge(numbered[proto])]
        out.append((f"meta l4proto . th dport {{ {', '.join(elems)} }}",
                    ", ".join(_port_text(p) for p in rule.ports if isinstance(p.port, int))))
    if whole:
        protos = sorted(set(whole))
        out.append((f"meta l4proto {protos[0]}" if len(protos) == 1 else f"meta l4proto {{ {', '.join(protos)} }}",
                    ", ".join(protos).upper()))
    if named:
        name = named_ports_set(direction, policy, i)
        elems = sorted({f"{p.ip} . {NFT_PROTO[proto]} . {n}" for p in owners for port, proto in named
                        if (n := p.named_port(port, proto)) is not None}, key=_ip_key)
        whose = "selected pods" if direction == "ingress" else "destination pods"
        rs.sets[name] = NftSet(name, "ipv4_addr . inet_proto . inet_service",
                               f"{policy.key} {direction} rule {i}: named ports "
                               f"{', '.join(f'{proto}/{port}' for port, proto in named)} on the {whose}",
                               elems)
        out.append((f"ip daddr . meta l4proto . th dport @{name}",
                    "named " + ", ".join(f"{proto}/{port}" for port, proto in named)))
    return out


def _policy_rules(rs: Ruleset, direction: str, policy: Policy, cluster: _Cluster, selected: list[Pod]) -> list[str]:
    """One accept rule per (rule, peer, kind of port) of one direction of a policy."""
    addr = "saddr" if direction == "ingress" else "daddr"
    word = "from" if direction == "ingress" else "to"
    lines = []
    for i, rule in enumerate(policy.rules(direction) or ()):
        peers: list[tuple[str, str]] = []
        if not rule.peers:
            peers.append(("", f"{word} anywhere"))
        for j, peer in enumerate(rule.peers):
            what = _describe_peer(peer)
            if peer.is_block:
                fam = "ip6" if ":" in peer.cidr else "ip"
                m = f"{fam} {addr} {peer.cidr}"
                if peer.except_:
                    excepts = [str(n) for n in ipaddress.collapse_addresses(ipaddress.ip_network(e) for e in peer.except_)]
                    m += f" {fam} {addr} != {{ {', '.join(excepts)} }}"
                peers.append((m, f"{word}[{j}] {what}"))
                continue
            name = peer_set(direction, policy, i, j)
            members = cluster.peer_pods(policy, peer)
            ips = sorted({p.ip for p in members}, key=_ip_key)
            rs.sets[name] = NftSet(name, "ipv4_addr", f"{policy.key} {direction} rule {i} {word}[{j}]: {what}", ips)
            peers.append((f"ip {addr} @{name}", f"{word}[{j}] {what}"))
        owners = selected if direction == "ingress" else cluster.pods
        for pm, pdesc in peers:
            for qm, qdesc in _port_matches(rs, direction, policy, i, rule, owners):
                desc = f"rule {i} {pdesc}" + (f", ports {qdesc}" if qdesc else "")
                lines.append(" ".join(x for x in (pm, qm, "counter accept", f"comment {_q(desc)}") if x))
    return lines


def build(policies: Iterable[dict], pods: Iterable[dict], namespaces: Iterable[dict], node: str,
          pod_cidr: str = "", log_drops: bool = False) -> Ruleset:
    """The ruleset for `node`: its pods (bound to it, with an address in `pod_cidr` when given)
    that policies select, and the policies and peer sets they need; nothing of policies that
    select none of them."""
    views = [v for v in map(pod_view, pods) if v is not None]
    cluster = _Cluster(views, dict(namespace_labels(n) for n in namespaces))
    net = ipaddress.ip_network(pod_cidr, strict=False) if pod_cidr else None
    local = [p for p in cluster.pods if p.node == node and (net is None or ipaddress.ip_address(p.ip) in net)]
    pols = sorted((policy_view(p) for p in policies), key=lambda p: (p.namespace, p.name))

    rs = Ruleset(node, f"NetworkPolicy for the pods of node {node}" + (f" ({pod_cidr})" if pod_cidr else ""))
    for name, spec in (("ingress-pods", "ingress"), ("egress-pods", "egress")):
        rs.sets[name] = NftSet(name, "ipv4_addr : verdict", f"this node's pods isolated for {spec}: their chain",
                               is_map=True)
    for name, (hook, prio, rules) in BASE_CHAINS.items():
        rs.chains[name] = Chain(name, list(rules), f"type filter hook {hook} priority {prio}; policy accept;")

    # which policies select each local pod, per direction (a pod isolated for a direction is one
    # that at least one policy of that type selects)
    selecting: dict[tuple[str, str], list[Policy]] = {}
    selected: dict[tuple[str, str], list[Pod]] = {}
    for pol in pols:
        for d in DIRECTIONS:
            if pol.rules(d) is None:
                continue
            pods_of = [p for p in local if p.namespace == pol.namespace and selector_matches(pol.pod_selector, p.labels)]
            if pods_of:
                selected[(d, pol.key)] = pods_of
                for p in pods_of:
                    selecting.setdefault((d, p.key), []).append(pol)

    claimed: set[tuple[str, str]] = set()  # (map, address): one pod per address, should two report the same
    for d in DIRECTIONS:
        for p in local:
            pols_of = selecting.get((d, p.key))
            if not pols_of or (d, p.ip) in claimed:
                continue
            claimed.add((d, p.ip))
            chain = pod_chain(d, p)
            # each jump names its policy, and the drop the policies whose default deny it is: what
            # `netlab trace` reads back from the kernel's trace to name the verdict
            log = log_drops or any(pol.log_drops for pol in pols_of)
            drop = "counter " + (f"log prefix {_q(f'netpol drop {d} {p.key}: ', MAX_LOG_PREFIX)} " if log else "")
            drop += f"drop comment {_q(f'{DEFAULT_DENY} {d} of {p.key} (' + ', '.join(q.key for q in pols_of) + ')')}"
            rs.chains[chain] = Chain(chain, [f"jump {policy_chain(d, pol)} comment {_q(f'{POLICY_WORD} {pol.key}')}"
                                             for pol in pols_of] + [drop],
                                     comment=f"pod {p.key} ({p.ip}): the policies that select it for {d}")
            rs.sets[f"{d}-pods"].elements.append(f"{p.ip} comment {_q(p.key)} : goto {chain}")
    for d in DIRECTIONS:
        for pol in pols:
            if (d, pol.key) not in selected:
                continue
            chain = policy_chain(d, pol)
            rules = _policy_rules(rs, d, pol, cluster, selected[(d, pol.key)])
            rs.chains[chain] = Chain(chain, rules, comment=f"NetworkPolicy {pol.key}: its {d} rules"
                                     + ("" if rules else " (none: it allows nothing)"))
    # sets first (as nft lists them): maps, then the policies' sets in the order their chains use them
    rs.sets = dict(sorted(rs.sets.items(), key=lambda kv: not kv[1].is_map))
    return rs


def render(policies: Iterable[dict], pods: Iterable[dict], namespaces: Iterable[dict], node: str,
           pod_cidr: str = "", log_drops: bool = False) -> str:
    """The `nft -f` input that makes this node's table what the policies say."""
    return build(policies, pods, namespaces, node, pod_cidr, log_drops).text
