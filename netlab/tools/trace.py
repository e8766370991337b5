"""`netlab trace SRC DST[:PORT]`: send one real probe and show its path, from the kernel's own
trace (nftables `meta nftrace` and `nft monitor trace`, which covers kube-proxy's rules in
nftables mode and in iptables mode on the nf_tables backend): on each node, the netfilter rules
the packet hit, the DNAT choice, the interfaces it came in and left by; then the route the
source node took and the pod that received it.

SRC is a pod or a node; DST an IP, a pod, a node or a Service (`name` or `namespace/name`).

Where the network-policy agent's rules (table inet netlab-netpol) judged the probe, the trace
names the verdict: on which node, in which direction, which NetworkPolicy's rule allowed it, or
whose default deny dropped it (read from the rules' comments, which name the policy), and for a
direction no rule judged, that no policy isolates the pod.

`netlab trace outside HOST|IP` starts on the outside (a machine on the nodes' network that is not
a node): DST a LoadBalancer address, a LoadBalancer Service, or a host an Ingress routes (asked
with that Host header at its address). It shows the outside's ARP exchange for the address (which
node's MAC answers: the lb-speaker that announces it), the rules on that node and the pod's node,
the pod that received the request, and for an Ingress the backend nginx proxied it to (from the
controller's access log).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field

from netlab.api.client import ApiError
from netlab.kit import net
from netlab.kit.cluster import ClusterError
from netlab.tools.testing import Lab

TABLE = "netlab-trace"


@dataclass
class Hop:
    node: str
    packets: list[dict] = field(default_factory=list)   # one per trace id: {"in", "out", "what", "rules"}


@dataclass
class Trace:
    src: str
    dst: str
    answer: str
    route: str
    hops: list[Hop]
    receiver: str | None
    arp: list[str] = field(default_factory=list)  # from the outside: the ARP exchange for the address
    announcer: str | None = None                  # the node whose MAC answered it
    proxied: str | None = None                    # through an Ingress: where nginx sent the request
    policy: list[str] = field(default_factory=list)  # the NetworkPolicy verdicts, in path order


@dataclass
class Target:
    kind: str                 # node, pod, service or ip
    ip: str
    name: str                 # node name, namespace/name, or the IP
    node: str | None = None   # where a node or pod is
    ports: dict[str, int] = field(default_factory=dict)  # a Service's first port per protocol

    def __str__(self) -> str:
        return self.name if self.kind == "ip" else f"{self.kind} {self.name}"


def _target(lab: Lab, name: str, namespace: str) -> Target:
    """A node, pod, Service (`name` or `namespace/name`) or IP address."""
    with contextlib.suppress(ValueError):
        return Target("ip", str(ipaddress.ip_address(name)), name)
    for n in lab.cluster.nodes:
        if n.name == name:
            return Target("node", n.ip, n.name, n.name)
    ns, _, short = name.rpartition("/")
    ns = ns or namespace
    with contextlib.suppress(ApiError):
        pod = lab.get("pod", short, ns)
        return Target("pod", pod["status"]["podIP"], f"{ns}/{short}", pod["spec"]["nodeName"])
    with contextlib.suppress(ApiError):
        svc = lab.get("service", short, ns)
        ports: dict[str, int] = {}
        for p in svc["spec"]["ports"]:
            ports.setdefault(p.get("protocol", "TCP").lower(), p["port"])
        return Target("service", svc["spec"]["clusterIP"], f"{ns}/{short}", ports=ports)
    raise ClusterError(f"{name!r} is not a node, pod, Service (in namespace {ns}) or IP address")


def _probe(dst: str, port: int, proto: str, host: str = "x", path: str = "/hostname") -> tuple[str, int]:
    """The probe's answer, and its source port (which finds its connection in IPVS's table)."""
    if proto == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(b"hostname", (dst, port))
            sport = s.getsockname()[1]
            try:
                return "answer: " + s.recv(1024).decode(errors="replace").strip(), sport
            except OSError as e:
                return f"no answer ({e})", sport
    try:
        s = socket.create_connection((dst, port), timeout=2)
    except OSError as e:
        return f"not connected: {e.strerror or e}", 0
    with s:  # an HTTP question, as agnhost and the web images answer it
        sport = s.getsockname()[1]
        try:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = s.recv(4096).split(b"\r\n\r\n", 1)
        except OSError as e:
            return f"connected; no answer ({e.strerror or e})", sport
    return "connected; answer: " + (data[1].decode(errors="replace").strip() if len(data) > 1 else ""), sport


def _ipvs_choices(lab: Lab, dst: str, port: int, proto: str, sport: int) -> dict[str, str]:
    """In IPVS mode the load balancing is not a netfilter rule, so the trace has no DNAT to show:
    each node's IPVS connection table (`ipvsadm -Lnc`) tells which real server took the probe."""
    out = {}
    for n in lab.cluster.nodes:
        listing = net.run(n.netns, ["ipvsadm", "-Lnc"], check=False).stdout
        for line in listing.splitlines():
            # pro expire state source virtual destination
            f = line.split()
            if len(f) == 6 and f[0] == proto.upper() and f[3].endswith(f":{sport}") and f[4] == f"{dst}:{port}":
                out[n.name] = f"ipvs {f[4]}: {f[2]}, to real server {f[5]} (masquerade)"
    return out


