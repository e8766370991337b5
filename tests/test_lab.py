"""The lab network: nodes on one node network, pods across nodes over host-gw routes or a VXLAN
overlay, labs side by side, the host left untouched, and `down` that leaves nothing."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from netlab.kit import net
from netlab.kit.cluster import SUBNETS, Cluster, state_dir
from netlab.lab import build as lab, supervisor
from netlab.tools.packets import Sniffer, send
from tests.labkit import hand_pod, host_sysctl, running_lab

pytestmark = pytest.mark.lab


def ping(ns: str, ip: str) -> bool:
    return net.run(ns, ["ping", "-c1", "-W2", ip], check=False).returncode == 0


def test_nodes_reach_each_other_and_nothing_else():
    with running_lab("nlta1", nodes=3) as c:
        for a in c.nodes:
            for b in c.nodes:
                if a is not b:
                    assert ping(a.netns, b.ip), f"{a.name} cannot reach {b.name}"
            # the node's default route is the lab's router, which forwards nothing and has no route out
            defaults = [r for r in net.route_list(a.netns) if r["dst"] == "default"]
            assert defaults == [{"dst": "default", "via": c.node_gateway, "dev": "eth0"}]
            assert net.read_sysctl(a.netns, "net.ipv4.ip_forward") == "1"
            assert f"{a.gateway}/24" in net.addr_list(a.netns, "cni0")
        assert not [r for r in net.route_list(c.netns) if r["dst"] == "default"]
        assert net.run(c.netns, ["ip", "route", "get", "192.0.2.1"], check=False).returncode != 0  # unreachable
        assert net.read_sysctl(c.netns, "net.ipv4.ip_forward") == "0"


def test_the_router_forwards_nothing_on_a_host_that_forwards():
    """A new namespace takes the host's ip_forward (1 on a host with Docker): the lab sets its own."""
    with host_sysctl("net.ipv4.ip_forward", "1"), running_lab("nlta-fw", nodes=2) as c:
        a, b = c.nodes
        assert net.read_sysctl(c.netns, "net.ipv4.ip_forward") == "0"
        assert [net.read_sysctl(n.netns, "net.ipv4.ip_forward") for n in c.nodes] == ["1", "1"]
        router = net.link_mac(c.netns, "br-nodes")
        probe = IP(src=a.ip, dst=b.ip) / UDP(sport=4000, dport=9999) / b"via-the-router"
        with Sniffer(b.netns, "eth0", "udp port 9999", timeout=1.5) as at_b:
            send(a.netns, Ether(dst=router, src=net.link_mac(a.netns, "eth0")) / probe, iface="eth0")
        assert not at_b.packets, "the lab's router forwarded a frame to another node"
        with Sniffer(b.netns, "eth0", "udp port 9999", timeout=1.5) as at_b:  # the same, sent to b itself
            send(a.netns, Ether(dst=net.link_mac(b.netns, "eth0"), src=net.link_mac(a.netns, "eth0")) / probe,
                 iface="eth0")
        assert at_b.packets


