"""NetworkPolicy in a running lab, as upstream's e2e suite checks it (test/e2e/network/netpol):
namespaces x, y, z with pods a, b, c, each serving TCP 80 and 81 on named ports; every pod probes
every other on both ports (all at once, one process per source pod, short timeouts), and the whole
truth table must become what the policies say. The agents on all nodes enforce it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from netlab.kit import net

pytestmark = pytest.mark.lab

NS = {"x": "netpol-x", "y": "netpol-y", "z": "netpol-z"}
PODS = ("a", "b", "c")
PORTS = (80, 81)
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"

# run inside a pod's network namespace: connect to every target at once; a DNS target sends one
# query for kubernetes.default to the cluster DNS; prints the results as JSON
PROBE = r"""
import json, socket, struct, sys
from concurrent.futures import ThreadPoolExecutor
targets, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
def one(t):
    ip, port, proto = t
    try:
        if proto == "dns":
            q = struct.pack(">HHHHHH", 0x4e50, 0x0100, 1, 0, 0, 0)
            q += b"".join(bytes([len(p)]) + p.encode() for p in "kubernetes.default.svc.cluster.local".split("."))
            q += b"\0" + struct.pack(">HH", 1, 1)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.sendto(q, (ip, port))
                return s.recv(512)[:2] == q[:2]
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False
with ThreadPoolExecutor(max(1, len(targets))) as ex:
    print(json.dumps(list(ex.map(one, targets))))
"""


def pod_manifest(ns: str, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS[ns], "labels": {"pod": name}},
            "spec": {"containers": [{"name": f"cont-{p}-tcp", "image": IMAGE,
                                     "args": ["serve-hostname", f"--port={p}"],
                                     "ports": [{"name": f"serve-{p}-tcp", "containerPort": p, "protocol": "TCP"}]}
                                    for p in PORTS]}}


class Model:
    """The pods as probes see them: x/a -> (address, network namespace)."""

    def __init__(self, lab):
        self.lab = lab
        self.pods: dict[str, tuple[str, str]] = {}
        for ns in NS:
            for p in lab.wait_ready("pod", namespace=NS[ns], count=len(PODS), timeout=90):
                self.pods[f"{ns}/{p['metadata']['name']}"] = (p["status"]["podIP"], lab.pod_netns(p, NS[ns]))

    def keys(self) -> list[str]:
        return sorted(self.pods)

    def probe(self, targets_of: Callable[[str], list[tuple[str, int, str]]], timeout: float = 1.0
              ) -> dict[str, list[bool]]:
        """Each source's targets, probed by one process per source, all sources at once."""
        procs = {src: net.popen(self.pods[src][1], [sys.executable, "-c", PROBE, json.dumps(targets_of(src)),
                                                     str(timeout)], stdout=subprocess.PIPE, text=True)
                 for src in self.keys()}
        out = {}
        for src, p in procs.items():
            stdout, _ = p.communicate(timeout=30)
            out[src] = json.loads(stdout)
        return out

    def table(self) -> dict[tuple[str, str, int], bool]:
        """Every pod to every other pod, on each port."""
        pairs = {src: [(dst, port) for dst in self.keys() if dst != src for port in PORTS] for src in self.keys()}
        got = self.probe(lambda src: [(self.pods[d][0], port, "tcp") for d, port in pairs[src]])
        return {(src, d, port): ok for src in self.keys() for (d, port), ok in zip(pairs[src], got[src], strict=True)}


def grid(m: Model, table: dict, port: int) -> str:
    keys = m.keys()
    rows = ["     " + " ".join(k.replace("/", "") for k in keys)]
    for s in keys:
        rows.append(f"{s.replace('/', ''):4} " + " ".join(" - " if s == d else (" . " if table[(s, d, port)] else " X ")
                                                         for d in keys))
    return "\n".join(rows)


def converge(m: Model, allowed: Callable[[str, str, int], bool], timeout: float = 20) -> None:
    """Probe until the truth table is what `allowed(src, dst, port)` says (the agents program
    within a fraction of a second, but e2e too polls), or fail showing both tables."""
    want = {(s, d, p): bool(allowed(s, d, p)) for s in m.keys() for d in m.keys() if s != d for p in PORTS}
    deadline = time.monotonic() + timeout
    while True:
        got = m.table()
        if got == want:
            return
        if time.monotonic() > deadline:
            wrong = sorted(k for k in want if want[k] != got[k])
            pytest.fail(f"{len(wrong)} probes differ, e.g. {wrong[:6]}\n"
                        + "\n".join(f"port {p}: expected (. allowed, X dropped)\n{grid(m, want, p)}\nobserved\n"
                                    f"{grid(m, got, p)}" for p in PORTS))


def as_list(docs) -> str:
    """kubectl's input, each document as JSON (in kubectl's YAML a bare label value `y` is true)."""
    return "\n".join(json.dumps(d) for d in docs)


def ns_of(key: str) -> str:
    return key.split("/")[0]


@pytest.fixture(scope="module")
def model(netlab_lab):
    lab = netlab_lab
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS[ns], "labels": {"ns": ns}}} for ns in NS]
    docs += [pod_manifest(ns, p) for ns in NS for p in PODS]
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": NS["x"]},
                 "spec": {"selector": {"pod": "a"}, "ports": [{"port": 80, "targetPort": "serve-80-tcp"}]}})
    lab.kubectl("apply", "-f", "-", input=as_list(docs))
    try:
        m = Model(lab)
        converge(m, lambda s, d, p: True)  # no policy: everything flows
        yield m
    finally:
        lab.kubectl("delete", "namespace", *NS.values(), "--wait=false", check=False)