def run(lab: Lab, src: str, dst: str, port: int | None = None, proto: str = "tcp", namespace: str = "default") -> Trace:
    cluster = lab.cluster
    source, dest = _target(lab, src, namespace), _target(lab, dst, namespace)
    if source.kind not in ("node", "pod"):
        raise ClusterError(f"the source must be a pod or a node, not {source}")
    port = port or dest.ports.get(proto) or 80
    src_node = cluster.node(source.node)
    # the probe's source, or its node's address once masqueraded on the way
    match = f"ip saddr {{ {', '.join(sorted({source.ip, src_node.ip}))} }} meta l4proto {proto}"
    if proto == "tcp":
        match += " tcp flags syn"
    (answer, sport), outputs = _traced(cluster, match, lambda: net.call_in(
        src_node.netns if source.kind == "node" else lab.pod_netns(*reversed(source.name.split("/"))),
        _probe, dest.ip, port, proto))  # from the source's own network
    hops = [h for h in (_hop(name, text) for name, text in outputs.items()) if h.packets]
    if cluster.proxy_mode == "ipvs" and sport:
        for node, choice in _ipvs_choices(lab, dest.ip, port, proto, sport).items():
            # what IPVS did, after the rules of the packet's first pass there
            hop = next((h for h in hops if h.node == node), None)
            if hop is None:
                hop = Hop(node, [{"in": "(local)", "out": "", "what": "", "rules": []}])
                hops.append(hop)
            hop.packets[0]["rules"].append(choice)
    dnat = next((m.group(1) for h in hops for p in h.packets for r in p["rules"]
                 if (m := re.search(r"(?:dnat to|to real server) ([\d.]+)", r))), dest.ip)
    route = net.run(src_node.netns, ["ip", "route", "get", dnat], check=False).stdout.splitlines()
    receiver = next((f"pod {p['metadata']['namespace']}/{p['metadata']['name']} on {p['spec']['nodeName']}"
                     for p in lab.items("pods", None) if (p.get("status") or {}).get("podIP") == dnat), None)
    order = {name: i for i, name in enumerate([src_node.name] + [n.name for n in cluster.nodes])}
    hops.sort(key=lambda h: order.get(h.node, 99))
    policy = _policy_summary(lab, hops, source, dnat)
    if any("DROPPED" in v for v in policy):
        receiver = None  # the address's pod, but the policy's drop kept the probe from it
    return Trace(f"{source} ({source.ip})", f"{dest}:{port}/{proto}", answer, route[0] if route else "", hops,
                 receiver, policy=policy)


def _policy_summary(lab: Lab, hops: list[Hop], source: Target, dst_ip: str) -> list[str]:
    """Every NetworkPolicy verdict the probe met, in path order, and for a direction that no
    node's rules judged (the pod is in no dispatch map): that no policy isolates it."""
    found = [v for h in hops for p in h.packets for v in p.get("verdicts", [])]
    lines = list(dict.fromkeys(str(v) for v in found))  # a retransmitted SYN meets the same verdict again
    if source.kind == "pod" and not any(v.direction == "egress" for v in found):
        lines.insert(0, f"egress of pod {source.name}: allowed, not isolated (no NetworkPolicy selects it for egress)")
    if any(not v.allowed for v in found):
        return lines
    dst = next((f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in lab.items("pods", None)
                if (p.get("status") or {}).get("podIP") == dst_ip and not p["spec"].get("hostNetwork")), None)
    if dst and not any(v.direction == "ingress" for v in found):
        lines.append(f"ingress of pod {dst}: allowed, not isolated (no NetworkPolicy selects it for ingress)")
    return lines


