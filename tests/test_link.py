"""Link impairments on a node's uplink (`netlab link`, the cluster file's nodes[i].link, Lab.link):
netem for delay, jitter and loss, tbf for a rate. The settings are checked without a kernel; on a
kernel without netem the one-line error names the module; the lab tests need netem and tbf and
skip without them (they run in the test VM: scripts/test-vm): a 50 ms delay in ping and in a
pod-to-pod HTTP request across nodes, 10% loss in a bounded UDP run."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from netlab.kit import impair, net
from netlab.kit.cluster import Cluster, ClusterError
from netlab.tools.testing import Lab


def test_the_cluster_files_link_settings():
    c = Cluster.from_dict({"nodes": [{"role": "control-plane"},
                                     {"role": "worker", "link": {"delay": "50ms", "jitter": 5, "loss": "1%",
                                                                 "rate": "10mbit"}}]}, name="nltl")
    assert c.impairment("worker") == impair.Impairment(50, 5, 1, "10mbit")
    assert c.impairment("control-plane").none
    assert c.to_dict()["nodes"][1]["link"] == {"delay": "50ms", "jitter": "5ms", "loss": "1%", "rate": "10mbit"}
    assert Cluster.from_dict(c.to_dict(), name="nltl") == c
    assert "link" not in Cluster.from_dict({}, name="nltl").to_dict()["nodes"][0]


@pytest.mark.parametrize("link, message", [
    ({"loss": "150%"}, r"nodes\[1\]\.link\.loss: '150%' is out of range \(0 to 100\)"),
    ({"delay": "fast"}, r"nodes\[1\]\.link\.delay: expected a number of ms, like 50ms; got 'fast'"),
    ({"jitter": 5}, r"nodes\[1\]\.link\.jitter: needs a delay"),
    ({"rate": "fast"}, r"nodes\[1\]\.link\.rate: expected a rate as tc writes it"),
    ({"latency": 5}, r"nodes\[1\]\.link\.latency: not a link setting \(delay, jitter, loss, rate\)"),
])
def test_bad_link_settings_name_the_field(link, message):
    with pytest.raises(ClusterError, match=message):
        Cluster.from_dict({"nodes": [{"role": "control-plane"}, {"role": "worker", "link": link}]}, name="nltl")


def test_the_cli_takes_the_link_options():
    from netlab.tools.cli import parser

    a = parser().parse_args(["link", "worker", "--delay", "50", "--jitter", "5", "--loss", "10", "--rate", "1mbit"])
    assert (a.node, a.delay, a.jitter, a.loss, a.rate) == ("worker", 50.0, 5.0, 10.0, "1mbit")


NETEM = net.qdisc_available("netem") if os.geteuid() == 0 else False
needs_netem = pytest.mark.skipif(not (NETEM and net.qdisc_available("tbf")),
                                 reason="link impairments need the kernel's netem and tbf queueing disciplines "
                                        "(sch_netem, sch_tbf), which this kernel lacks")


@pytest.mark.lab
@pytest.mark.skipif(NETEM, reason="this kernel has netem")
def test_a_kernel_without_netem_is_named_in_one_line():
    ns = "nltlink0"
    net.ns_create(ns)
    try:
        net.run(ns, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"])
        with pytest.raises(net.NetError, match=r"^link impairments need the kernel's netem queueing discipline "
                                               r"\(the sch_netem module, CONFIG_NET_SCH_NETEM\), which this kernel lacks$"):
            net.link_impair(ns, "eth0", impair.impairment(delay=50))
    finally:
        net.ns_delete(ns)


SERVERS = """
apiVersion: v1
kind: Pod
metadata: {name: server}
spec:
  nodeName: control-plane
  tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
  containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: worker
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
"""

# The shortest of n HTTP requests, each on a fresh connection (handshake and request: two round trips), in ms.
HTTP_MS = """
import socket, sys, time
best = None
for _ in range(int(sys.argv[3])):
    t = time.monotonic()
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
        s.sendall(b"GET /hostname HTTP/1.0\\r\\n\\r\\n")
        while s.recv(4096):
            pass
    ms = (time.monotonic() - t) * 1000
    best = ms if best is None else min(best, ms)