@pytest.mark.parametrize("backend", ["host-gw", "vxlan"])
def test_pod_to_pod_across_nodes(backend):
    with running_lab(f"nlta-{backend[:2]}", nodes=2, backend=backend) as c:
        a, b = c.nodes
        pod_a, ip_a = hand_pod(c, a, 5)
        pod_b, ip_b = hand_pod(c, b, 7)
        assert ping(pod_a, ip_b) and ping(pod_b, ip_a)
        probe = IP(src=ip_a, dst=ip_b) / UDP(sport=4000, dport=9999) / b"netlab-probe"
        with Sniffer(pod_b, "eth0", "udp port 9999") as in_pod, \
                Sniffer(c.netns, "br-nodes", "udp", count=1) as on_wire:
            send(pod_a, probe)
        assert in_pod.packets, "the probe did not arrive in the pod on the other node"
        got = in_pod.packets[0][IP]
        assert (got.src, got.dst, bytes(got[UDP].payload)) == (ip_a, ip_b, b"netlab-probe")
        assert on_wire.packets, "nothing seen on the node network"
        frame = on_wire.packets[0]
        if backend == "vxlan":
            # Encapsulated: node to node on UDP 8472 (flannel's port), VNI 1, the pod packet inside.
            assert (frame[IP].src, frame[IP].dst, frame[UDP].dport) == (a.ip, b.ip, 8472)
            inner = frame[VXLAN]
            assert inner.vni == 1 and inner[IP].src == ip_a and inner[IP].dst == ip_b
            assert net.link_list(a.netns)[0] and any(
                link["name"] == "flannel.1" and link["mtu"] == 1450 for link in net.link_list(a.netns))
        else:
            # Routed as it is: the pod addresses on the wire, no encapsulation.
            assert (frame[IP].src, frame[IP].dst, frame[UDP].dport) == (ip_a, ip_b, 9999)
            assert {"dst": b.pod_cidr, "via": b.ip, "dev": "eth0"} in net.route_list(a.netns)


def test_two_labs_side_by_side():
    with running_lab("nlta-one", nodes=2) as one, \
            running_lab("nlta-two", nodes=2, nodeSubnet="172.19.0.0/24", podSubnet="10.245.0.0/16") as two:
        pod1, ip1 = hand_pod(one, one.nodes[1], 5)
        pod2, ip2 = hand_pod(two, two.nodes[1], 5)
        assert ping(pod1, one.nodes[0].gateway) and ping(pod2, two.nodes[0].gateway)
        assert not ping(pod1, ip2), "labs must not reach each other"
        # a third lab whose node subnet overlaps is refused, naming the field
        with pytest.raises(lab.LabError, match="networking.nodeSubnet 172.19.0.0/24 overlaps lab 'nlta-two'"):
            lab.up(Cluster.from_dict({"networking": {"nodeSubnet": "172.19.0.0/24",
                                                     "podSubnet": "10.246.0.0/16"}}, name="nlta-three"))
        with pytest.raises(lab.LabError, match="a lab named 'nlta-one' is already up"):
            lab.up(Cluster.default(name="nlta-one"))
    assert not net.ns_exists("nlta-three")


def test_two_labs_with_the_default_subnets(tmp_path):
    """The second lab up with the defaults gets free subnets and says which; a subnet a cluster
    file names that another lab holds is refused in one line, and nothing is made."""
    def netlab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "netlab.tools.cli", *args], capture_output=True, text=True,
                              timeout=120)

    with running_lab("nlta-d1", nodes=2) as one:
        try:
            r = netlab("up", "--name", "nlta-d2", "--nodes", "1")
            assert r.returncode == 0, r.stderr
            two = Cluster.from_state("nlta-d2")
            mine = [ipaddress.ip_network(getattr(one, f)) for f in SUBNETS]
            for field, key in SUBNETS.items():
                theirs = ipaddress.ip_network(getattr(two, field))
                assert not any(theirs.overlaps(m) for m in mine), (key, theirs, mine)
            assert (f"subnets: nodeSubnet {two.node_subnet}, podSubnet {two.pod_subnet}, serviceSubnet "
                    f"{two.service_subnet} (nodeSubnet, podSubnet, serviceSubnet picked") in r.stdout, r.stdout
            # each reachable: the first's pods across its nodes, the second's API and node network
            pod, _ = hand_pod(one, one.nodes[1], 5)
            assert ping(pod, one.nodes[0].gateway)
            assert ping(two.nodes[0].netns, two.node_gateway)
            nodes = lab_wait(lambda: "control-plane" in netlab("get", "nodes", "--name", "nlta-d2").stdout)
            assert nodes, "the second lab's API server does not answer"
            assert not ping(two.nodes[0].netns, one.nodes[0].ip)
            f = tmp_path / "cluster.yaml"
            f.write_text(f"kind: Cluster\nnetworking: {{podSubnet: {two.pod_subnet}}}\n")
            r = netlab("up", "-f", str(f), "--name", "nlta-d3")
            assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
            assert r.stderr.startswith(f"netlab: networking.podSubnet {two.pod_subnet} overlaps lab 'nlta-d2'")
            assert not net.ns_exists("nlta-d3") and not state_dir("nlta-d3").exists()
        finally:
            lab.down("nlta-d2")