def _traced(cluster, match: str, probe) -> tuple[tuple[str, int], dict[str, str]]:
    """Run `probe()` with nftrace set, on every node, for the packets `match` selects; its answer
    (and source port) and each node's `nft monitor trace` output."""
    return traced_in({n.name: n.netns for n in cluster.nodes}, match, probe)


def traced_in(namespaces: dict[str, str], match: str, probe):
    """`probe()` traced in each of `namespaces` (name -> network namespace); its result and each
    one's `nft monitor trace` output."""
    rules = (f"table ip {TABLE} {{\n"
             f"  chain pre {{ type filter hook prerouting priority -400; {match} meta nftrace set 1; }}\n"
             f"  chain out {{ type filter hook output priority -400; {match} meta nftrace set 1; }}\n}}\n")
    monitors = {}
    try:
        for name, netns in namespaces.items():
            net.run(netns, ["nft", "-f", "-"], input=rules)
            # line-buffered: what nft has printed is not lost in its buffer when it is stopped
            monitors[name] = net.popen(netns, ["stdbuf", "-oL", "nft", "monitor", "trace"],
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.5)  # the monitors subscribe to the kernel's trace events
        answer = probe()
        time.sleep(0.5)
    finally:
        outputs = {}
        for name, p in monitors.items():
            p.terminate()
            outputs[name] = p.communicate(timeout=5)[0]
        for netns in namespaces.values():
            net.run(netns, ["nft", "delete", "table", "ip", TABLE], check=False)
    return answer, outputs


def _outside_target(lab: Lab, dst: str, namespace: str) -> tuple[str, int, str, dict | None]:
    """(address, port, Host header, the Ingress) for what the outside asks: a LoadBalancer
    address, a LoadBalancer Service, or a host an Ingress routes."""
    def lb_ips(obj: dict) -> list[str]:
        return [i["ip"] for i in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]
    services = lab.items("services", None)
    with contextlib.suppress(ValueError):
        ip = str(ipaddress.ip_address(dst))
        svc = next((s for s in services if ip in lb_ips(s)), None)
        return ip, (svc["spec"]["ports"][0]["port"] if svc else 80), ip, None
    ns, _, short = dst.rpartition("/")
    svc = next((s for s in services if s["metadata"]["name"] == short and s["metadata"]["namespace"] == (ns or namespace)
                and lb_ips(s)), None)
    if svc:
        return lb_ips(svc)[0], svc["spec"]["ports"][0]["port"], lb_ips(svc)[0], None
    for ing in lab.items("ingresses", None):
        for rule in (ing.get("spec") or {}).get("rules") or []:
            h = rule.get("host") or ""
            if h == dst or (h.startswith("*.") and dst.count(".") == h.count(".") and dst.split(".", 1)[1] == h[2:]):
                if not lb_ips(ing):
                    raise ClusterError(f"Ingress {ing['metadata']['namespace']}/{ing['metadata']['name']} routes "
                                       f"{dst} but has no address yet (is its controller running?)")
                return lb_ips(ing)[0], 80, dst, ing
    raise ClusterError(f"{dst!r} is not a LoadBalancer address or Service, nor a host an Ingress routes")


