"""NetworkPolicy in a running lab, as upstream's e2e suite checks it (test/e2e/network/netpol):
namespaces x, y, z with pods a, b, c, each serving TCP 80 and 81 on named ports; every pod probes
every other on both ports (all at once, one process per source pod, short timeouts), and the whole
truth table must become what the policies say. The agents on all nodes enforce it.

The module runs twice, once per kube-proxy mode that DNATs in netfilter (iptables: the session
lab; nftables: a lab of its own, up for this module only), so a Service's traffic is judged after
either mode's DNAT. The pods alternate between the two workers, so every case has pairs within
one node (the bridge) and across nodes (the node network)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from netlab.kit import net
from netlab.tools.testing import Lab

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


def pod_manifest(ns: str, name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS[ns], "labels": {"pod": name}},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                     "containers": [{"name": f"cont-{p}-tcp", "image": IMAGE,
                                     "args": ["serve-hostname", f"--port={p}"],
                                     "ports": [{"name": f"serve-{p}-tcp", "containerPort": p, "protocol": "TCP"}]}
                                    for p in PORTS]}}


class Model:
    """The pods as probes see them: x/a -> (address, network namespace)."""

    def __init__(self, lab):
        self.lab = lab
        self.pods: dict[str, tuple[str, str]] = {}
        self.nodes: dict[str, str] = {}
        for ns in NS:
            for p in lab.wait_ready("pod", namespace=NS[ns], count=len(PODS), timeout=90):
                self.pods[f"{ns}/{p['metadata']['name']}"] = (p["status"]["podIP"], lab.pod_netns(p, NS[ns]))
                self.nodes[f"{ns}/{p['metadata']['name']}"] = p["spec"]["nodeName"]

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


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request):
    """The session lab (iptables mode), or a lab in nftables mode for this module's tests."""
    if request.param == "iptables":
        yield request.getfixturevalue("netlab_lab")
        return
    with Lab("nltnpnft", nodes=3, proxyMode="nftables") as lab:
        yield lab


@pytest.fixture(scope="module")
def model(lab):
    workers = [n.name for n in lab.cluster.nodes if n.role == "worker"]
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS[ns], "labels": {"ns": ns}}} for ns in NS]
    docs += [pod_manifest(ns, p, workers[(3 * i + j) % len(workers)])
             for i, ns in enumerate(NS) for j, p in enumerate(PODS)]
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": NS["x"]},
                 "spec": {"selector": {"pod": "a"}, "ports": [{"port": 80, "targetPort": "serve-80-tcp"}]}})
    lab.kubectl("apply", "-f", "-", input=as_list(docs))
    try:
        m = Model(lab)
        # every case crosses nodes and stays within one: the pairs land on both kinds of path
        pairs = [(s, d) for s in m.keys() for d in m.keys() if s != d]
        assert {m.nodes[s] == m.nodes[d] for s, d in pairs} == {True, False}, m.nodes
        converge(m, lambda s, d, p: True)  # no policy: everything flows
        yield m
    finally:
        lab.kubectl("delete", "namespace", *NS.values(), "--wait=false", check=False)


@pytest.fixture
def policies(lab, model):
    """Apply policies (YAML documents); they are deleted after the test, and labels put back."""
    def apply(*docs: dict) -> None:
        lab.kubectl("apply", "-f", "-", input=as_list(docs))
    yield apply
    for ns in NS.values():
        lab.kubectl("delete", "networkpolicy", "--all", "-n", ns, check=False)
    lab.kubectl("label", "pod", "b", "-n", NS["x"], "deny-", check=False)


def np(ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NS[ns]}, "spec": spec}


def ns_peer(ns: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"ns": ns}}}


def pod_peer(pod: str) -> dict:
    return {"podSelector": {"matchLabels": {"pod": pod}}}


A = {"matchLabels": {"pod": "a"}}


