"""The node agents' DaemonSets (netlab.lab.addons) and the kubelet's view of them
(netlab.node.kubelet.agents): which pods are agents, what their status says of the supervisor's
component, which part of its log is the current run. No kernel: a real process (this test's) stands
for the component; tests/test_node_agents_lab.py runs them in a lab."""

from __future__ import annotations

import json
import os
import types

from netlab.kit.cluster import Cluster
from netlab.kit.layout import Layout
from netlab.lab import addons
from netlab.node.kubelet import agents, runtime


def agent_pod(namespace="kube-system", host_network=True, annotation="kube-proxy"):
    return {"metadata": {"name": "kube-proxy-abcde", "namespace": namespace, "uid": "uid-1",
                         "annotations": {agents.ANNOTATION: annotation} if annotation else {}},
            "spec": {"hostNetwork": host_network, "nodeName": "worker",
                     "containers": [{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.31.0"}]}}


def test_only_kube_systems_host_network_pods_are_agents():
    assert agents.component_of(agent_pod(), "worker") == "kube-proxy-worker"
    assert agents.component_of(agent_pod(namespace="default"), "worker") is None
    assert agents.component_of(agent_pod(host_network=False), "worker") is None
    assert agents.component_of(agent_pod(annotation=None), "worker") is None


def test_the_daemonsets_are_kubeadms_shape():
    cluster = Cluster.from_dict({"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4"}, name="nltagents")
    objs = addons.node_agents(cluster)
    ds = {o["metadata"]["name"]: o for r, o in objs if r == "daemonsets"}
    assert {"kube-proxy", "cni-agent", "netpol-agent"} <= set(ds)
    proxy = ds["kube-proxy"]
    tmpl = proxy["spec"]["template"]
    assert proxy["metadata"]["namespace"] == "kube-system"
    assert proxy["spec"]["selector"] == {"matchLabels": {"k8s-app": "kube-proxy"}} == {"matchLabels": tmpl["metadata"]["labels"]}
    assert tmpl["metadata"]["annotations"] == {agents.ANNOTATION: "kube-proxy"}
    spec = tmpl["spec"]
    assert spec["hostNetwork"] and spec["priorityClassName"] == "system-node-critical"
    assert spec["tolerations"] == [{"operator": "Exists"}] and spec["serviceAccountName"] == "kube-proxy"
    assert spec["containers"][0]["image"].startswith("registry.k8s.io/kube-proxy:v")
    assert {v["name"] for v in spec["volumes"]} == {"kube-proxy", "xtables-lock", "lib-modules"}
    assert {o["metadata"]["name"] for r, o in objs if r == "serviceaccounts"} == set(ds)
    _, cm = addons.kube_proxy(cluster)
    assert cm["metadata"]["labels"] == {"app": "kube-proxy"} and {"config.conf", "kubeconfig.conf"} == set(cm["data"])


def kubelet(tmp_path, monkeypatch):
    monkeypatch.setenv("NETLAB_STATE_ROOT", str(tmp_path))
    layout = Layout("nltagents")
    layout.logs.mkdir(parents=True)
    return types.SimpleNamespace(layout=layout, node_layout=layout.node("worker"), node_ip="172.18.0.3",
                                 node="worker")


def write_status(k, **row):
    k.layout.status.write_text(json.dumps([{"name": "kube-proxy-worker", "pid": None, "started": None,
                                            "state": "backoff", "restarts": 0, "lastExit": None, **row}]))


def test_status_follows_the_component(tmp_path, monkeypatch):
    k = kubelet(tmp_path, monkeypatch)
    w = agents.AgentWorker(k, agent_pod(), "kube-proxy-worker")
    st = w.status()  # no such component yet: waiting
    assert st["phase"] == "Pending" and "ContainerCreating" == st["containerStatuses"][0]["state"]["waiting"]["reason"]
    me = os.getpid()
    write_status(k, pid=me, started=runtime.proc_start(me), state="running", restarts=4)
    st = w.status()
    c = st["containerStatuses"][0]
    assert st["phase"] == "Running" and c["ready"] and c["restartCount"] == 0  # counted from when the pod came
    assert c["containerID"] == f"netlab://kube-proxy-worker-{me}" and "startedAt" in c["state"]["running"]
    assert st["podIP"] == st["hostIP"] == "172.18.0.3"
    assert {x["type"]: x["status"] for x in st["conditions"]}["Ready"] == "True"
    write_status(k, pid=None, started=None, state="backoff", restarts=5, lastExit=1)  # it crashed
    st = w.status()
    c = st["containerStatuses"][0]
    assert not c["ready"] and c["restartCount"] == 1 and c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert c["lastState"]["terminated"]["exitCode"] == 1 and st["phase"] == "Running"
    # a restarted kubelet keeps counting from the same base
    assert agents.AgentWorker(k, agent_pod(), "kube-proxy-worker").base == 4


def test_the_log_is_the_current_run(tmp_path, monkeypatch):
    k = kubelet(tmp_path, monkeypatch)
    w = agents.AgentWorker(k, agent_pod(), "kube-proxy-worker")
    assert w.log_span() is None
    log = k.layout.log("kube-proxy-worker")
    first = b"--- 2026-01-01T00:00:00 starting python -m proxy run\nrun one\n--- exited with 1\n"
    log.write_bytes(first + b"--- 2026-01-01T00:00:05 starting python -m proxy run\nrun two\n")
    start, end = w.log_span()
    assert end is None and log.read_bytes()[start:] == b"run two\n"
    start, end = w.log_span(previous=True)
    assert log.read_bytes()[start:end] == b"run one\n--- exited with 1\n"


def test_a_plain_log_is_served_from_its_span(tmp_path):
    """kubectl logs of a node agent: plain lines (no CRI records), from the run's start, --tail."""
    import asyncio

    from netlab.node.kubelet import logs

    path = tmp_path / "kube-proxy-worker.log"
    path.write_bytes(b"--- starting old\nold line\n--- 2026 starting new\nfirst\nsecond\nthird\n")
    start = path.read_bytes().index(b"first")
    got = []

    async def write(b):
        got.append(b)
    asyncio.run(logs.serve(path, logs.Options(), write, lambda: True, plain=True, span=(start, None)))
    assert b"".join(got) == b"first\nsecond\nthird\n"
    got.clear()
    asyncio.run(logs.serve(path, logs.Options(tail_lines=2), write, lambda: True, plain=True, span=(start, None)))
    assert b"".join(got) == b"second\nthird\n"
    got.clear()
    asyncio.run(logs.serve(path, logs.Options(), write, lambda: True, plain=True, span=(0, start)))
    assert b"old line" in b"".join(got)