@pytest.fixture
def policies(netlab_lab, model):
    """Apply policies (YAML documents); they are deleted after the test, and labels put back."""
    def apply(*docs: dict) -> None:
        netlab_lab.kubectl("apply", "-f", "-", input=as_list(docs))
    yield apply
    for ns in NS.values():
        netlab_lab.kubectl("delete", "networkpolicy", "--all", "-n", ns, check=False)
    netlab_lab.kubectl("label", "pod", "b", "-n", NS["x"], "deny-", check=False)


def np(ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NS[ns]}, "spec": spec}


def ns_peer(ns: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"ns": ns}}}


def pod_peer(pod: str) -> dict:
    return {"podSelector": {"matchLabels": {"pod": pod}}}


A = {"matchLabels": {"pod": "a"}}


def test_default_deny_ingress(model, policies, netlab_lab):
    policies(np("x", "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    converge(model, lambda s, d, p: ns_of(d) != "x")
    out = netlab_lab.kubectl("get", "networkpolicy", "-n", NS["x"]).stdout.split()
    assert out[:4] == ["NAME", "POD-SELECTOR", "AGE", "deny-ingress"] and out[4] == "<none>"


def test_default_deny_egress(model, policies):
    policies(np("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]}))
    converge(model, lambda s, d, p: ns_of(s) != "x")


def test_allow_from_same_namespace(model, policies):
    policies(np("x", "same-ns", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}))
    converge(model, lambda s, d, p: ns_of(d) != "x" or ns_of(s) == "x")


def test_allow_from_a_namespace_by_label_also_through_a_service(model, policies, netlab_lab):
    policies(np("x", "from-y", {"podSelector": A, "ingress": [{"from": [ns_peer("y")]}]}))
    converge(model, lambda s, d, p: d != "x/a" or ns_of(s) == "y")
    # the Service in front of x/a: judged after kube-proxy's DNAT, as the pod itself
    vip = netlab_lab.get("services", "a", NS["x"])["spec"]["clusterIP"]
    got = model.probe(lambda src: [(vip, 80, "tcp")])
    assert {s: ok[0] for s, ok in got.items() if s != "x/a"} == {s: ns_of(s) == "y" for s in model.keys() if s != "x/a"}


def test_pod_and_namespace_selector_in_one_peer_is_and(model, policies):
    policies(np("x", "and", {"podSelector": A, "ingress": [{"from": [{**ns_peer("y"), **pod_peer("b")}]}]}))
    converge(model, lambda s, d, p: d != "x/a" or s == "y/b")


def test_pod_and_namespace_selector_in_two_peers_is_or(model, policies):
    policies(np("x", "or", {"podSelector": A, "ingress": [{"from": [ns_peer("y"), pod_peer("b")]}]}))
    converge(model, lambda s, d, p: d != "x/a" or ns_of(s) == "y" or s == "x/b")


def test_named_port(model, policies):
    policies(np("x", "named", {"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}))
    converge(model, lambda s, d, p: ns_of(d) != "x" or p == 81)


def test_end_port(model, policies):
    policies(np("x", "range", {"podSelector": {}, "ingress": [{"ports": [{"port": 79, "endPort": 80}]}]}))
    converge(model, lambda s, d, p: ns_of(d) != "x" or p == 80)


def test_ip_block_with_except(model, policies, netlab_lab):
    yb = model.pods["y/b"][0]
    policies(np("x", "block", {"podSelector": A, "ingress": [{"from": [
        {"ipBlock": {"cidr": netlab_lab.cluster.pod_subnet, "except": [f"{yb}/32"]}}]}]}))
    converge(model, lambda s, d, p: d != "x/a" or s != "y/b")


def test_egress_to_dns_only(model, policies, netlab_lab):
    policies(np("x", "dns-only", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [
        {"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}))
    converge(model, lambda s, d, p: ns_of(s) != "x")
    dns = netlab_lab.cluster.dns_service_ip
    got = model.probe(lambda src: [(dns, 53, "dns")])
    assert all(ok == [True] for ok in got.values()), got  # x's pods still resolve names


def test_multiple_policies_are_unioned(model, policies):
    policies(np("x", "from-y", {"podSelector": A, "ingress": [{"from": [ns_peer("y")]}]}),
             np("x", "from-z", {"podSelector": A, "ingress": [{"from": [ns_peer("z")]}]}))
    converge(model, lambda s, d, p: d != "x/a" or ns_of(s) in ("y", "z"))


def test_a_pod_whose_labels_change_enters_a_policy(model, policies, netlab_lab):
    policies(np("x", "deny-marked", {"podSelector": {"matchLabels": {"deny": "yes"}}, "policyTypes": ["Ingress"]}))
    converge(model, lambda s, d, p: True)
    netlab_lab.kubectl("label", "pod", "b", "-n", NS["x"], "deny=yes")
    converge(model, lambda s, d, p: d != "x/b")
    netlab_lab.kubectl("label", "pod", "b", "-n", NS["x"], "deny-")
    converge(model, lambda s, d, p: True)
