"""Objects far larger than a watch line once could be (a 600 KB ConfigMap, a Service of 550 KB:
annotations to just under the API's 256 KiB limit, and labels), created and then changed in a
running lab: the controller manager, the kubelets, kube-proxy and CoreDNS keep running and keep
watching, so a Service made afterwards resolves by name and routes to its pods."""

from __future__ import annotations

import pytest

from netlab.lab import supervisor

pytestmark = pytest.mark.lab
NS = "bigtest"
APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: after}
spec:
  replicas: 2
  selector: {matchLabels: {app: after}}
  template:
    metadata: {labels: {app: after}}
    spec:
      containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec, --http-port=8080]}]
---
apiVersion: v1
kind: Service
metadata: {name: after}
spec:
  selector: {app: after}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
"""
WATCHERS = ("kube-controller-manager", "kubelet-", "kube-proxy-")


def restarts(lab) -> dict[str, int]:
    return {c["name"]: c["restarts"] for c in supervisor.read_status(lab.name) if c["name"].startswith(WATCHERS)}


def dns_pods(lab) -> dict[str, int]:
    return {p["metadata"]["name"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses") or [])
            for p in lab.items("pods", "kube-system", "k8s-app=kube-dns")}


def test_big_objects_leave_every_watcher_working(netlab_lab, tmp_path):
    lab = netlab_lab
    before, dns_before = restarts(lab), dns_pods(lab)
    lab.kubectl("create", "namespace", NS)
    try:
        big = tmp_path / "big.txt"
        big.write_text("x" * 600_000)
        lab.kubectl("create", "configmap", "big", f"--from-file={big}", "-n", NS)
        fat = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "fat", "namespace": NS,
                            "annotations": {f"example.com/note-{i}": "y" * 60_000 for i in range(4)},
                            "labels": {f"example.com/l-{i:04d}": "v" * 63 for i in range(3500)}},
               "spec": {"ports": [{"port": 80}]}}
        lab.api(lambda c: c.create("services", fat))
        # and changed: a watcher that died on the first event died again on each later one
        lab.api(lambda c: c.patch("configmaps", "big", {"data": {"big.txt": "z" * 600_000}}, NS))
        lab.api(lambda c: c.patch("services", "fat", {"metadata": {"annotations": {"example.com/note-0": "w" * 60_000}}},
                                  NS))
        lab.apply(APP, namespace=NS)
        pods = {p["metadata"]["name"] for p in lab.wait_ready("app=after", namespace=NS, count=2)}
        lab.wait_ready("", namespace=NS, count=3)  # the client too

        def answers() -> str:
            r = lab.exec("client", ["wget", "-qO-", "-T", "2", "http://after/hostname"], namespace=NS, timeout=10)
            return r.stdout.strip() if r.returncode == 0 else ""
        assert lab.wait(lambda: answers() in pods, timeout=10, what="the new Service resolving and routing")
        r = lab.exec("client", ["nslookup", f"after.{NS}.svc.cluster.local"], namespace=NS, timeout=10)
        assert lab.get("service", "after", NS)["spec"]["clusterIP"] in r.stdout, r.stdout + r.stderr
        assert restarts(lab) == before
        assert dns_pods(lab) == dns_before and lab.wait_ready("k8s-app=kube-dns", namespace="kube-system")
    finally:
        lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)
