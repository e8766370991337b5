"""A cluster over machines (`netlab init` on one, `netlab join` on another), with two network
namespaces standing in for two VMs on one network: the control plane and the joined node's
kubelet, kube-proxy and CNI agent run in each "machine's" own namespace, as they would in each
VM of vagrant/'s multi-VM cluster, which this follows: its cluster file, etcd (Debian's) on
the first machine's loopback as the store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from netlab.kit import net
from netlab.kit.cluster import state_dir
from netlab.kit.layout import Layout

pytestmark = pytest.mark.lab

VM1, VM2 = "nltvm1", "nltvm2"
IP1, IP2 = "192.168.56.10", "192.168.56.11"
NETLAB = [sys.executable, "-m", "netlab.tools.cli"]
CLUSTER_FILE = Path(__file__).resolve().parent.parent / "vagrant" / "cluster-vms.yaml"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"
MANIFEST = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: vm1}}
      containers: [{{name: agnhost, image: {AGNHOST}, args: [netexec, --http-port=8080]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, labels: {{app: client}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: vm2}}
  containers: [{{name: agnhost, image: {AGNHOST}, args: [pause]}}]
"""


def on(machine: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    """A command run on one "machine" (in its namespace)."""
    if "input" not in kw:
        kw["stdin"] = subprocess.DEVNULL
    return net.run(machine, argv, check=False, timeout=120, **kw)


def kubectl(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return on(VM1, ["kubectl", "--kubeconfig", str(Layout("nltcp").kubeconfig), *args], input=input)


@pytest.fixture
def machines():
    """Two "machines" on 192.168.56.0/24, with no route anywhere else; whatever netlab made on
    them is taken down, then they go. The first runs etcd on its loopback, as the control-plane VM does."""
    for ns in (VM1, VM2):
        net.ns_create(ns)
    data = tempfile.mkdtemp(prefix="nlt-etcd-")
    etcd = None
    try:
        net.veth(VM1, "eth1", VM2, "eth1")
        net.addr_add(VM1, "eth1", f"{IP1}/24")
        net.addr_add(VM2, "eth1", f"{IP2}/24")
        net.link_up(VM1, "lo")
        etcd = net.popen(VM1, ["etcd", "--data-dir", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 20
        while on(VM1, ["curl", "-sf", "http://127.0.0.1:2379/health"]).returncode != 0:
            assert time.monotonic() < end and etcd.poll() is None, "etcd did not start"
            time.sleep(0.1)
        yield
    finally:
        for machine, name in ((VM2, "nltw1"), (VM1, "nltcp")):
            if state_dir(name).exists():
                on(machine, [*NETLAB, "down", "--name", name])
        if etcd:
            etcd.kill()
            etcd.wait()
        for ns in (VM1, VM2):
            net.kill_ns_processes(ns)
            net.ns_delete(ns)
        shutil.rmtree(data, ignore_errors=True)


def pod_exec(pod: str, argv: list[str]) -> subprocess.CompletedProcess:
    """Like `kubectl exec`: in the container's network, hostname and /etc (the node's state has its pid)."""
    p = json.loads(kubectl("get", "pod", pod, "-o", "json").stdout)
    lab_of = {"vm1": "nltcp", "vm2": "nltw1"}[p["spec"]["nodeName"]]
    st = json.loads(Layout(lab_of).node(p["spec"]["nodeName"]).pod(p["metadata"]["uid"]).state.read_text())
    pid = st["containers"][p["spec"]["containers"][0]["name"]]["proc"]["pid"]
    return subprocess.run(["nsenter", f"--target={pid}", "--net", "--uts", "--mount", "--", *argv],
                          capture_output=True, text=True, timeout=30)


def kube_chains(machine: str) -> list[str]:
    return [ln for tool in ("iptables-legacy-save", "iptables-nft-save")
            for ln in on(machine, [tool]).stdout.splitlines() if ln.startswith(":KUBE-")]


def test_join_makes_a_second_machine_a_node_whose_pods_reach_the_first(machines):
    r = on(VM1, [*NETLAB, "init", "--name", "nltcp", "--node-name", "vm1", "--config", str(CLUSTER_FILE)])
    assert r.returncode == 0, r.stderr
    join = next(ln.split() for ln in r.stdout.splitlines() if ln.strip().startswith("netlab join"))
    assert join[2] == f"{IP1}:6443" and "--discovery-token-ca-cert-hash" in join
    args = join[2:] + ["--name", "nltw1", "--node-name", "vm2"]
    assert " ".join(join) in on(VM1, [*NETLAB, "status", "--name", "nltcp"]).stdout  # there to look up later

    # a CA that is not the one the hash names: refused, and nothing made on the machine
    bad = [a if not a.startswith("sha256:") else "sha256:" + "0" * 64 for a in args]
    r = on(VM2, [*NETLAB, "join", *bad])
    assert r.returncode == 1 and "--discovery-token-ca-cert-hash" in r.stderr and "sha256:" in r.stderr, r.stderr
    assert not state_dir("nltw1").exists() and not net.link_exists(VM2, "cni0")
    r = on(VM2, [*NETLAB, "join", *[a if a != join[4] else "aaaaaa.bbbbbbbbbbbbbbbb" for a in args]])
    assert r.returncode == 1 and "refused --token" in r.stderr, r.stderr

    r = on(VM2, [*NETLAB, "join", *args])
    assert r.returncode == 0, r.stderr
    assert "node vm2 (192.168.56.11, pods 10.244.1.0/24) joined" in r.stdout

    # the node IPAM controller gave it the next /24; each machine routes the other's pods
    nodes = {n["metadata"]["name"]: n for n in json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]}
    assert nodes["vm2"]["spec"]["podCIDR"] == "10.244.1.0/24"
    assert {"type": "InternalIP", "address": IP2} in nodes["vm2"]["status"]["addresses"]
    for machine, cidr, via in ((VM1, "10.244.1.0/24", IP2), (VM2, "10.244.0.0/24", IP1)):
        assert any(r["dst"] == cidr and r["via"] == via for r in net.route_list(machine)), machine
    topology = on(VM2, [*NETLAB, "topology", "--name", "nltw1"]).stdout
    assert "vm2    eth1   192.168.56.11/24   this machine's network" in topology, topology

    assert kubectl("apply", "-f", "-", input=MANIFEST).returncode == 0
    for selector, ns in (("app in (web,client)", "default"), ("k8s-app=kube-dns", "kube-system")):
        r = kubectl("wait", "-n", ns, "--for=condition=Ready", "pod", "-l", selector, "--timeout=60s")
        assert r.returncode == 0, r.stderr
    web = json.loads(kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"][0]
    assert web["spec"]["nodeName"] == "vm1" and web["status"]["podIP"].startswith("10.244.0.")
    # from the joined machine's pod: by pod IP across machines, and by name through the Service
    # (the name answered by CoreDNS on the first machine, the ClusterIP by the joined node's kube-proxy)
    r = pod_exec("client", ["curl", "-s", "--max-time", "5", f"http://{web['status']['podIP']}:8080/hostname"])
    assert r.stdout == web["metadata"]["name"], r.stderr
    r = pod_exec("client", ["curl", "-s", "--max-time", "5", "http://web/clientip"])
    assert r.returncode == 0 and r.stdout.startswith("10.244.1."), r.stderr  # the pod's own address, not NATed
    # kubectl logs and exec for the pod on the joined machine: the API server asks its kubelet (:10250)
    assert kubectl("logs", "client").stdout == "Paused\n"
    r = kubectl("exec", "client", "--", "hostname")
    assert r.returncode == 0 and r.stdout == "client\n", r.stderr
    r = kubectl("exec", "-i", "client", "--", "cat", input="from vm1\n")
    assert r.returncode == 0 and r.stdout == "from vm1\n", r.stderr

    # `down` must run on the machine that was made a node, and then undoes what netlab made there
    r = subprocess.run([*NETLAB, "down", "--name", "nltw1"], capture_output=True, text=True)
    assert r.returncode == 1 and "another network namespace" in r.stderr
    assert kube_chains(VM2)
    assert on(VM2, [*NETLAB, "down", "--name", "nltw1"]).returncode == 0
    assert not net.link_exists(VM2, "cni0") and not kube_chains(VM2)
    assert [r["dst"] for r in net.route_list(VM2)] == ["192.168.56.0/24"]
    assert not net.ns_pids(VM2) and not state_dir("nltw1").exists()


def test_join_errors_name_the_flag(machines):
    r = on(VM2, [*NETLAB, "join", f"{IP1}:6443", "--token", "not-a-token", "--name", "nltw1",
                 "--discovery-token-unsafe-skip-ca-verification"])
    assert r.returncode == 1 and "--token" in r.stderr and "abcdef.0123456789abcdef" in r.stderr, r.stderr
    r = on(VM2, [*NETLAB, "join", f"{IP1}:6443", "--token", "abcdef.0123456789abcdef", "--name", "nltw1"])
    assert r.returncode == 1 and "--discovery-token-ca-cert-hash: required" in r.stderr, r.stderr
    r = on(VM2, [*NETLAB, "join", f"{IP1}:6443", "--token", "abcdef.0123456789abcdef", "--name", "nltw1",
                 "--discovery-token-unsafe-skip-ca-verification", "--discovery-timeout", "1"])
    assert r.returncode == 1 and f"cannot reach the API server at https://{IP1}:6443" in r.stderr, r.stderr
    assert not state_dir("nltw1").exists() and not net.link_exists(VM2, "cni0")
    # two addresses and no --advertise-address: which one other machines reach is the user's to say
    net.addr_add(VM1, "eth1", "192.168.57.10/24")
    r = on(VM1, [*NETLAB, "init", "--name", "nltcp", "--config", str(CLUSTER_FILE)])
    assert r.returncode == 1 and "--advertise-address" in r.stderr, r.stderr
    assert not state_dir("nltcp").exists()
