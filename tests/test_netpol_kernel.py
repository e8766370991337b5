"""The rendered table in a real kernel, without a lab: a node namespace with a bridge and three
pod namespaces on it (pods of one node), a fourth namespace routed through the node (a pod of
another node), kube-proxy's real rules for a Service in front of a pod, and TCP connections
that are let through or dropped. Every namespace is named nltnp*, and removed in a finally."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from netlab.kit import net
from netpol import render, sync
from tests.netpolkit import namespace, pod, policy

pytestmark = pytest.mark.lab

NODE = "nltnpnode"
PODS = {"x/a": ("nltnpa", "10.244.1.2"), "y/b": ("nltnpb", "10.244.1.3"), "z/c": ("nltnpc", "10.244.1.4")}
FAR = ("nltnpfar", "10.244.2.5")  # a pod of another node, routed through this one
NODE_IP = "10.244.1.1"
SERVICE_IP = "10.96.0.10"

# an echo server on each port given; lines come back as they were sent
SERVER = r"""
import socket, sys, threading
def serve(conn):
    with conn:
        f = conn.makefile("rwb", buffering=0)
        for line in f:
            f.write(line)
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
for p in sys.argv[1:]:
    threading.Thread(target=listen, args=(int(p),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

# a connection held open: each line on stdin goes to the server, the answer (or ERR) to stdout
CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
print("connected", flush=True)
f = s.makefile("rwb", buffering=0)
for line in sys.stdin:
    try:
        f.write(line.encode()); print(f.readline().decode().strip() or "ERR", flush=True)
    except OSError:
        print("ERR", flush=True)
"""


def connects(ns: str, ip: str, port: int, timeout: float = 0.4) -> bool:
    def attempt():
        try:
            with socket.create_connection((ip, port), timeout=timeout) as s:
                s.sendall(b"hi\n")
                return s.recv(16) == b"hi\n"
        except OSError:
            return False
    return net.call_in(ns, attempt)


@pytest.fixture
def cluster():
    """The namespaces, links, servers; removed whatever happens."""
    names = [NODE, FAR[0], *(ns for ns, _ in PODS.values())]
    procs: list[subprocess.Popen] = []
    try:
        net.ns_create(NODE)
        net.sysctl(NODE, {"net.ipv4.ip_forward": 1, "net.bridge.bridge-nf-call-iptables": 1,
                          "net.ipv4.conf.all.rp_filter": 0})
        net.bridge(NODE, "cni0")
        net.addr_add(NODE, "cni0", f"{NODE_IP}/24")
        for i, (ns, ip) in enumerate(PODS.values()):
            net.ns_create(ns)
            net.veth(NODE, f"veth{i}", ns, "eth0", master="cni0")
            net.addr_add(ns, "eth0", f"{ip}/24")
            net.route_add(ns, "default", via=NODE_IP)
        net.ns_create(FAR[0])
        net.veth(NODE, "eth1", FAR[0], "eth0")
        net.addr_add(NODE, "eth1", "10.244.2.1/24")
        net.addr_add(FAR[0], "eth0", f"{FAR[1]}/24")
        net.route_add(FAR[0], "default", via="10.244.2.1")
        for ns in [NODE, FAR[0], *(ns for ns, _ in PODS.values())]:
            p = net.popen(ns, [sys.executable, "-c", SERVER, "80", "81", "10250"], stdout=subprocess.PIPE, text=True)
            procs.append(p)
            assert p.stdout.readline().strip() == "ready"
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for ns in names:
            if net.ns_exists(ns):
                net.kill_ns_processes(ns)
            net.ns_delete(ns)


def objects():
    pods = [pod(k.split("/")[0], k.split("/")[1], ip, "node") for k, (_, ip) in PODS.items()]
    return pods, [namespace(n) for n in "xyz"]


def program(policies: list[dict]) -> str:
    pods, nss = objects()
    text = render.render(policies, pods, nss, "node", "10.244.1.0/24")
    net.call_in(NODE, sync.Syncer().sync, text)
    return text


def kube_proxy(mode: str) -> None:
    """kube-proxy's own rules (proxy/) for a Service 10.96.0.10:80 in front of x/a."""
    from proxy import modes
    from proxy.config import Config
    from proxy.model import service_ports

    svc = {"metadata": {"name": "web", "namespace": "x"},
           "spec": {"clusterIP": SERVICE_IP, "ports": [{"name": "http", "port": 80, "targetPort": 80}]}}
    eps = {"metadata": {"name": "web-1", "namespace": "x", "labels": {"kubernetes.io/service-name": "web"}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
           "endpoints": [{"addresses": [PODS["x/a"][1]], "nodeName": "node"}]}
    cfg = Config(node_name="node", cluster_cidr="10.244.0.0/16", node_ips=[NODE_IP])

    def apply():
        modes.syncer(mode, cfg).sync(service_ports([svc], [eps]), full=True)
    net.call_in(NODE, apply)


ALLOW_B_TO_A = policy("x", "allow-b", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{
    "from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}],
    "ports": [{"port": 80}]}]})
DENY_EGRESS_Z = policy("z", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})


