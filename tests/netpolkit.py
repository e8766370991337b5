"""For the NetworkPolicy tests: objects as the API serves them, upstream e2e's model (namespaces
x, y, z with pods a, b, c, each serving TCP 80 and 81 on named ports), and a small evaluator of the
nft rules netpol renders, so the unit tests can compare whole truth tables without a kernel.

The evaluator knows only the forms the renderer writes (see netpol/render.py) and fails on any
other, so a rule the kernel would read differently cannot pass unnoticed."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from netpol.render import BASE_CHAINS, Ruleset

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
NODES = ("worker", "worker2")
PORTS = (80, 81)


def namespace(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"ns": name, "kubernetes.io/metadata.name": name, **labels}}}


def pod(ns: str, name: str, ip: str, node: str, labels: dict | None = None,
        ports: tuple[tuple[str, int, str], ...] = (), host_network: bool = False, phase: str = "Running") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "name": name, "labels": {"pod": name} if labels is None else labels},
            "spec": {"nodeName": node, "hostNetwork": host_network,
                     "containers": [{"name": f"cont-{n}-{proto.lower()}", "image": "agnhost",
                                     "ports": [{"name": pname, "containerPort": n, "protocol": proto}]}
                                    for pname, n, proto in ports]},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}}


def policy(ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


@dataclass(frozen=True)
class Model:
    """e2e's model: pod x/a is on worker with 10.244.1.x, etc.; pods alternate between nodes
    so each case crosses nodes and stays within one."""
    pods: tuple[dict, ...]
    namespaces: tuple[dict, ...]

    def ip(self, key: str) -> str:
        return next(p["status"]["podIP"] for p in self.pods
                    if f"{p['metadata']['namespace']}/{p['metadata']['name']}" == key)

    def node(self, key: str) -> str:
        return next(p["spec"]["nodeName"] for p in self.pods
                    if f"{p['metadata']['namespace']}/{p['metadata']['name']}" == key)

    def keys(self) -> list[str]:
        return [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in self.pods]


def model(labels: dict[str, dict] | None = None) -> Model:
    pods, i = [], 0
    for n, ns in enumerate(NAMESPACES):
        for m, name in enumerate(PODS):
            node = NODES[i % 2]
            ip = f"10.244.{1 + i % 2}.{10 + 3 * n + m}"
            pods.append(pod(ns, name, ip, node, (labels or {}).get(f"{ns}/{name}"),
                            tuple((f"serve-{p}-tcp", p, "TCP") for p in PORTS)))
            i += 1
    return Model(tuple(pods), tuple(namespace(ns) for ns in NAMESPACES))


# --- the evaluator -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Packet:
    saddr: str
    daddr: str
    proto: str = "tcp"
    dport: int = 80
    state: str = "new"


def _tokens(rule: str) -> list[str]:
    return re.findall(r'\{[^}]*\}|"[^"]*"|\S+', rule)


def _items(group: str) -> list[str]:
    assert group.startswith("{") and group.endswith("}"), group
    return [x.strip() for x in group[1:-1].split(",") if x.strip()]


def _in_net(addr: str, cidr: str) -> bool:
    a, n = ipaddress.ip_address(addr), ipaddress.ip_network(cidr, strict=False)
    return a.version == n.version and a in n


def _port_in(spec: str, port: int) -> bool:
    lo, _, hi = spec.partition("-")
    return int(lo) <= port <= int(hi or lo)


def _proto_port(elem: str, pkt: Packet) -> bool:
    proto, port = [x.strip() for x in elem.split(".")]
    return proto == pkt.proto and _port_in(port, pkt.dport)


PRIORITIES = {"filter": 0, "filter + 1": 1}


class Evaluator:
    def __init__(self, rs: Ruleset, local: tuple[str, ...] = ()):
        self.rs, self.local = rs, set(local)  # local: the node's own addresses
        self.elements = {name: s.elements for name, s in rs.sets.items()}

    def hook(self, hook: str, pkt: Packet) -> str:
        """The verdict of the table's base chains on `hook`, in order of priority."""
        chains = [n for n, (h, _, _) in BASE_CHAINS.items() if h == hook]
        chains.sort(key=lambda n: PRIORITIES[p] if (p := BASE_CHAINS[n][1]) in PRIORITIES else int(p))
        for name in chains:
            if self.chain(name, pkt) == "drop":
                return "drop"
        return "accept"

    def chain(self, name: str, pkt: Packet) -> str | None:
        for rule in self.rs.chains[name].rules:
            v = self.rule(rule, pkt)
            if v is not None:
                return v
        return None

    def rule(self, rule: str, pkt: Packet) -> str | None:
        t = _tokens(rule)
        i = 0
        while i < len(t):
            tok = t[i]
            if tok == "ct" and t[i + 1] == "state":
                if pkt.state not in t[i + 2].split(","):
                    return None
                i += 3
            elif tok in ("ip", "ip6"):
                if tok == "ip6":  # the tests send IPv4
                    return None
                addr = pkt.saddr if t[i + 1] == "saddr" else pkt.daddr
                assert t[i + 1] in ("saddr", "daddr"), rule
                if t[i + 2] == "vmap":
                    verdict = self.lookup_map(t[i + 3], addr)
                    return None if verdict is None else self.verdict(verdict, pkt)
                if t[i + 2] == ".":
                    assert t[i + 3:i + 8] == ["meta", "l4proto", ".", "th", "dport"], rule
                    elems = self.elements[t[i + 8].lstrip("@")]
                    if f"{addr} . {pkt.proto} . {pkt.dport}" not in elems:
                        return None
                    i += 9
                elif t[i + 2] == "!=":
                    if any(_in_net(addr, c) for c in _items(t[i + 3])):
                        return None
                    i += 4
                elif t[i + 2].startswith("@"):
                    if addr not in self.elements[t[i + 2][1:]]:
                        return None
                    i += 3
                else:
                    if not _in_net(addr, t[i + 2]):
                        return None
                    i += 3
            elif tok == "meta" and t[i + 1] == "l4proto":
                if t[i + 2] == ".":
                    assert t[i + 3:i + 5] == ["th", "dport"], rule
                    if not any(_proto_port(e, pkt) for e in _items(t[i + 5])):
                        return None
                    i += 6
                else:
                    protos = _items(t[i + 2]) if t[i + 2].startswith("{") else [t[i + 2]]
                    if pkt.proto not in protos:
                        return None
                    i += 3
            elif tok == "fib":
                assert t[i + 1:i + 4] == ["saddr", "type", "local"], rule
                if pkt.saddr not in self.local:
                    return None
                i += 4
            elif tok == "counter":
                i += 1
            elif tok == "log":
                assert t[i + 1] == "prefix", rule
                i += 3
            elif tok in ("accept", "drop"):
                return tok
            elif tok in ("jump", "goto"):
                v = self.chain(t[i + 1], pkt)
                if v is not None or tok == "goto":
                    return v
                return None
            else:
                raise AssertionError(f"the evaluator does not know {tok!r} in {rule!r}")
        return None

    def lookup_map(self, ref: str, addr: str) -> str | None:
        for e in self.elements[ref.lstrip("@")]:
            key, verdict = e.split(" : ")
            if key.split(" comment ")[0] == addr:
                return verdict
        return None

    def verdict(self, verdict: str, pkt: Packet) -> str | None:
        kind, _, target = verdict.partition(" ")
        assert kind in ("goto", "jump"), verdict
        return self.chain(target, pkt)


def allowed(rulesets: dict[str, Ruleset], m: Model, src: str, dst: str, port: int = 80, proto: str = "tcp",
            src_ip: str | None = None) -> bool:
    """Whether a new connection from pod `src` (or from address src_ip, outside the pods) to pod
    `dst` passes the forward hook of each node it crosses."""
    pkt = Packet(src_ip or m.ip(src), m.ip(dst), proto, port)
    nodes = {m.node(dst)} | ({m.node(src)} if src_ip is None else set())
    return all(Evaluator(rulesets[n]).hook("forward", pkt) == "accept" for n in sorted(nodes))


def truth_table(rulesets: dict[str, Ruleset], m: Model, port: int = 80, proto: str = "tcp") -> dict[tuple[str, str], bool]:
    """Every pair of distinct pods (a pod reaching itself never leaves its namespace)."""
    return {(s, d): allowed(rulesets, m, s, d, port, proto) for s in m.keys() for d in m.keys() if s != d}


def expect(m: Model, fn) -> dict[tuple[str, str], bool]:
    """The truth table `fn(src, dst)` says, over the same pairs."""
    return {(s, d): bool(fn(s, d)) for s in m.keys() for d in m.keys() if s != d}
