"""The node agents as a kubeadm cluster shows them: DaemonSets in kube-system with one Running
hostNetwork pod per node, whose logs are the component's and whose deletion restarts it."""

from __future__ import annotations

import json

AGENTS = ["cni-agent", "kube-proxy", "netpol-agent"]


def component(lab, name: str) -> dict:
    rows = json.loads(lab.cluster.layout.status.read_text())
    return next(r for r in rows if r["name"] == name)


def test_node_agents_are_daemonsets_with_a_pod_per_node(netlab_lab):
    lab = netlab_lab
    nodes = sorted(n["metadata"]["name"] for n in lab.items("nodes", None))
    want = AGENTS + (["lb-speaker"] if lab.cluster.lb_pool else [])

    def all_ready():
        out = lab.kubectl("get", "ds", "-n", "kube-system", "--no-headers").stdout
        rows = {line.split()[0]: line.split()[1:6] for line in out.splitlines() if line.strip()}
        n = str(len(nodes))
        return rows if all(rows.get(a, [None])[:5] == [n, n, n, n, n] for a in want) else None
    lab.wait(all_ready, 120, "every agent DaemonSet with DESIRED=CURRENT=READY=UP-TO-DATE=AVAILABLE=node count")
    pods = lab.items("pods", "kube-system", "k8s-app=kube-proxy")
    assert sorted(p["spec"]["nodeName"] for p in pods) == nodes
    for p in pods:
        assert p["metadata"]["name"].startswith("kube-proxy-") and len(p["metadata"]["name"]) == len("kube-proxy-") + 5
        assert p["spec"]["hostNetwork"] is True and p["status"]["phase"] == "Running"
        assert p["status"]["podIP"] == p["status"]["hostIP"]
        assert p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    cm = lab.get("configmaps", "kube-proxy", "kube-system")
    assert {"config.conf", "kubeconfig.conf"} <= set(cm["data"]) and cm["metadata"]["labels"] == {"app": "kube-proxy"}

    # kubectl logs: the component's own log, this run of it
    p = next(p for p in pods if p["spec"]["nodeName"] == nodes[-1])
    name = p["metadata"]["name"]
    out = lab.kubectl("logs", "-n", "kube-system", name).stdout
    assert out.strip() and "--- " not in out.splitlines()[0]
    mine = lab.cluster.layout.log(f"kube-proxy-{nodes[-1]}").read_text()
    assert out.splitlines()[-1] in mine
    assert len(lab.kubectl("logs", "-n", "kube-system", name, "--tail=2").stdout.splitlines()) == 2

    # kubectl exec: in the component's namespaces, which are its node's
    node_ip = p["status"]["hostIP"]
    assert f"{node_ip}/" in lab.kubectl("exec", "-n", "kube-system", name, "--", "ip", "-o", "addr", "show", "eth0").stdout

    # kubectl delete pod: the component is restarted (a new process), and a new pod reports it
    before = component(lab, f"kube-proxy-{nodes[-1]}")
    lab.kubectl("delete", "pod", "-n", "kube-system", name, timeout=60)
    lab.wait(lambda: (r := component(lab, f"kube-proxy-{nodes[-1]}"))["pid"] not in (None, before["pid"])
             and r["state"] == "running", 60, "the supervisor to start kube-proxy again")
    lab.wait(all_ready, 120, "the DaemonSet's new pod Ready")
    new = [q for q in lab.items("pods", "kube-system", "k8s-app=kube-proxy") if q["spec"]["nodeName"] == nodes[-1]]
    assert len(new) == 1 and new[0]["metadata"]["name"] != name
    assert new[0]["status"]["containerStatuses"][0]["containerID"].endswith(
        f"-{component(lab, f'kube-proxy-{nodes[-1]}')['pid']}")