@pytest.mark.parametrize("proxy_mode", ["iptables", "nftables"])
def test_policies_hold_in_the_kernel(cluster, proxy_mode):
    a, b, c = (PODS[k][0] for k in ("x/a", "y/b", "z/c"))
    ip = {k: v[1] for k, v in PODS.items()}
    kube_proxy(proxy_mode)
    assert connects(FAR[0], ip["x/a"], 80) and connects(c, ip["x/a"], 80)  # nothing isolated yet
    text = program([ALLOW_B_TO_A, DENY_EGRESS_Z])
    assert "table inet netlab-netpol" in net.run(NODE, ["nft", "list", "tables"]).stdout
    probes = {
        "y/b -> x/a:80 (the policy's peer and port)": (b, ip["x/a"], 80, True),
        "y/b -> x/a:81 (not its port)": (b, ip["x/a"], 81, False),
        "far -> x/a:80 (another node's pod, not a peer)": (FAR[0], ip["x/a"], 80, False),
        "node -> x/a:80 (the pod's node: always)": (NODE, ip["x/a"], 80, True),
        "x/a -> y/b:80 (y/b is not isolated)": (a, ip["y/b"], 80, True),
        "far -> z/c:81 (z/c isolated for egress only)": (FAR[0], ip["z/c"], 81, True),
        "z/c -> y/b:80 (z/c may not send)": (c, ip["y/b"], 80, False),
        "z/c -> far:80 (nor across nodes)": (c, FAR[1], 80, False),
        "z/c -> node:10250 (nor to its node)": (c, NODE_IP, 10250, False),
        "y/b -> node:10250": (b, NODE_IP, 10250, True),
        "y/b -> Service -> x/a:80 (judged after DNAT)": (b, SERVICE_IP, 80, True),
        "far -> Service -> x/a:80 (the backend is isolated)": (FAR[0], SERVICE_IP, 80, False),
    }
    got = {name: connects(ns, dst, port) for name, (ns, dst, port, _) in probes.items()}
    assert got == {name: want for name, (*_, want) in probes.items()}, text
    counters = net.run(NODE, ["nft", "list", "chain", "inet", render.TABLE, "pod-ingress-x/a"]).stdout
    dropped = int(counters.split("counter packets ")[1].split()[0])
    assert dropped >= 2, counters  # far's SYNs (and their retries)
    net.call_in(NODE, sync.Syncer().cleanup)
    assert "netlab-netpol" not in net.run(NODE, ["nft", "list", "tables"]).stdout