def test_default_deny_ingress(model, policies, lab):
    policies(np("x", "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    converge(model, lambda s, d, p: ns_of(d) != "x")
    out = lab.kubectl("get", "networkpolicy", "-n", NS["x"]).stdout.split()
    assert out[:4] == ["NAME", "POD-SELECTOR", "AGE", "deny-ingress"] and out[4] == "<none>"


def test_default_deny_egress(model, policies):
    policies(np("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]}))
    converge(model, lambda s, d, p: ns_of(s) != "x")


def test_allow_from_same_namespace(model, policies):
    policies(np("x", "same-ns", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}))
    converge(model, lambda s, d, p: ns_of(d) != "x" or ns_of(s) == "x")


def test_allow_from_a_namespace_by_label_also_through_a_service(model, policies, lab):
    policies(np("x", "from-y", {"podSelector": A, "ingress": [{"from": [ns_peer("y")]}]}))
    converge(model, lambda s, d, p: d != "x/a" or ns_of(s) == "y")
    # the Service in front of x/a: judged after kube-proxy's DNAT, as the pod itself
    vip = lab.get("services", "a", NS["x"])["spec"]["clusterIP"]
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


def test_ip_block_with_except(model, policies, lab):
    yb = model.pods["y/b"][0]
    policies(np("x", "block", {"podSelector": A, "ingress": [{"from": [
        {"ipBlock": {"cidr": lab.cluster.pod_subnet, "except": [f"{yb}/32"]}}]}]}))
    converge(model, lambda s, d, p: d != "x/a" or s != "y/b")


def test_egress_to_dns_only(model, policies, lab):
    policies(np("x", "dns-only", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [
        {"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}))
    converge(model, lambda s, d, p: ns_of(s) != "x")
    dns = lab.cluster.dns_service_ip
    got = model.probe(lambda src: [(dns, 53, "dns")])
    assert all(ok == [True] for ok in got.values()), got  # x's pods still resolve names


def test_multiple_policies_are_unioned(model, policies):
    policies(np("x", "from-y", {"podSelector": A, "ingress": [{"from": [ns_peer("y")]}]}),
             np("x", "from-z", {"podSelector": A, "ingress": [{"from": [ns_peer("z")]}]}))
    converge(model, lambda s, d, p: d != "x/a" or ns_of(s) in ("y", "z"))


def test_a_pod_whose_labels_change_enters_a_policy(model, policies, lab):
    policies(np("x", "deny-marked", {"podSelector": {"matchLabels": {"deny": "yes"}}, "policyTypes": ["Ingress"]}))
    converge(model, lambda s, d, p: True)
    lab.kubectl("label", "pod", "b", "-n", NS["x"], "deny=yes")
    converge(model, lambda s, d, p: d != "x/b")
    lab.kubectl("label", "pod", "b", "-n", NS["x"], "deny-")
    converge(model, lambda s, d, p: True)


def test_policies_on_both_ends_must_both_allow(model, policies):
    """x/a may send only to namespace y; y's pods take only x/a, on port 80: a connection needs
    the source's egress and the destination's ingress."""
    policies(np("x", "a-to-y", {"podSelector": A, "policyTypes": ["Egress"], "egress": [{"to": [ns_peer("y")]}]}),
             np("y", "from-x-a", {"podSelector": {}, "ingress": [{"from": [{**ns_peer("x"), **pod_peer("a")}],
                                                                   "ports": [{"port": 80}]}]}))
    converge(model, lambda s, d, p: (s != "x/a" or ns_of(d) == "y") and (ns_of(d) != "y" or (s == "x/a" and p == 80)))


# held open inside a pod: one HTTP/1.1 keep-alive connection; each line on stdin asks once more
HELD = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
print("connected", flush=True)
for line in sys.stdin:
    try:
        s.sendall(b"GET /hostname HTTP/1.1\r\nHost: x\r\n\r\n")
        print("ok" if s.recv(4096).startswith(b"HTTP/1.1 200") else "ERR", flush=True)
    except OSError:
        print("ERR", flush=True)
"""


def test_a_policy_added_and_removed_while_a_connection_is_open(model, policies, lab):
    """The connection y/b -> x/a (one across nodes or not, as the model places them) stays up
    while a policy that allows it comes and goes; new connections meet each policy at once."""
    xa = model.pods["x/a"][0]
    held = net.popen(model.pods["y/b"][1], [sys.executable, "-c", HELD, xa, "80"], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout.readline().strip() == "connected"

        def ask() -> str:
            held.stdin.write("again\n")
            held.stdin.flush()
            return held.stdout.readline().strip()
        assert ask() == "ok"
        policies(np("x", "from-y", {"podSelector": A, "ingress": [{"from": [ns_peer("y")]}]}))
        converge(model, lambda s, d, p: d != "x/a" or ns_of(s) == "y")
        assert ask() == "ok"  # allowed before and after: it never stopped
        lab.kubectl("delete", "networkpolicy", "from-y", "-n", NS["x"])
        converge(model, lambda s, d, p: True)
        assert ask() == "ok"
    finally:
        held.kill()
        held.wait()


def netlab_cli(lab, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "netlab.tools.cli", *args, "--name", lab.name], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_trace_names_the_verdict_and_rules_show_the_policy(model, policies, lab):
    """`netlab trace` from y/b and z/c to x/a (different nodes from one of them at least) names
    the allowing policy and rule, and the default deny that drops; `netlab rules --policy` shows
    the same policy from the kernel, with the counters the probes moved."""
    policies(np("x", "from-y", {"podSelector": A, "ingress": [{"from": [ns_peer("y")], "ports": [{"port": 80}]}]}))
    converge(model, lambda s, d, p: d != "x/a" or (ns_of(s) == "y" and p == 80))
    node = model.nodes["x/a"]
    out = netlab_cli(lab, "trace", "b", "x/a".replace("x/", NS["x"] + "/") + ":80", "-n", NS["y"])
    assert (f"ingress of pod {NS['x']}/a on node {node}: allowed by NetworkPolicy {NS['x']}/from-y rule 0 from[0] "
            f"namespaceSelector ns=y, ports TCP/80 [chain ingress-{NS['x']}/from-y]") in out, out
    assert f"egress of pod {NS['y']}/b: allowed, not isolated" in out, out
    out = netlab_cli(lab, "trace", "c", f"{NS['x']}/a:80", "-n", NS["z"])
    assert (f"ingress of pod {NS['x']}/a on node {node}: DROPPED by the default deny of NetworkPolicy "
            f"{NS['x']}/from-y: no rule of theirs allows it [chain pod-ingress-{NS['x']}/a]") in out, out
    print(out)
    out = netlab_cli(lab, "rules", "--policy", f"{NS['x']}/from-y")
    print(out)
    lines = out.splitlines()
    assert lines[:2] == [f"node {node}", f"NetworkPolicy {NS['x']}/from-y  ingress  chain ingress-{NS['x']}/from-y"]
    drops = int(lines[2].split("): ")[1].split()[0])
    assert lines[2].startswith(f"  selects pod {NS['x']}/a ({model.pods['x/a'][0]}): ") and drops >= 1, out
    ys = sorted((model.pods[f"y/{p}"][0] for p in PODS), key=lambda a: tuple(map(int, a.split("."))))
    assert lines[4] == f"    from[0] namespaceSelector ns=y: {', '.join(ys)}", out
    assert lines[5].split()[:2] == ["ports", "TCP/80"] and int(lines[5].split()[2]) >= 1, out
    # the annotation asks for the drops to be logged too: the agent puts a log before x/a's drop
    lab.kubectl("annotate", "networkpolicy", "from-y", "-n", NS["x"], "netpol.netlab.io/log-drops=true")
    chain = ["nft", "list", "chain", "inet", "netlab-netpol", f"pod-ingress-{NS['x']}/a"]
    lab.wait(lambda: f'log prefix "netpol drop ingress {NS["x"]}/a: " drop' in lab.node_exec(node, chain).stdout,
             timeout=10, what="the drop logged")


# The Kubernetes docs' tutorial "Declare Network Policy" (tasks/administer-cluster/declare-network-policy),
# its commands as written, in a namespace of its own
ACCESS_NGINX = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "access-nginx"},
                "spec": {"podSelector": {"matchLabels": {"app": "nginx"}},
                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "true"}}}]}]}}


def test_declare_network_policy_tutorial(lab, model):
    ns = "netpol-declare"
    k = lambda *a, **kw: lab.kubectl("-n", ns, *a, **kw)  # noqa: E731
    lab.kubectl("create", "namespace", ns)
    try:
        k("create", "deployment", "nginx", "--image=nginx")
        k("expose", "deployment", "nginx", "--port=80")
        lab.wait_ready("app=nginx", namespace=ns, count=1, timeout=60)

        def busybox(*labels: str) -> tuple[str, str]:
            """The tutorial's `wget --spider --timeout=1 nginx` in a busybox pod (run to its end
            rather than from an interactive shell): the pod's phase and its output."""
            # (--tries=2: netlab's busybox runs the host's GNU wget, which would try 20 times; and
            # run at once rather than typed into a shell, the new pod's first SYN can come before
            # its address is in the policy's peer set, as with any agent that learns addresses
            # from the API, so one try more)
            k("run", "busybox", "--restart=Never", "--image=busybox:1.28", *labels, "--",
              "wget", "--spider", "--timeout=1", "--tries=2", "nginx")
            try:
                phase = lab.wait(lambda: (lab.get("pod", "busybox", ns).get("status") or {}).get("phase")
                                 in ("Succeeded", "Failed") and lab.get("pod", "busybox", ns)["status"]["phase"],
                                 timeout=30, what="busybox ran wget")
                return phase, k("logs", "busybox").stdout
            finally:
                k("delete", "pod", "busybox", "--grace-period=0", "--force", check=False)
                lab.wait(lambda: not any(p["metadata"]["name"] == "busybox" for p in lab.items("pods", ns)),
                         timeout=30, what="busybox gone")
        assert busybox()[0] == "Succeeded"  # before any policy: nginx answers
        k("apply", "-f", "-", input=json.dumps(ACCESS_NGINX))
        deadline = time.monotonic() + 20
        while (got := busybox())[0] == "Succeeded" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert got[0] == "Failed" and "timed out" in got[1], got  # the pod without access=true
        assert busybox("--labels=access=true")[0] == "Succeeded", "the pod with access=true"
    finally:
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)
