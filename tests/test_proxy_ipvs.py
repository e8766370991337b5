"""IPVS mode. What it programs is checked without a kernel (virtual servers, ipsets, nat rules for
upstream's inputs); the lab tests need the kernel's ip_vs module and skip without it, naming it
(they run in the test VM: scripts/test-vm); on such a kernel `netlab up` with proxyMode ipvs fails
saying so. In the lab: round-robin over the pods, NodePort from another node, ClientIP persistence,
a scaled-out pod picked up and a deleted one drained, `netlab rules` and `netlab trace` reading IPVS."""

from __future__ import annotations

import collections
import subprocess
import sys

import pytest

from netlab.kit import net
from netlab.lab.build import LabError
from netlab.tools.testing import Lab
from proxy import ipvs_render as ipvs
from proxy.config import Config
from tests.test_proxy import upstream_ports

CFG = Config(node_name="test-node", cluster_cidr="10.0.0.0/8", node_ips=["192.168.0.2"])


def test_virtual_servers_for_upstreams_inputs():
    vs = ipvs.virtual_servers(upstream_ports(), CFG)
    assert vs[("172.30.0.41", 80, "TCP")] == ("rr", 0, [("10.180.0.1", 80)])
    assert vs[("172.30.0.44", 80, "TCP")] == ("rr", 0, [("10.180.0.4", 80), ("10.180.0.5", 80)])
    assert vs[("192.168.99.33", 80, "TCP")][2] == [("10.180.0.4", 80), ("10.180.0.5", 80)]
    assert vs[("172.30.0.45", 80, "TCP")] == ("rr", 10800, [("10.180.0.3", 80)])  # ClientIP: persistence
    assert vs[("192.168.0.2", 3003, "TCP")] == ("rr", 0, [("10.180.0.3", 80)])  # NodePort on the node's IP
    assert vs[("1.2.3.4", 80, "TCP")] == ("rr", 0, [])  # eTP Local, no local endpoint: nothing to send to
    assert vs[("172.30.0.46", 80, "TCP")][2] == []


def test_ipsets_and_nat_rules():
    sets = ipvs.ipsets(upstream_ports())
    assert "172.30.0.41,tcp:80" in sets["KUBE-CLUSTER-IP"] and "192.168.99.33,tcp:80" in sets["KUBE-EXTERNAL-IP"]
    assert {"3001", "3002", "3003"} <= set(sets["KUBE-NODE-PORT-TCP"])
    assert "10.180.0.1,tcp:80,10.180.0.1" in sets["KUBE-LOOP-BACK"]
    text = ipvs.nat_text(CFG)
    assert "-m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ" in text
    assert "--match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE" in text and text.endswith("COMMIT\n")


IPVSADM = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.20:80 rr
  -> 10.244.1.2:8080              Masq    1      0          0
  -> 10.244.2.2:8080              Masq    1      0          3
TCP  10.96.0.21:80 rr persistent 10800
  -> 10.244.1.2:8080              Masq    1      0          0
TCP  172.18.0.3:30080 rr
UDP  10.96.0.10:53 rr
  -> 10.244.0.3:53                Masq    1      0          0
"""


def test_rules_group_and_name_the_ipvs_table():
    from netlab.tools.rules import format_routes, ipvs_routes, service_names

    services = [{"metadata": {"name": "web", "namespace": "default"},
                 "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}},
                {"metadata": {"name": "sticky", "namespace": "default"},
                 "spec": {"clusterIP": "10.96.0.21", "ports": [{"port": 80}]}}]
    names = service_names(services, ["172.18.0.3"])
    rs = ipvs_routes(IPVSADM, names)
    assert [(r.service, r.frontend, r.chain) for r in rs] == [
        ("default/web:http", "10.96.0.20:80/tcp (cluster IP)", "IPVS rr"),
        ("default/sticky", "10.96.0.21:80/tcp (cluster IP)", "IPVS rr persistent 10800s"),
        ("default/web:http", "172.18.0.3:30080/tcp (NodePort)", "IPVS rr"),
        ("?", "10.96.0.10:53/udp (virtual server)", "IPVS rr")]
    assert rs[0].endpoints == [("10.244.1.2:8080", "50%", "Masq"), ("10.244.2.2:8080", "50%", "Masq")]
    out = format_routes(rs, "default/web")
    assert "default/sticky" not in out and "(nothing to send to: IPVS rr)" in out and out.count("default/web:http") == 2


needs_ipvs = pytest.mark.skipif(not net.ipvs_available(), reason=net.IPVS_MISSING)


@pytest.mark.lab
@pytest.mark.skipif(net.ipvs_available(), reason="this kernel has ip_vs")
def test_up_in_ipvs_mode_names_the_missing_kernel_feature():
    with pytest.raises(LabError, match=r"networking.proxyMode ipvs: IPVS mode needs the kernel's IP Virtual Server"):
        Lab("nltipvs0", nodes=2, nodeSubnet="172.31.3.0/24", podSubnet="10.203.0.0/16", proxyMode="ipvs").up()
    assert not net.ns_exists("nltipvs0")


APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
"""