def test_changes_keep_established_connections(cluster):
    a, b = PODS["x/a"][0], PODS["y/b"][0]
    ip_a = PODS["x/a"][1]
    program([ALLOW_B_TO_A])
    held = net.popen(b, [sys.executable, "-c", CLIENT, ip_a, "80"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     text=True)
    other = net.popen(a, [sys.executable, "-c", CLIENT, PODS["y/b"][1], "81"], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, text=True)
    try:
        for p in (held, other):
            assert p.stdout.readline().strip() == "connected"

        def say(p, word):
            p.stdin.write(word + "\n")
            p.stdin.flush()
            return p.stdout.readline().strip()
        assert say(held, "one") == "one" and say(other, "one") == "one"
        # a change that keeps b's allowance (and adds far's): the table is replaced, the flows go on
        far_too = policy("x", "allow-far", {"podSelector": {}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.244.2.0/24"}}]}]})
        program([ALLOW_B_TO_A, far_too])
        assert say(held, "two") == "two" and say(other, "two") == "two"
        assert connects(FAR[0], ip_a, 80) and connects(b, ip_a, 80)
        # b's allowance goes: new connections from b are dropped; the one established keeps flowing
        # (as in Calico: an established connection is not judged again)
        program([far_too])
        assert not connects(b, ip_a, 80)
        assert say(held, "three") == "three"
        time.sleep(0.1)
        assert connects(FAR[0], ip_a, 80)
    finally:
        for p in (held, other):
            p.kill()
            p.wait()


def test_the_kernel_trace_names_the_deciding_policy(cluster):
    """`netlab trace`'s reading of `nft monitor trace`: which policy allowed a SYN, whose default
    deny dropped one, in which direction; the drop counted in the pod's chain."""
    from netlab.tools import trace

    program([ALLOW_B_TO_A, DENY_EGRESS_Z])
    ip = {k: v[1] for k, v in PODS.items()}

    def verdicts(src_ns: str, dst: str, port: int) -> tuple[bool, list[str]]:
        ok, out = trace.traced_in({"node": NODE}, "meta l4proto tcp tcp flags syn",
                                  lambda: connects(src_ns, dst, port))
        return ok, [str(v) for p in trace._hop("node", out["node"]).packets for v in p["verdicts"]]

    assert verdicts(PODS["y/b"][0], ip["x/a"], 80) == (True, [
        "ingress of pod x/a on node node: allowed by NetworkPolicy x/allow-b rule 0 from[0] namespaceSelector ns=y "
        "and podSelector pod=b, ports TCP/80 [chain ingress-x/allow-b]"])
    assert verdicts(FAR[0], ip["x/a"], 80) == (False, [
        "ingress of pod x/a on node node: DROPPED by the default deny of NetworkPolicy x/allow-b: no rule of theirs "
        "allows it [chain pod-ingress-x/a]"])
    assert verdicts(PODS["z/c"][0], ip["y/b"], 80) == (False, [
        "egress of pod z/c on node node: DROPPED by the default deny of NetworkPolicy z/deny-egress: no rule of "
        "theirs allows it [chain pod-egress-z/c]"])
    assert verdicts(PODS["x/a"][0], ip["y/b"], 80) == (True, [])  # neither end isolated: nothing judged
    assert verdicts(NODE, ip["x/a"], 81)[1] == [
        "ingress of pod (the destination) on node node: allowed by the rule for traffic from this node: always "
        "allowed (the kubelet's probes) [chain ingress-output]"]
    # the drops are counted where the trace says, and `netlab rules --policy` reads the counters back
    listing = net.run(NODE, ["nft", "list", "chain", "inet", render.TABLE, "pod-ingress-x/a"]).stdout
    assert int(listing.split("counter packets ")[1].split()[0]) >= 1, listing
    from netlab.tools.rules import policy_rules

    allow = next(pc for pc in policy_rules(NODE) if pc.policy == "x/allow-b")
    assert allow.direction == "ingress" and allow.pods[0][:3] == ("x/a", ip["x/a"], "pod-ingress-x/a")
    assert allow.pods[0][3] >= 1  # far's SYN
    (peer,) = allow.rules[0]
    assert peer.addresses == [ip["y/b"]] and peer.ports[0].ports == "TCP/80" and peer.ports[0].packets >= 1


def test_the_docs_show_the_rules_the_kernel_lists():
    """docs/network-policy.md's listings (each block after a "kernel listing" marker) are, line
    for line, in `nft list table` of the table its two policies make, as the kernel prints it."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "network-policy.md").read_text()
    blocks = re.findall(r"<!-- kernel listing:[^>]*-->\n```\n(.*?)```", doc, re.S)
    assert len(blocks) >= 2, "the markers are gone from the doc"
    pods = [pod("x", "a", "10.244.1.2", "node", ports=(("serve-81-tcp", 81, "TCP"),)),
            pod("y", "b", "10.244.1.3", "node"), pod("z", "c", "10.244.1.4", "node"), pod("x", "d", "10.244.2.5", "other")]
    pols = [policy("x", "allow-client", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}},
        {"ipBlock": {"cidr": "10.244.2.0/24", "except": ["10.244.2.9/32"]}}],
        "ports": [{"port": 80}, {"port": "serve-81-tcp"}]}]}),
        policy("z", "egress", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}], "ports": [{"protocol": "UDP"}]},
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53},
                       {"port": 8000, "endPort": 8080}]}]})]
    try:
        net.ns_create(NODE)
        net.call_in(NODE, sync.Syncer().sync, render.render(pols, pods, [namespace(n) for n in "xyz"], "node",
                                                              "10.244.1.0/24"))
        listing = {ln.strip() for ln in net.run(NODE, ["nft", "list", "table", "inet", render.TABLE]).stdout.splitlines()}
    finally:
        net.ns_delete(NODE)
    missing = [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip() and ln.strip() not in listing]
    assert not missing, f"in the doc, not in the kernel's listing: {missing}"