def host_snapshot() -> dict[str, str]:
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout

    sysctls = ["net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter",
               "net/bridge/bridge-nf-call-iptables"]
    return {
        "links": out("ip", "-o", "link", "show"),
        "addresses": out("ip", "-o", "addr", "show"),
        "routes": out("ip", "route", "show", "table", "all"),
        "rules": out("ip", "rule", "show"),
        "iptables": "\n".join(line for line in out("iptables-save").splitlines() if not line.startswith("#")),
        "nft": out("nft", "list", "ruleset"),
        "sysctls": " ".join(open(f"/proc/sys/{s}").read().strip() for s in sysctls if os.path.exists(f"/proc/sys/{s}")),
    }


def test_host_root_namespace_is_untouched():
    before = host_snapshot()
    with running_lab("nlta-host", nodes=2, backend="vxlan") as c:
        hand_pod(c, c.nodes[1], 5)
        assert host_snapshot() == before
    assert host_snapshot() == before


SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"]


def test_down_after_sigkill_of_everything_leaves_nothing():
    comps = [supervisor.Component("sleeper", SLEEPER), supervisor.Component("node-sleeper", SLEEPER, "nlta-k-worker")]
    with running_lab("nlta-k", nodes=2, components=comps) as c:
        assert lab_wait(lambda: len([r for r in supervisor.read_status(c.name) or [] if r["pid"]]) == 2)
        hand_pod(c, c.nodes[1], 5)
        pids = lab.lab_processes(c.name)
        assert len(pids) == 3  # the supervisor and its two components
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        (c.state_dir / "supervisor.pid").write_text("999999")  # stale
        open("/run/netns/nlta-k-pod-stale", "w").close()  # a stale namespace file with no mount
    assert not [ns for ns in net.ns_list() if ns.startswith("nlta-k")]
    assert not lab.lab_processes("nlta-k")
    assert not c.state_dir.exists()


def test_cli_status_exec_and_errors(capsys):
    from netlab.tools import cli

    with running_lab("nlta-cli", nodes=2):
        assert cli.main(["status", "--name", "nlta-cli"]) == 0
        out = capsys.readouterr().out
        assert re.search(r"^worker +worker +172.18.0.3 +10.244.1.0/24 +nlta-cli-worker +yes$", out, re.M)
        assert "no components" in out
        r = subprocess.run([sys.executable, "-m", "netlab.tools.cli", "exec", "--name", "nlta-cli", "worker", "--",
                            "ip", "-o", "addr", "show", "eth0"], capture_output=True, text=True)
        assert "172.18.0.3/24" in r.stdout
        assert cli.main(["up", "--name", "nlta-cli"]) == 1
        assert "already up" in capsys.readouterr().err
        assert cli.main(["exec", "--name", "nlta-cli", "worker9", "--", "true"]) == 1
        assert "no node or pod 'worker9'" in capsys.readouterr().err


def test_not_root_is_one_clear_line_and_makes_nothing(monkeypatch, capsys):
    from netlab.tools import cli

    # (a real unprivileged user cannot run this machine's Python under /root; the check is euid)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["up", "--name", "nlta-nobody"]) == 1
    assert capsys.readouterr().err.strip() == \
        "netlab: netlab makes network namespaces and needs root: run it with sudo"
    assert not net.ns_exists("nlta-nobody")
    assert not state_dir("nlta-nobody").exists()


def lab_wait(pred, timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False
