"""What kube-proxy programmed in a node, read back from the kernel and grouped as a reader wants
it: Service port -> its chain (or IPVS virtual server) -> endpoints, with the chance of each.

The grouping parses the node's own dumps (`iptables-save`, `nft -j list table`, `ipvsadm -Ln`),
so it shows what the kernel holds, not what kube-proxy meant to write.

The same for what the network-policy agent programmed (table inet netlab-netpol): NetworkPolicy
-> direction -> the pods it selects (with the drops their default deny counted) -> rule -> peers
(their addresses) -> ports (with the packets each rule accepted).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from netlab.kit import net


@dataclass
class Route:
    service: str                 # ns/name:port
    frontend: str                # "10.96.0.10:53/udp (cluster IP)"
    chain: str
    endpoints: list[tuple[str, str, str]] = field(default_factory=list)  # (address, chance, chain)


def iptables_routes(save: str) -> list[Route]:
    """From `iptables-save` of the nat and filter tables."""
    tables: dict[str, dict[str, list[list[str]]]] = {}
    rules: dict[str, list[list[str]]] = {}
    for line in save.splitlines():
        if line.startswith("*"):
            rules = tables.setdefault(line[1:], {})
        elif line.startswith("-A "):
            words = shlex.split(line)
            rules.setdefault(words[1], []).append(words[2:])
    nat, flt = tables.get("nat", {}), tables.get("filter", {})

    def opt(words: list[str], name: str) -> str | None:
        return words[words.index(name) + 1] if name in words else None

    dnat = {chain: opt(ws, "--to-destination") for chain, rs in nat.items() for ws in rs if "DNAT" in ws}
    out = []

    def route(service: str, frontend: str, target: str) -> None:
        r = Route(service, frontend, target)
        chain, left = _policy_chain(nat, target), 1.0
        for rs in nat.get(chain, []):
            sep = opt(rs, "-j") or ""
            if not sep.startswith("KUBE-SEP-") or "--rcheck" in rs:
                continue
            p = float(opt(rs, "--probability") or 1.0)
            r.endpoints.append((dnat.get(sep) or "?", f"{left * p:.0%}", sep))
            left *= 1 - p
        out.append(r)

    for ws in nat.get("KUBE-SERVICES", []):
        comment, target = opt(ws, "--comment") or "", opt(ws, "-j") or ""
        m = re.match(r"(\S+) (cluster IP|external IP|loadbalancer IP)$", comment)
        if m and target.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-")):
            route(m.group(1), f"{(opt(ws, '-d') or '').removesuffix('/32')}:{opt(ws, '--dport')}/"
                              f"{opt(ws, '-p') or 'tcp'} ({m.group(2)})", target)
    for ws in nat.get("KUBE-NODEPORTS", []):
        if "-d" in ws:  # the 127.0.0.0/8 twin of the same NodePort
            continue
        route(opt(ws, "--comment") or "?", f"node:{opt(ws, '--dport')}/{opt(ws, '-p') or 'tcp'} (NodePort)",
              opt(ws, "-j") or "")
    for chain in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"):
        for ws in flt.get(chain, []):
            m = re.match(r"(\S+) has no (local )?endpoints$", opt(ws, "--comment") or "")
            if m:
                dest = (opt(ws, "-d") or "node").removesuffix("/32")
                out.append(Route(m.group(1), f"{dest}:{opt(ws, '--dport')}/{opt(ws, '-p') or 'tcp'} "
                                             f"(no {m.group(2) or ''}endpoints)", opt(ws, "-j") or ""))
    return out


def _policy_chain(rules: dict, chain: str) -> str:
    """Follow KUBE-FW / KUBE-EXT to the KUBE-SVC / KUBE-SVL chain that picks the endpoint."""
    for _ in range(3):
        if chain.startswith(("KUBE-SVC-", "KUBE-SVL-")):
            return chain
        nxt = [ws[ws.index("-j") + 1] for ws in rules.get(chain, []) if "-j" in ws]
        nxt = [c for c in nxt if c.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-"))]
        if not nxt:
            return chain
        chain = nxt[-1]
    return chain


def nftables_routes(listing: dict) -> list[Route]:
    objs = listing.get("nftables", [])
    chains: dict[str, list[dict]] = {}
    for o in objs:
        if "rule" in o:
            chains.setdefault(o["rule"]["chain"], []).append(o["rule"])
    out = []
    for o in objs:
        m = o.get("map")
        if not m or m["name"] != "service-ips":
            continue
        for key, verdict in m.get("elem", []):
            ip, proto, port = (k if isinstance(k, str | int) else "?" for k in key["concat"])
            chain = verdict["goto"]["target"]
            svc = re.match(r"\w+-[A-Z0-9]{8}-(.*)/(\w+)/(.*)$", chain)
            route = Route(f"{svc.group(1)}:{svc.group(3)}" if svc else chain, f"{ip}:{port}/{proto}", chain)
            for rule in chains.get(_nft_policy_chain(chains, chain), []):
                for e in rule["expr"]:
                    vmap = e.get("vmap")
                    if not vmap or "numgen" not in json.dumps(vmap["key"]):
                        continue
                    targets = [v[1]["goto"]["target"] for v in vmap["data"]["set"]]
                    for t in targets:
                        addr = t.split("__", 1)[1].replace("/", ":") if "__" in t else "?"
                        route.endpoints.append((addr, f"{1 / len(targets):.0%}", t))
            out.append(route)
    return out


def _nft_policy_chain(chains: dict, chain: str) -> str:
    if chain.startswith("external-"):  # to the service chain it falls through to
        for rule in chains.get(chain, []):
            for e in rule["expr"]:
                if "goto" in e:
                    chain = e["goto"]["target"]
    return chain


Names = dict[tuple[str, int, str], tuple[str, str]]  # (ip, port, TCP|UDP|SCTP) -> (ns/name[:port], kind)


def service_names(services: list[dict], node_ips: list[str]) -> Names:
    """Which Service port each address and port stands for: the kernel's IPVS table has no names
    (upstream's has none either), so `netlab rules` takes them from the Services."""
    out: Names = {}
    for s in services:
        spec, meta = s.get("spec", {}), s["metadata"]
        ingress = [i["ip"] for i in (s.get("status", {}).get("loadBalancer", {}).get("ingress") or []) if i.get("ip")]
        for p in spec.get("ports", []):
            label = f"{meta.get('namespace', 'default')}/{meta['name']}" + (f":{p['name']}" if p.get("name") else "")
            proto = p.get("protocol", "TCP")
            for ip in [c for c in spec.get("clusterIPs", [spec.get("clusterIP")]) if c and c != "None"]:
                out[(ip, p["port"], proto)] = (label, "cluster IP")
            out.update({(ip, p["port"], proto): (label, "external IP") for ip in spec.get("externalIPs", [])})
            out.update({(ip, p["port"], proto): (label, "loadbalancer IP") for ip in ingress})
            if p.get("nodePort"):
                out.update({(ip, p["nodePort"], proto): (label, "NodePort") for ip in node_ips})
    return out


def ipvs_routes(listing: str, names: Names | None = None) -> list[Route]:
    """From `ipvsadm -Ln`: one route per virtual server (its scheduler and persistence as the
    chain), its real servers with their share of the weight and their forwarding method."""
    out: list[Route] = []
    weights: list[list[int]] = []
    for line in listing.splitlines():
        m = re.match(r"(TCP|UDP|SCTP)\s+(\S+):(\d+)\s+(\S+)(.*)$", line)
        if m:
            proto, ip, port, sched, flags = m.groups()
            name, kind = (names or {}).get((ip, int(port), proto), ("?", "virtual server"))
            persist = re.search(r"persistent (\d+)", flags)
            out.append(Route(name, f"{ip}:{port}/{proto.lower()} ({kind})",
                             f"IPVS {sched}" + (f" persistent {persist.group(1)}s" if persist else "")))
            weights.append([])
            continue
        m = re.match(r"\s+->\s+(\S+)\s+(\w+)\s+(\d+)", line)
        if m and out:
            out[-1].endpoints.append((m.group(1), "", m.group(2)))
            weights[-1].append(int(m.group(3)))
    for r, ws in zip(out, weights, strict=True):
        total = sum(ws) or 1
        r.endpoints = [(addr, f"{w / total:.0%}", how) for (addr, _, how), w in zip(r.endpoints, ws, strict=True)]
    return out


def routes(ns: str, mode: str, names: Names | None = None) -> list[Route]:
    """The grouped routes of a node (IPVS: its virtual servers, named by `names`)."""
    if mode == "iptables":
        return iptables_routes(net.run(ns, ["iptables-save", "-t", "nat"]).stdout +
                               net.run(ns, ["iptables-save", "-t", "filter"]).stdout)
    if mode == "nftables":
        r = net.run(ns, ["nft", "-j", "list", "table", "ip", "kube-proxy"], check=False)
        return nftables_routes(json.loads(r.stdout)) if r.returncode == 0 else []
    return ipvs_routes(net.run(ns, ["ipvsadm", "-Ln"], check=False).stdout, names)


RAW = {"iptables": [["iptables-save", "-t", "filter"], ["iptables-save", "-t", "nat"]],
       "nftables": [["nft", "list", "table", "ip", "kube-proxy"]],
       "ipvs": [["ipvsadm", "-Ln"], ["ipset", "list", "-n"], ["iptables-save", "-t", "nat"]]}


def raw(ns: str, mode: str) -> str:
    """The kernel's own listing of what kube-proxy made (iptables: only the KUBE-* lines)."""
    out = []
    for argv in RAW[mode]:
        text = net.run(ns, argv, check=False).stdout
        if argv[0] == "iptables-save":
            text = "\n".join(ln for ln in text.splitlines() if "KUBE-" in ln or ln.startswith(("*", "COMMIT"))) + "\n"
        out.append(text)
    return "".join(out)


def format_routes(rs: list[Route], service: str | None = None) -> str:
    """One block per Service port; `service` (NAMESPACE/NAME) keeps only that Service's."""
    lines = []
    for r in sorted(rs, key=lambda r: (r.service, r.frontend)):
        if service and r.service != service and not r.service.startswith(service + ":"):
            continue
        lines.append(f"{r.service}  {r.frontend}  -> {r.chain}")
        for addr, chance, chain in r.endpoints:
            lines.append(f"    {chance:>4}  {addr:<22} {chain}")
        if not r.endpoints:
            lines.append(f"          (nothing to send to: {r.chain})")
    return "\n".join(lines) + ("\n" if lines else "")


# --- NetworkPolicy: the network-policy agent's table, grouped policy -> rule -> peers -> ports ---

NETPOL_TABLE = ("inet", "netlab-netpol")   # netpol/render.py's table


@dataclass
class PolicyPorts:
    ports: str                  # "TCP/80, TCP/81-90", "named TCP/http (10.244.1.10 tcp/8080)", "every port"
    packets: int                # the counter of the rule that accepts them


@dataclass
class PolicyPeer:
    peer: str                   # "from[0] namespaceSelector ns=y", "to anywhere"
    addresses: list[str]        # the set's elements, or the ipBlock and its holes
    ports: list[PolicyPorts] = field(default_factory=list)


@dataclass
class PolicyChain:
    policy: str                 # NS/NAME
    direction: str              # ingress or egress
    chain: str
    pods: list[tuple[str, str, str, int]] = field(default_factory=list)  # (pod, address, its chain, dropped)
    rules: dict[int, list[PolicyPeer]] = field(default_factory=dict)


def _elems(obj: dict) -> list[str]:
    out = []
    for e in obj.get("elem") or []:
        v = e.get("elem", {}).get("val") if isinstance(e, dict) and "elem" in e else e
        if isinstance(v, dict) and "concat" in v:
            ip, proto, port = v["concat"]
            v = f"{ip} {proto}/{port}"
        elif isinstance(v, dict) and "prefix" in v:
            v = f"{v['prefix']['addr']}/{v['prefix']['len']}"
        out.append(str(v))
    return out


def _addr(right) -> str:
    if isinstance(right, dict) and "prefix" in right:
        return f"{right['prefix']['addr']}/{right['prefix']['len']}"
    if isinstance(right, dict) and "set" in right:
        return "{ " + ", ".join(_addr(x) for x in right["set"]) + " }"
    return str(right)


def netpol_policies(listing: dict) -> list[PolicyChain]:
    """From `nft -j list table inet netlab-netpol`: each policy chain (found through the pod
    chains' jumps, whose comments name the policy), the pods whose chains jump to it with their
    counted drops, and its rules by the comment each carries ("rule I from[J] PEER, ports P"),
    with the peer set's addresses and the rule's counter."""
    objs = listing.get("nftables", [])
    sets = {(o.get("set") or o.get("map"))["name"]: (o.get("set") or o.get("map")) for o in objs
            if "set" in o or "map" in o}
    chains: dict[str, list[dict]] = {}
    for o in objs:
        if "rule" in o:
            chains.setdefault(o["rule"]["chain"], []).append(o["rule"])
    addr_of = {}  # pod chain -> (pod, address)
    for m in ("ingress-pods", "egress-pods"):
        for key, verdict in (sets.get(m) or {}).get("elem") or []:
            target = (verdict.get("goto") or verdict.get("jump") or {}).get("target")
            val = key.get("elem", {}) if isinstance(key, dict) else {"val": key}
            addr_of[target] = (val.get("comment", ""), str(val.get("val")))
    out: dict[str, PolicyChain] = {}
    for chain, rules in chains.items():
        m = re.match(r"pod-(ingress|egress)-(.*)$", chain)
        if not m:
            continue
        pod, ip = addr_of.get(chain, (m.group(2), "?"))
        drops = sum(e["counter"]["packets"] for r in rules if any("drop" in e for e in r["expr"])
                    for e in r["expr"] if "counter" in e)
        for r in rules:
            jump = next((e["jump"]["target"] for e in r["expr"] if "jump" in e), None)
            if jump is None:
                continue
            name = (r.get("comment") or "").removeprefix("NetworkPolicy ").strip() or jump
            pc = out.setdefault(jump, PolicyChain(name, m.group(1), jump))
            pc.pods.append((pod or m.group(2), ip, chain, drops))
    for pc in out.values():
        for r in chains.get(pc.chain, []):
            cm = re.match(r"rule (\d+) (.*)$", r.get("comment") or "")
            if not cm:
                continue
            peer, _, ports = cm.group(2).rpartition(", ports ") if ", ports " in cm.group(2) else (cm.group(2), "", "")
            addrs, excepts, named = [], [], []
            for e in r["expr"]:
                mt = e.get("match")
                if not mt:
                    continue
                left, right = mt["left"], mt["right"]
                if isinstance(left, dict) and (left.get("payload") or {}).get("field") in ("saddr", "daddr"):
                    if isinstance(right, str) and right.startswith("@"):
                        addrs += _elems(sets.get(right[1:], {}))
                    elif mt["op"] == "!=":
                        excepts.append(_addr(right))
                    else:
                        addrs.append(_addr(right))
                elif isinstance(right, str) and right.startswith("@"):   # the named ports' set
                    named += _elems(sets.get(right[1:], {}))
            addrs += [f"except {x}" for x in excepts]
            packets = sum(e["counter"]["packets"] for e in r["expr"] if "counter" in e)
            peers = pc.rules.setdefault(int(cm.group(1)), [])
            if not peers or peers[-1].peer != peer:
                peers.append(PolicyPeer(peer, addrs))
            text = ports or "every port"
            if named:
                text += f" ({', '.join(named)})"
            peers[-1].ports.append(PolicyPorts(text, packets))
    return sorted(out.values(), key=lambda p: (p.policy, p.direction))


def policy_rules(ns: str) -> list[PolicyChain]:
    """A node's policy chains, from its kernel (none when the agent's table is not there)."""
    r = net.run(ns, ["nft", "-j", "list", "table", *NETPOL_TABLE], check=False)
    return netpol_policies(json.loads(r.stdout)) if r.returncode == 0 else []


def format_policies(pcs: list[PolicyChain], policy: str | None = None) -> str:
    """One block per policy and direction; `policy` (NAMESPACE/NAME) keeps only that policy's."""
    lines = []
    for pc in pcs:
        if policy and pc.policy != policy:
            continue
        lines.append(f"NetworkPolicy {pc.policy}  {pc.direction}  chain {pc.chain}")
        for pod, ip, chain, drops in pc.pods:
            lines.append(f"  selects pod {pod} ({ip}): {drops} packets dropped by its default deny  [{chain}]")
        if not pc.rules:
            lines.append(f"  no {pc.direction} rules: allows nothing (a default deny)")
        for i, peers in sorted(pc.rules.items()):
            lines.append(f"  rule {i}")
            for p in peers:
                lines.append(f"    {p.peer}" + (f": {', '.join(p.addresses)}" if p.addresses else
                                                  (": (no pod matches: allows nothing)" if "[" in p.peer else "")))
                for q in p.ports:
                    lines.append(f"      ports {q.ports:<44} {q.packets:>6} packets accepted")
    return "\n".join(lines) + ("\n" if lines else "")
