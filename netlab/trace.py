"""`netlab trace SRC DST[:PORT]`: send one real probe and show its path, from the kernel's own
trace (nftables `meta nftrace` and `nft monitor trace`, which covers kube-proxy's rules in
nftables mode and in iptables mode on the nf_tables backend): on each node, the netfilter rules
the packet hit, the DNAT choice, the interfaces it came in and left by; then the route the
source node took and the pod that received it.

SRC is a pod or a node; DST an IP, a pod, a node or a Service (`name` or `namespace/name`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field

from netlab import net
from netlab.cluster import Cluster, ClusterError
from netlab.testing import Lab

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


def _endpoint(lab: Lab, cluster: Cluster, name: str, namespace: str) -> tuple[str, str | None, str | None]:
    """(ip, node it runs on or None, a description) for a node, pod, Service or IP."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(name)), None, name
    for n in cluster.nodes:
        if n.name == name:
            return n.ip, n.name, f"node {n.name}"
    ns, _, short = name.rpartition("/")
    ns = ns or namespace
    with contextlib.suppress(Exception):
        pod = lab.get("pod", short, ns)
        return pod["status"]["podIP"], pod["spec"]["nodeName"], f"pod {ns}/{short}"
    with contextlib.suppress(Exception):
        svc = lab.get("service", short, ns)
        return svc["spec"]["clusterIP"], None, f"service {ns}/{short}"
    raise ClusterError(f"{name!r} is not a node, pod, Service (in namespace {ns}) or IP address")


def _probe(dst: str, port: int, proto: str) -> str:
    if proto == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(b"hostname", (dst, port))
            try:
                return "answer: " + s.recv(1024).decode(errors="replace").strip()
            except OSError as e:
                return f"no answer ({e})"
    try:
        with socket.create_connection((dst, port), timeout=2) as s:
            s.sendall(b"GET /hostname HTTP/1.0\r\nHost: x\r\n\r\n")
            data = s.recv(4096).split(b"\r\n\r\n", 1)
            return "connected; answer: " + (data[1].decode(errors="replace").strip() if len(data) > 1 else "")
    except OSError as e:
        return f"not connected: {e.strerror or e}"


def run(lab: Lab, src: str, dst: str, port: int | None = None, proto: str = "tcp", namespace: str = "default") -> Trace:
    cluster = lab.cluster
    src_ip, src_node, src_desc = _endpoint(lab, cluster, src, namespace)
    if src_desc.startswith("node "):
        src_ns = cluster.node(src_node).netns
    elif src_desc.startswith("pod "):
        src_ns = None
        pid = lab.container_pid(src.rpartition("/")[2], namespace=src.rpartition("/")[0] or namespace)
    else:
        raise ClusterError(f"the source must be a pod or a node, not {src_desc}")
    dst_ip, _, dst_desc = _endpoint(lab, cluster, dst, namespace)
    if port is None:
        port = 80
        if dst_desc.startswith("service "):
            ns, _, name = dst_desc.removeprefix("service ").partition("/")
            port = lab.get("service", name, ns)["spec"]["ports"][0]["port"]
    src_node_ip = cluster.node(src_node).ip
    match = f"ip saddr {{ {src_ip}, {src_node_ip} }} meta l4proto {proto}"
    if proto == "tcp":
        match += " tcp flags syn"
    rules = (f"table ip {TABLE} {{\n"
             f"  chain pre {{ type filter hook prerouting priority -400; {match} meta nftrace set 1; }}\n"
             f"  chain out {{ type filter hook output priority -400; {match} meta nftrace set 1; }}\n}}\n")
    monitors = {}
    try:
        for n in cluster.nodes:
            net.run(n.netns, ["nft", "-f", "-"], input=rules)
            # line-buffered: what nft has printed is not lost in its buffer when it is stopped
            monitors[n.name] = net.popen(n.netns, ["stdbuf", "-oL", "nft", "monitor", "trace"],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.5)  # the monitors subscribe to the kernel's trace events
        if src_ns is not None:
            answer = net.call_in(src_ns, _probe, dst_ip, port, proto)
        else:
            answer = _probe_in_pod(pid, dst_ip, port, proto)
        time.sleep(0.5)
    finally:
        outputs = {}
        for name, p in monitors.items():
            p.terminate()
            outputs[name] = p.communicate(timeout=5)[0]
        for n in cluster.nodes:
            net.run(n.netns, ["nft", "delete", "table", "ip", TABLE], check=False)
    hops = [h for h in (_hop(name, text) for name, text in outputs.items()) if h.packets]
    dnat = next((m.group(1) for h in hops for p in h.packets for r in p["rules"]
                 if (m := re.search(r"dnat to ([\d.]+)", r))), dst_ip)
    route = net.run(cluster.node(src_node).netns, ["ip", "route", "get", dnat], check=False).stdout.splitlines()
    receiver = None
    with contextlib.suppress(Exception):
        for p in lab.items("pods", None):
            if p.get("status", {}).get("podIP") == dnat:
                receiver = f"pod {p['metadata']['namespace']}/{p['metadata']['name']} on {p['spec']['nodeName']}"
    order = {name: i for i, name in enumerate([src_node] + [n.name for n in cluster.nodes])}
    hops.sort(key=lambda h: order.get(h.node, 99))
    return Trace(f"{src_desc} ({src_ip})", f"{dst_desc}:{port}/{proto}", answer, route[0] if route else "", hops,
                 receiver)


def _probe_in_pod(pid: int, dst: str, port: int, proto: str) -> str:
    import sys

    code = f"from netlab.trace import _probe; print(_probe({dst!r}, {port}, {proto!r}))"
    r = subprocess.run(["nsenter", f"--target={pid}", "--net", "--", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=10)
    return (r.stdout or r.stderr).strip()


def _hop(node: str, text: str) -> Hop:
    hop, by_id = Hop(node), {}
    for line in text.splitlines():
        m = re.match(r"trace id (\w+) ip (\S+) (\S+) (packet|rule|policy|verdict)\s*:?\s*(.*)$", line)
        if not m:
            continue
        tid, table, chain, kind, rest = m.groups()
        if table == TABLE:
            if kind == "packet" and tid not in by_id:
                iif = re.search(r'iif "([^"]+)"', rest)
                oif = re.search(r'oif "([^"]+)"', rest)
                addrs = re.search(r"ip saddr (\S+) ip daddr (\S+)", rest)
                ports = re.search(r"(tcp|udp) sport (\d+) \1 dport (\d+)", rest)
                what = (f"{addrs.group(1)}:{ports.group(2)} -> {addrs.group(2)}:{ports.group(3)} {ports.group(1)}"
                        if addrs and ports else rest[:80])
                by_id[tid] = {"in": iif.group(1) if iif else "(local)", "out": oif.group(1) if oif else "",
                              "what": what, "rules": []}
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
    return hop


def format_trace(t: Trace) -> str:
    lines = [f"probe: {t.src} -> {t.dst}: {t.answer}"]
    for h in t.hops:
        lines.append(f"\nnode {h.node}:")
        for p in h.packets:
            lines.append(f"  in {p['in']}{'  out ' + p['out'] if p['out'] else ''}   {p['what']}")
            lines += [f"    {r}" for r in p["rules"]]
    if t.route:
        lines.append(f"\nroute on the source node: {t.route}")
    lines.append(f"received by: {t.receiver or 'no pod (see the rules above)'}")
    return "\n".join(lines) + "\n"