@pytest.fixture(scope="module")
def lab():
    """One IPVS lab for the module (under emulation a lab's start is minutes)."""
    if not net.ipvs_available():
        pytest.skip(net.IPVS_MISSING)
    with Lab("nltipvs", nodes=3, nodeSubnet="172.31.4.0/24", podSubnet="10.204.0.0/16", proxyMode="ipvs") as lab:
        lab.apply(APP)
        lab.wait_ready("app=web", count=3)
        lab.wait_ready("app=client", count=1)
        for service in ("web", "sticky"):
            wait_real_servers(lab, service, web_ips(lab))
        yield lab


def web_ips(lab: Lab) -> set[str]:
    return {p["status"]["podIP"] for p in lab.items("pods", selector="app=web")
            if not p["metadata"].get("deletionTimestamp") and p.get("status", {}).get("podIP")}


def client_node(lab: Lab) -> str:
    return lab.get("pod", "client")["spec"]["nodeName"]


def real_servers(lab: Lab, node: str, ip: str, port: int) -> dict[str, str]:
    """The real servers of virtual server ip:port on `node`: {address: forwarding method}."""
    out = lab.node_exec(node, ["ipvsadm", "-Ln", "-t", f"{ip}:{port}"]).stdout
    return {f[1].split(":")[0]: f[2] for f in (line.split() for line in out.splitlines()) if len(f) > 2 and f[0] == "->"
            and f[1][0].isdigit()}


def wait_real_servers(lab: Lab, service: str, ips: set[str], node: str | None = None) -> None:
    """Until the Service's virtual server on `node` (the client's) has exactly `ips` by NAT: its own
    endpoints, not just any Service's (kube-dns's and kubernetes' are there first)."""
    node = node or client_node(lab)
    vip = lab.get("service", service)["spec"]["clusterIP"]
    lab.wait(lambda: real_servers(lab, node, vip, 80) == {ip: "Masq" for ip in ips},
             what=f"IPVS real servers of {service} on {node} to be {sorted(ips)}")


def hits(lab: Lab, host: str, n: int, port: int = 80, node: str | None = None) -> collections.Counter:
    """n fresh connections to host:port from the client pod (or from `node`): who answered."""
    from tests.test_proxy_lab import REQUESTS

    argv = [sys.executable, "-c", REQUESTS, host, str(port), str(n)]
    r = lab.node_exec(node, argv, timeout=240) if node else lab.exec("client", argv, timeout=240)
    return collections.Counter(r.stdout.split("\n")[:-1])


def cluster_ip(lab: Lab, service: str) -> str:
    return lab.get("service", service)["spec"]["clusterIP"]


@pytest.mark.lab
@needs_ipvs
def test_round_robin_and_affinity_in_ipvs_mode(lab):
    def hits_of(service: str, n: int) -> collections.Counter:
        return hits(lab, cluster_ip(lab, service), n)
    rr = hits_of("web", 90)
    assert len(rr) == 3 and set(rr.values()) == {30}, rr  # rr: exactly even
    assert len(hits_of("sticky", 20)) == 1


@pytest.mark.lab
@needs_ipvs
def test_cluster_ip_round_robin_spreads_300_requests_evenly(lab):
    pods = {p["metadata"]["name"] for p in lab.items("pods", selector="app=web")}
    rr = hits(lab, cluster_ip(lab, "web"), 300)
    assert rr == {pod: 100 for pod in pods}, rr


