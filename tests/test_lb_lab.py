"""LoadBalancer Services from the outside (a machine on the nodes' network that is not a node):
an address from the pool that answers, spread over the pods; one node answering ARP for it
(MetalLB's L2 mode) and another taking over within seconds when that node's link goes down;
externalTrafficPolicy Local keeping the client's address, announced only from a node with a
local endpoint, and its health-check node port; loadBalancerSourceRanges refusing other
sources; a Service of another loadBalancerClass left alone."""

from __future__ import annotations

import collections
import ipaddress
import json
import re
import sys
import time

import pytest

from netlab.kit import net
from netlab.lab.build import OUTSIDE_LINK
from netlab.tools.testing import Lab

pytestmark = pytest.mark.lab
NS = "lbtest"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"

APP = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: agnhost, image: {AGNHOST}, args: [netexec, --http-port=8080]}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: solo}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: solo}}}}
  template:
    metadata: {{labels: {{app: solo}}}}
    spec:
      containers: [{{name: agnhost, image: {AGNHOST}, args: [netexec, --http-port=8080]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: solo-local}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {{app: solo}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: other-class}}
spec:
  type: LoadBalancer
  loadBalancerClass: example.com/other
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""

# Fresh connections, one answer per line: the body, or ERR.
REQUESTS = """
import socket, sys
host, port, n, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for _ in range(n):
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n".encode())
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        print(data.split(b"\\r\\n\\r\\n", 1)[1].decode().strip())
    except OSError as e:
        print("ERR", type(e).__name__)
"""


@pytest.fixture(scope="module")
def lab(netlab_lab: Lab):
    lab = netlab_lab
    lab.kubectl("create", "namespace", NS)
    try:
        lab.apply(APP, namespace=NS)
        lab.wait_ready("app=web", namespace=NS, count=3)
        lab.wait_ready("app=solo", namespace=NS, count=1)
        for name in ("web", "solo-local"):
            lab.wait(lambda name=name: lb_ip(lab, name), what=f"{name}'s LoadBalancer IP")
        time.sleep(1.5)  # kube-proxy's min sync period, the speakers' election
        yield lab
    finally:
        lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def lb_ip(lab: Lab, name: str) -> str | None:
    ingress = ((lab.get("service", name, NS).get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ingress[0]["ip"] if ingress else None


def from_outside(lab: Lab, ip: str, n: int, path: str = "/hostname", port: int = 80) -> list[str]:
    r = lab.outside_exec([sys.executable, "-c", REQUESTS, ip, str(port), str(n), path], timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def announcer(lab: Lab, ip: str) -> str | None:
    """The node whose MAC the outside's ARP cache holds for `ip` (after asking)."""
    lab.outside_exec(["ping", "-c", "1", "-W", "1", ip])
    out = lab.outside_exec(["ip", "neigh", "show", ip]).stdout
    m = re.search(r"lladdr (\S+)", out)
    if not m:
        return None
    return next((n.name for n in lab.cluster.nodes if net.link_mac(n.netns, "eth0") == m.group(1)), None)


def pods_by_node(lab: Lab, app: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in lab.items("pods", NS, f"app={app}"):
        if not p["metadata"].get("deletionTimestamp"):
            out.setdefault(p["spec"]["nodeName"], set()).add(p["metadata"]["name"])
    return out


def test_an_address_from_the_pool_answers_from_outside_spread_over_the_pods(lab):
    ip = lb_ip(lab, "web")
    first, last = lab.cluster.lb_pool
    assert ipaddress.ip_address(first) <= ipaddress.ip_address(ip) <= ipaddress.ip_address(last)
    assert lab.get("service", "web", NS)["status"]["loadBalancer"]["ingress"] == [{"ip": ip, "ipMode": "VIP"}]
    assert ip in lab.kubectl("get", "svc", "web", "-n", NS).stdout  # EXTERNAL-IP
    answers = from_outside(lab, ip, 600)
    counts = collections.Counter(answers)
    pods = {p for ps in pods_by_node(lab, "web").values() for p in ps}
    assert set(counts) == pods, counts
    assert all(abs(c - 200) <= 50 for c in counts.values()), counts
    # one node answers ARP for it, and says so in an event; not the control plane (excluded)
    node = announcer(lab, ip)
    assert node and node != lab.cluster.nodes[0].name
    events = lab.items("events", NS)
    assert any(e["reason"] == "nodeAssigned" and f'announcing from node "{node}"' in e["message"]
               and e["involvedObject"]["name"] == "web" for e in events), [e["message"] for e in events]
    assert any(e["reason"] == "IPAllocated" and ip in e["message"] for e in events)


def test_a_class_that_is_not_ours_is_left_alone_and_a_requested_address_is_given(lab):
    time.sleep(0.5)
    assert lb_ip(lab, "other-class") is None
    assert "<pending>" in lab.kubectl("get", "svc", "other-class", "-n", NS).stdout
    _, last = lab.cluster.lb_pool
    lab.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: fixed}}
spec:
  type: LoadBalancer
  loadBalancerIP: {last}
  allocateLoadBalancerNodePorts: false
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
""", namespace=NS)
    try:
        assert lab.wait(lambda: lb_ip(lab, "fixed"), what="fixed's address") == last
        assert "nodePort" not in lab.get("service", "fixed", NS)["spec"]["ports"][0]
        # back to ClusterIP: the address goes back to the pool
        lab.kubectl("patch", "svc", "fixed", "-n", NS, "-p", '{"spec": {"type": "ClusterIP"}}')
        lab.wait(lambda: lb_ip(lab, "fixed") is None, what="fixed's address released")
    finally:
        lab.kubectl("delete", "svc", "fixed", "-n", NS, check=False)


def test_another_node_takes_over_when_the_announcing_nodes_link_goes_down(lab):
    ip = lb_ip(lab, "web")
    before = announcer(lab, ip)
    node = lab.cluster.node(before)
    link = node.name[:15]  # its veth on the node network's bridge
    assert link != OUTSIDE_LINK
    net.run(lab.cluster.netns, ["ip", "link", "set", link, "down"])
    t0 = time.monotonic()
    try:
        def answered() -> bool:
            return any(not a.startswith("ERR") for a in from_outside(lab, ip, 3))
        lab.wait(answered, timeout=10, what="the address answering again", interval=0.05)
        took = time.monotonic() - t0
        after = announcer(lab, ip)
        assert after not in (None, before), (before, after)
        # the peers miss it after memberlist's SUSPECT (1.5 s), a new node wins and sends a gratuitous
        # ARP; a probe can still go to a pod behind the downed link (nothing marks it not ready) and wait
        # out its timeout, so the answer comes within a few seconds more
        assert took < 8, f"the address moved after {took:.1f} s"
    finally:
        net.run(lab.cluster.netns, ["ip", "link", "set", link, "up"])
    lab.wait(lambda: all(not a.startswith("ERR") for a in from_outside(lab, ip, 30)), timeout=20,
             what="every pod answering again")


def test_external_traffic_policy_local_keeps_the_client_address_via_a_local_node(lab):
    ip = lb_ip(lab, "solo-local")
    (node, pods), = pods_by_node(lab, "solo").items()
    # the only node with a local endpoint (once back in the memberlist, if a test before took its link down)
    lab.wait(lambda: announcer(lab, ip) == node, timeout=10, what=f"{node} announcing {ip}")
    answers = from_outside(lab, ip, 20, "/clientip")
    assert all(a.startswith(f"{lab.outside_ip}:") for a in answers), answers  # not masqueraded
    # Cluster policy masquerades: the pod sees a node's address
    web = from_outside(lab, lb_ip(lab, "web"), 5, "/clientip")
    assert not any(a.startswith(f"{lab.outside_ip}:") for a in web), web
    # the health-check node port, as kube-proxy serves it on every node
    hc = lab.get("service", "solo-local", NS)["spec"]["healthCheckNodePort"]
    for n in lab.cluster.nodes:
        r = lab.outside_exec(["curl", "-s", "-m", "2", "-w", "\n%{http_code}", f"http://{n.ip}:{hc}/healthz"])
        body, code = r.stdout.rsplit("\n", 1)
        doc = json.loads(body)
        assert doc["service"] == {"namespace": NS, "name": "solo-local"}
        assert (code, doc["localEndpoints"]) == (("200", 1) if n.name == node else ("503", 0)), (n.name, r.stdout)


def test_load_balancer_source_ranges_refuse_other_sources(lab):
    cp = lab.cluster.nodes[0]
    lab.kubectl("patch", "svc", "web", "-n", NS, "-p", json.dumps({"spec": {"loadBalancerSourceRanges": [f"{cp.ip}/32"]}}))
    ip = lb_ip(lab, "web")
    try:
        time.sleep(1.5)
        assert from_outside(lab, ip, 2) == ["ERR TimeoutError"] * 2  # dropped, as KUBE-PROXY-FIREWALL does
        r = lab.node_exec(cp.name, ["curl", "-s", "-m", "2", f"http://{ip}/hostname"])
        assert r.returncode == 0 and r.stdout.startswith("web-"), r
        lab.kubectl("patch", "svc", "web", "-n", NS, "-p", json.dumps(
            {"spec": {"loadBalancerSourceRanges": [f"{cp.ip}/32", f"{lab.outside_ip}/32"]}}))
        lab.wait(lambda: not any(a.startswith("ERR") for a in from_outside(lab, ip, 3)), timeout=5,
                 what="the outside let in")
    finally:
        lab.kubectl("patch", "svc", "web", "-n", NS, "--type=json", "-p",
                    '[{"op": "remove", "path": "/spec/loadBalancerSourceRanges"}]', check=False)


def test_trace_from_outside_shows_arp_the_announcers_rules_and_the_pod(lab):
    from netlab.tools import trace

    ip = lb_ip(lab, "web")
    t = trace.run_outside(lab, ip)
    assert t.answer.startswith("connected; answer: web-"), t
    assert any("Request who-has" in line or "who-has" in line for line in t.arp), t.arp
    assert any("is-at" in line or "Reply" in line for line in t.arp), t.arp
    assert t.announcer == announcer(lab, ip)
    assert t.receiver and t.receiver.startswith(f"pod {NS}/web-"), t.receiver
    rules = [r for h in t.hops if h.node == t.announcer for p in h.packets for r in p["rules"]]
    assert any("dnat to" in r for r in rules), rules
    text = trace.format_trace(t)
    assert f"answered by node {t.announcer}" in text and "received by: pod" in text