print(f"{best:.1f}")
"""

# n UDP datagrams one way, and how many arrived (a receiver that stops once they stop coming).
UDP_RECEIVE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
print("ready", flush=True)
s.settimeout(30)
got = 0
try:
    s.recv(64); got = 1
    s.settimeout(3)
    while True:
        s.recv(64); got += 1
except OSError:
    pass
print(got)
"""
UDP_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(b"x", (sys.argv[1], 9999))
    time.sleep(0.002)
"""


@pytest.fixture(scope="module")
def lab():
    if not (NETEM and net.qdisc_available("tbf")):
        pytest.skip("link impairments need the kernel's netem and tbf (sch_netem, sch_tbf)")
    cluster = Cluster.from_dict({"nodes": [{"role": "control-plane"}, {"role": "worker", "link": {"delay": "20ms"}}],
                                 "networking": {"nodeSubnet": "172.31.5.0/24", "podSubnet": "10.205.0.0/16"}},
                                name="nltlink")
    with Lab(cluster=cluster) as lab:
        lab.apply(SERVERS)
        lab.wait(lambda: all(_ready(lab.get("pod", p)) for p in ("server", "client")), timeout=120,
                 what="the server and client pods Ready")
        yield lab


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def netlab_cli(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netlab.tools.cli", *args, "--name", lab.name], capture_output=True,
                          text=True, timeout=300)


def ping_min_ms(lab: Lab, src: str, dst_ip: str) -> float:
    out = lab.node_exec(src, ["ping", "-c", "5", "-i", "0.2", "-q", dst_ip], timeout=60).stdout
    m = re.search(r"= ([\d.]+)/", out)
    assert m, out
    return float(m.group(1))


def http_min_ms(lab: Lab) -> float:
    ip = lab.get("pod", "server")["status"]["podIP"]
    r = lab.exec("client", [sys.executable, "-c", HTTP_MS, ip, "8080", "5"], timeout=120)
    assert r.returncode == 0, r.stderr
    return float(r.stdout)


@pytest.mark.lab
@needs_netem
def test_the_cluster_files_link_is_on_the_nodes_uplink(lab):
    assert re.search(r"qdisc netem 1: root .*delay 20ms", netlab_cli(lab, "link", "worker", "--show").stdout)
    assert "netem" not in netlab_cli(lab, "link", "control-plane", "--show").stdout


@pytest.mark.lab
@needs_netem
def test_a_50ms_delay_shows_in_ping_and_in_http_across_nodes(lab):
    cp = lab.cluster.node("control-plane").ip
    r = netlab_cli(lab, "link", "worker")  # none: the link as it was
    assert r.returncode == 0 and "netem" not in r.stdout, r.stdout + r.stderr
    ping0, http0 = ping_min_ms(lab, "worker", cp), http_min_ms(lab)
    r = netlab_cli(lab, "link", "worker", "--delay", "50")
    assert r.returncode == 0 and "node worker uplink: delay 50ms" in r.stdout, r.stdout + r.stderr
    try:
        ping1, http1 = ping_min_ms(lab, "worker", cp), http_min_ms(lab)
    finally:
        netlab_cli(lab, "link", "worker")
    assert 50 <= ping1 - ping0 + 5 and ping1 - ping0 < 50 + 100, (ping0, ping1)  # one crossing per round trip
    assert 2 * 50 <= http1 - http0 + 10, (http0, http1)  # handshake and request: two round trips


@pytest.mark.lab
@needs_netem
def test_10_percent_loss_shows_in_a_bounded_udp_run(lab):
    cp = lab.cluster.node("control-plane")

    def lost(n: int) -> int:
        recv = net.popen(cp.netns, [sys.executable, "-c", UDP_RECEIVE, cp.ip], stdout=subprocess.PIPE, text=True)
        try:
            assert recv.stdout.readline().strip() == "ready"
            lab.node_exec("worker", [sys.executable, "-c", UDP_SEND, cp.ip, str(n)], timeout=300)
            return n - int(recv.communicate(timeout=120)[0])
        finally:
            recv.kill()
            recv.wait()
    assert "loss 10%" in lab.link("worker", loss=10)
    try:
        lossy = lost(1000)
    finally:
        lab.link("worker")
    assert 50 <= lossy <= 160, lossy  # 100 expected; +-3 sigma is +-28
    assert lost(300) <= 3