@pytest.mark.lab
@needs_ipvs
def test_node_port_from_another_node(lab):
    """Needs vs/conntrack=1 on the node (as upstream sets it): the reply is masqueraded back."""
    port = lab.get("service", "web")["spec"]["ports"][0]["nodePort"]
    src, dst = lab.cluster.nodes[0], lab.cluster.nodes[1]
    wait_real_servers(lab, "web", web_ips(lab), node=dst.name)
    assert lab.node_exec(dst.name, ["sysctl", "-n", "net.ipv4.vs.conntrack"]).stdout.strip() == "1"
    rr = hits(lab, dst.ip, 90, port=port, node=src.name)
    assert len(rr) == 3 and set(rr.values()) == {30}, rr


@pytest.mark.lab
@needs_ipvs
def test_client_ip_affinity_is_ipvs_persistence(lab):
    vip = cluster_ip(lab, "sticky")
    listing = lab.node_exec(client_node(lab), ["ipvsadm", "-Ln", "-t", f"{vip}:80"]).stdout
    assert "persistent 10800" in listing, listing
    answers = hits(lab, vip, 50)
    assert len(answers) == 1 and sum(answers.values()) == 50, answers


@pytest.mark.lab
@needs_ipvs
def test_scaled_out_pod_is_picked_up(lab):
    lab.kubectl("scale", "deployment/web", "--replicas=4")
    lab.wait_ready("app=web", count=4, timeout=120)
    wait_real_servers(lab, "web", web_ips(lab))
    rr = hits(lab, cluster_ip(lab, "web"), 120)
    assert len(rr) == 4 and set(rr.values()) == {30}, rr


@pytest.mark.lab
@needs_ipvs
def test_deleted_pod_is_drained(lab):
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in lab.items("pods", selector="app=web")
            if not p["metadata"].get("deletionTimestamp")}
    victim = sorted(pods)[0]
    lab.kubectl("delete", "pod", victim, "--wait=false")
    vip = cluster_ip(lab, "web")
    lab.wait(lambda: pods[victim] not in real_servers(lab, client_node(lab), vip, 80),
             what=f"{victim}'s real server gone")
    answers = hits(lab, vip, 60)
    assert victim not in answers and sum(answers.values()) == 60 and "ERR" not in " ".join(answers), answers


def netlab_cli(lab: Lab, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "netlab.tools.cli", *args, "--name", lab.name], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.lab
@needs_ipvs
def test_rules_reads_the_ipvs_table(lab):
    from netlab.tools.rules import routes, service_names

    node = client_node(lab)
    wait_real_servers(lab, "web", web_ips(lab))
    names = service_names(lab.items("services", None), [n.ip for n in lab.cluster.nodes])
    vip = cluster_ip(lab, "web")
    web = [r for r in routes(lab.cluster.node(node).netns, "ipvs", names) if r.frontend.startswith(f"{vip}:80/tcp")]
    assert len(web) == 1 and web[0].service == "default/web:http" and web[0].chain == "IPVS rr"
    assert {a.split(":")[0] for a, _, _ in web[0].endpoints} == web_ips(lab)
    assert {how for _, _, how in web[0].endpoints} == {"Masq"}
    out = netlab_cli(lab, "rules", "--node", node, "--service", "default/web")
    assert f"default/web:http  {vip}:80/tcp (cluster IP)  -> IPVS rr" in out, out
    assert "NodePort" in out and "kube-dns" not in out and "default/sticky" not in out, out
    assert "persistent 10800s" in netlab_cli(lab, "rules", "--node", node, "--service", "default/sticky")


@pytest.mark.lab
@needs_ipvs
def test_trace_shows_the_real_server_ipvs_chose(lab):
    from netlab.tools import trace

    t = trace.run(lab, "client", "web")
    assert t.answer.startswith("connected; answer: web-"), t
    pod = t.answer.split(": ")[1]
    ip = lab.get("pod", pod)["status"]["podIP"]
    rules = [r for h in t.hops for p in h.packets for r in p["rules"]]
    assert any(r.startswith(f"ipvs {cluster_ip(lab, 'web')}:80: ") and f"to real server {ip}:8080" in r for r in rules), \
        trace.format_trace(t)
    assert t.receiver == f"pod default/{pod} on {lab.get('pod', pod)['spec']['nodeName']}", trace.format_trace(t)