def run_outside(lab: Lab, dst: str, port: int | None = None, path: str = "/hostname",
                namespace: str = "default") -> Trace:
    """A request from the outside, followed through ARP, the nodes' rules and the pod."""
    cluster = lab.cluster
    ip, default_port, host, ing = _outside_target(lab, dst, namespace)
    port = port or default_port
    outside, node_ips = cluster.outside_ip, {n.ip: n.name for n in cluster.nodes}
    # the request, and on the pod's node the same request masqueraded to the announcer's address
    match = (f"ip saddr {{ {', '.join([outside, *sorted(node_ips)])} }} meta l4proto tcp tcp dport != 6443 "
             "tcp flags syn")
    ns = lab.outside_netns
    net.run(ns, ["ip", "neigh", "flush", "to", ip], check=False)  # so that the probe asks again
    arp_watch = net.popen(ns, ["tcpdump", "-l", "-nn", "-e", "-i", "eth0", "arp", "and", "host", ip],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(0.3)
        (answer, _), outputs = _traced(cluster, match, lambda: net.call_in(ns, _probe, ip, port, "tcp", host, path))
    finally:
        arp_watch.terminate()
        arp_lines = [line.strip() for line in arp_watch.communicate(timeout=5)[0].splitlines() if line.strip()]
    neigh = net.run(ns, ["ip", "neigh", "show", ip], check=False).stdout
    mac = m.group(1) if (m := re.search(r"lladdr (\S+)", neigh)) else None
    announcer = next((n.name for n in cluster.nodes if mac and net.link_mac(n.netns, "eth0") == mac), None)
    hops = [h for h in (_hop(name, text) for name, text in outputs.items()) if h.packets]
    dnat = next((m.group(1) for h in hops for p in h.packets for r in p["rules"]
                 if (m := re.search(r"dnat to ([\d.]+)", r))), None)
    pods = {(p.get("status") or {}).get("podIP"): p for p in lab.items("pods", None)}
    def pod_name(addr: str | None) -> str | None:
        p = pods.get(addr)
        return f"pod {p['metadata']['namespace']}/{p['metadata']['name']} on {p['spec']['nodeName']}" if p else None
    route = net.run(cluster.node(announcer).netns, ["ip", "route", "get", dnat], check=False).stdout.splitlines() \
        if announcer and dnat else []
    proxied = _nginx_upstream(lab, pods.get(dnat), outside) if ing is not None else None
    if proxied:
        proxied = f"{proxied} ({pod_name(proxied.split(':')[0]) or 'no pod'})"
    order = {name: i for i, name in enumerate([announcer] + [n.name for n in cluster.nodes])}
    hops.sort(key=lambda h: order.get(h.node, 99))
    return Trace(f"outside ({outside})", f"{host}:{port}/tcp" + (f" at {ip}" if host != ip else ""), answer,
                 route[0] if route else "", hops, pod_name(dnat), arp_lines, announcer, proxied)


def _nginx_upstream(lab: Lab, pod: dict | None, client: str) -> str | None:
    """The backend of the controller's last access-log line for `client` ($upstream_addr)."""
    if pod is None:
        return None
    logs = lab.cluster.layout.node(pod["spec"]["nodeName"]).pod(pod["metadata"]["uid"])
    name = pod["spec"]["containers"][0]["name"]
    with contextlib.suppress(OSError):
        for line in reversed(logs.log(name).read_text(errors="replace").splitlines()):
            # the CRI logging format: <time> <stream> <F|P> <the container's line>
            parts = line.split(" ", 3)
            text = parts[3] if len(parts) == 4 and parts[1] in ("stdout", "stderr") else line
            if text.startswith(f"{client} ") and (m := re.search(r"\] (\d[\d.]+:\d+)", text)):
                return m.group(1)
    return None


def _hop(node: str, text: str) -> Hop:
    hop, by_id = Hop(node), {}
    for line in text.splitlines():
        m = re.match(r"trace id (\w+) (?:ip|ip6|inet) (\S+) (\S+) (packet|rule|policy|verdict)\s*:?\s*(.*)$", line)
        if not m:
            continue
        tid, table, chain, kind, rest = m.groups()
        if table == NETPOL_TABLE and tid in by_id:
            by_id[tid]["netpol"].append((chain, kind, rest))
        if table == TABLE:
            if kind == "packet" and tid not in by_id:
                iif = re.search(r'iif "([^"]+)"', rest)
                oif = re.search(r'oif "([^"]+)"', rest)
                addrs = re.search(r"ip saddr (\S+) ip daddr (\S+)", rest)
                ports = re.search(r"(tcp|udp) sport (\d+) \1 dport (\d+)", rest)
                what = (f"{addrs.group(1)}:{ports.group(2)} -> {addrs.group(2)}:{ports.group(3)} {ports.group(1)}"
                        if addrs and ports else rest[:80])
                by_id[tid] = {"in": iif.group(1) if iif else "(local)", "out": oif.group(1) if oif else "",
                              "what": what, "rules": [], "netpol": []}
                hop.packets.append(by_id[tid])
            continue
        p = by_id.get(tid)
        if p is None:
            continue
        if kind == "packet":
            oif = re.search(r'oif "([^"]+)"', rest)
            if oif:
                p["out"] = oif.group(1)
        elif kind == "rule":
            rule = re.sub(r"counter packets \d+ bytes \d+", "", rest).strip()
            rule = re.sub(r"\s+", " ", rule)
            p["rules"].append(f"{table} {chain}: {rule}")
        elif kind == "policy" and "drop" in rest:
            p["rules"].append(f"{table} {chain}: policy drop")
    for p in hop.packets:
        p["verdicts"] = policy_verdicts(node, p.pop("netpol"))
    return hop


NETPOL_TABLE = "netlab-netpol"   # the network-policy agent's table (netpol/render.py)


@dataclass
class Verdict:
    """What the NetworkPolicy rules of one node decided for a packet, in one direction."""
    node: str
    direction: str      # ingress or egress
    pod: str            # the pod judged: the destination (ingress) or the source (egress)
    allowed: bool
    by: str             # NetworkPolicy NS/NAME and its rule, the default deny and whose, or why it passed
    chain: str          # the chain whose counter counted it

    def __str__(self) -> str:
        return (f"{self.direction} of pod {self.pod} on node {self.node}: "
                f"{'allowed' if self.allowed else 'DROPPED'} by {self.by} [chain {self.chain}]")


def _comment(rule: str) -> str:
    m = re.search(r'comment "([^"]*)"', rule)
    return m.group(1) if m else ""


def policy_verdicts(node: str, events: list[tuple[str, str, str]]) -> list[Verdict]:
    """The verdicts in one node's trace of the agent's table: each pod chain a packet entered
    (from the dispatch map) ends in a policy chain's accept, named by the jump's comment
    ("NetworkPolicy NS/NAME") and the rule's, or in the pod chain's counted drop, whose comment
    names the policies whose default deny it is. The node's own traffic to a pod is the rule
    that says so."""
    out: list[Verdict] = []
    pod = policy = ""
    for chain, kind, rest in events:
        if kind != "rule":
            continue
        verdict = m.group(1) if (m := re.search(r"\(verdict (\w+)", rest)) else ""
        if m := re.search(r"\(verdict goto pod-(ingress|egress)-(\S+)\)", rest):
            pod, policy = m.group(2), ""
        elif chain.startswith("ingress-output") and verdict == "accept" and "fib saddr" in rest:
            out.append(Verdict(node, "ingress", "(the destination)", True, f"the rule for traffic {_comment(rest)}",
                               chain))
        elif chain.startswith(("pod-ingress-", "pod-egress-")):
            direction = chain.split("-")[1]
            if verdict == "jump":
                policy = _comment(rest).removeprefix("NetworkPolicy ").strip() or rest.split()[1]
            elif verdict == "drop":
                c = _comment(rest)
                m = re.match(r"default deny \w+ of (\S+) \((.*)\)", c)
                who = m.group(2) if m else "the policies that select it"
                out.append(Verdict(node, direction, m.group(1) if m else pod or chain, False,
                                   f"the default deny of NetworkPolicy {who}: no rule of theirs allows it", chain))
        elif verdict == "accept" and chain.startswith(("ingress-", "egress-")) and "/" in chain:
            direction = chain.split("-")[0]
            name = policy or chain.split("-", 1)[1]
            out.append(Verdict(node, direction, pod, True, f"NetworkPolicy {name} {_comment(rest)}".strip(), chain))
    return out


def format_trace(t: Trace) -> str:
    lines = [f"probe: {t.src} -> {t.dst}: {t.answer}"]
    if t.arp:
        lines.append("\nARP on the outside's eth0:")
        lines += [f"  {line}" for line in t.arp]
    if t.announcer:
        lines.append(f"  answered by node {t.announcer} (its lb-speaker announces the address)")
    for h in t.hops:
        lines.append(f"\nnode {h.node}:")
        for p in h.packets:
            lines.append(f"  in {p['in']}{'  out ' + p['out'] if p['out'] else ''}   {p['what']}")
            lines += [f"    {r}" for r in p["rules"]]
            lines += [f"    => {v}" for v in p.get("verdicts", [])]
    if t.route:
        lines.append(f"\nroute on the source node: {t.route}")
    lines.append(f"received by: {t.receiver or 'no pod (see the rules above)'}")
    if t.proxied:
        lines.append(f"proxied by nginx to: {t.proxied}")
    if t.policy:
        lines.append("network policy:")
        lines += [f"  {v}" for v in t.policy]
    return "\n".join(lines) + "\n"
