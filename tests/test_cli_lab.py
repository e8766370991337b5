"""The `netlab` commands a learner uses on a running lab: apply, get, delete, rules, capture,
and the demo of `netlab up --demo`."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.lab


def netlab(lab, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "netlab.tools.cli", *args, "--name", lab.name], input=input,
                       capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return r


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nlt-cli}\ndata: {greeting: hello}\n"


def test_apply_get_delete(netlab_lab):
    assert netlab(netlab_lab, "apply", "-f", "-", input=CM).stdout == "configmap/nlt-cli created\n"
    assert netlab(netlab_lab, "apply", "-f", "-", input=CM).stdout == "configmap/nlt-cli unchanged\n"
    changed = CM.replace("hello", "bonjour")
    assert netlab(netlab_lab, "apply", "-f", "-", input=changed).stdout == "configmap/nlt-cli configured\n"
    out = netlab(netlab_lab, "get", "cm", "nlt-cli").stdout.splitlines()
    assert out[0].split() == ["NAME", "DATA", "AGE"] and out[1].split()[:2] == ["nlt-cli", "1"]
    assert "greeting: bonjour" in netlab(netlab_lab, "get", "configmap", "nlt-cli", "-o", "yaml").stdout
    assert netlab(netlab_lab, "delete", "cm", "nlt-cli").stdout == 'configmap "nlt-cli" deleted\n'
    r = netlab(netlab_lab, "get", "cm", "nlt-cli", check=False)
    assert r.returncode == 1 and r.stderr == 'Error from server (NotFound): configmaps "nlt-cli" not found\n'
    # the system pods with kubectl's columns, across namespaces
    out = netlab(netlab_lab, "get", "pods", "-A", "-o", "wide").stdout
    assert out.splitlines()[0].split()[:4] == ["NAMESPACE", "NAME", "READY", "STATUS"] and "coredns-" in out


def test_bad_manifest_is_one_clear_line(netlab_lab):
    r = netlab(netlab_lab, "apply", "-f", "-", input="apiVersion: v1\nkind: Frobnicator\nmetadata: {name: x}\n",
               check=False)
    assert r.returncode == 1 and r.stderr.startswith("netlab: kind 'Frobnicator' is not served by netlab")
    r = netlab(netlab_lab, "apply", "-f", "-", check=False,
               input="apiVersion: v1\nkind: Service\nmetadata: {name: nlt-bad}\nspec: {ports: [{port: 99999}]}\n")
    assert r.returncode == 1 and "spec.ports[0].port" in r.stderr and r.stderr.count("\n") == 1


def test_rules_show_the_kube_proxy_chains(netlab_lab):
    node = netlab_lab.cluster.nodes[1].name
    out = netlab(netlab_lab, "rules", "--raw", "--node", node).stdout
    assert "*nat" in out and "-A KUBE-SERVICES" in out and "default/kubernetes:https cluster IP" in out
    assert all("KUBE-" in ln or ln.startswith(("*", "COMMIT")) for ln in out.splitlines())


def test_rules_grouped_by_service(netlab_lab):
    lab = netlab_lab
    lab.apply(MANY)
    try:
        pods = {p["status"]["podIP"] for p in lab.wait_ready("app=nlt-rules", count=4)}
        ip = lab.get("service", "nlt-rules")["spec"]["clusterIP"]

        def grouped():
            out = netlab(lab, "rules", "--service", "default/nlt-rules").stdout.splitlines()
            return out if len(out) == 6 else None  # header, the Service, its 4 endpoints
        out = lab.wait(grouped, what="the Service's rules")
        assert out[1].startswith(f"default/nlt-rules:http  {ip}:80/tcp (cluster IP)  -> KUBE-SVC-")
        assert sorted(ln.split()[1].split(":")[0] for ln in out[2:]) == sorted(pods)
        assert all(ln.split()[0] == "25%" for ln in out[2:])
    finally:
        lab.kubectl("delete", "-f", "-", "--wait=false", input=MANY)


MANY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nlt-rules}
spec:
  replicas: 4
  selector: {matchLabels: {app: nlt-rules}}
  template:
    metadata: {labels: {app: nlt-rules}}
    spec:
      containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: nlt-rules}
spec:
  selector: {app: nlt-rules}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


def test_trace_shows_the_dnat_choice_and_the_receiving_pod(netlab_lab):
    lab = netlab_lab
    app = MANY.replace("nlt-rules", "nlt-trace") + "---\n" + TRACE_CLIENT  # its own names: no leftovers
    lab.apply(app)
    try:
        lab.wait_ready("app=nlt-trace", count=4)
        lab.wait_ready("app=nlt-trace-client", count=1)
        lab.wait(lambda: len(netlab(lab, "rules", "--service", "default/nlt-trace").stdout.splitlines()) == 6,
                 what="the Service's rules")
        out = netlab(lab, "trace", "nlt-trace-client", "nlt-trace").stdout
        assert out.startswith("probe: pod default/nlt-trace-client") and "connected; answer: nlt-trace-" in out, out
        assert "nat KUBE-SERVICES:" in out and "jump KUBE-SVC-" in out and "dnat to 10." in out, out
        receiver = re.search(r"received by: pod default/(nlt-trace-\S+) on", out).group(1)
        assert f"answer: {receiver}" in out  # the pod the kernel chose is the one that answered
    finally:
        lab.kubectl("delete", "-f", "-", "--wait=false", input=app)


TRACE_CLIENT = """
apiVersion: v1
kind: Pod
metadata: {name: nlt-trace-client, labels: {app: nlt-trace-client}}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
"""


def test_topology_table_and_picture(netlab_lab, tmp_path):
    out = netlab(netlab_lab, "topology", "-o", str(tmp_path / "lab.svg")).stdout
    cp = netlab_lab.cluster.nodes[0]
    assert any(ln.split()[:3] == [cp.name, "eth0", f"{cp.ip}/24"] for ln in out.splitlines())
    assert "pod kube-system/coredns-" in out and f"{cp.gateway}/24" in out
    svg = html.unescape((tmp_path / "lab.svg").read_text())
    assert svg.startswith("<?xml") and "br-nodes" in svg and "coredns-" in svg


def test_capture_in_a_node(netlab_lab):
    node, other = netlab_lab.cluster.nodes[1], netlab_lab.cluster.nodes[2]
    cap = subprocess.Popen([sys.executable, "-m", "netlab.tools.cli", "capture", "--name", netlab_lab.name, "-c", "1",
                            node.name, "icmp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        netlab_lab.node_exec(other.name, ["ping", "-c", "3", "-i", "0.2", node.ip])
        out, _ = cap.communicate(timeout=10)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    assert f"IP {other.ip} > {node.ip}: ICMP echo request" in out


def test_demo_calls_web_by_name(netlab_lab):
    from netlab.tools import demo

    try:
        assert demo.run(netlab_lab.cluster, requests=3) == 0
        web = {p["metadata"]["name"] for p in netlab_lab.items("pods", selector="app=web")}
        out = netlab_lab.exec("client", ["wget", "-qO-", "-T", "3", "http://web/hostname"]).stdout.strip()
        assert out in web
    finally:
        netlab_lab.kubectl("delete", "-f", str(demo.WEB), "--ignore-not-found", "--wait=false")
        netlab_lab.kubectl("delete", "pod", "client", "--ignore-not-found", "--wait=false")
