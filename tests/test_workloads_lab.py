"""StatefulSets, DaemonSets and Deployment rollbacks in a running lab, with real kubelets and
cluster DNS: a StatefulSet behind a headless Service comes up in order and each member has its
DNS name; a DaemonSet runs one pod on every node; `kubectl rollout undo` brings the previous
image back; `kubectl get sts,ds,controllerrevisions` prints upstream's columns."""

from __future__ import annotations

import json

import pytest

from netlab.kit import clock

pytestmark = pytest.mark.lab
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"

STATEFULSET = f"""
apiVersion: v1
kind: Service
metadata: {{name: nltweb, labels: {{app: nltweb}}}}
spec:
  clusterIP: None
  selector: {{app: nltweb}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: nltweb
  replicas: 3
  selector: {{matchLabels: {{app: nltweb}}}}
  template:
    metadata: {{labels: {{app: nltweb}}}}
    spec:
      containers:
      - name: web
        image: {AGNHOST}
        args: [netexec, --http-port=8080, --udp-port=-1]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
"""

DAEMONSET = f"""
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: nltagent}}
spec:
  selector: {{matchLabels: {{app: nltagent}}}}
  template:
    metadata: {{labels: {{app: nltagent}}}}
    spec:
      tolerations: [{{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}}]
      containers:
      - name: agent
        image: {AGNHOST}
        args: [pause]
"""


def ready_at(pod: dict):
    return clock.parse(next(c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "Ready"))


def test_statefulset_in_order_with_dns_names(netlab_lab):
    lab = netlab_lab
    lab.kubectl("apply", "-f", "-", input=STATEFULSET)
    try:
        pods = sorted(lab.wait_ready("app=nltweb", count=3, timeout=90), key=lambda p: p["metadata"]["name"])
        assert [p["metadata"]["name"] for p in pods] == ["web-0", "web-1", "web-2"]
        # OrderedReady: each member was made once the one before it was Ready (to the second)
        for before, after in zip(pods, pods[1:], strict=False):
            assert clock.parse(after["metadata"]["creationTimestamp"]) >= ready_at(before)
        out = lab.kubectl("rollout", "status", "sts/web", "--timeout=60s", timeout=70).stdout
        assert "partitioned roll out complete: 3 new pods have been updated..." in out
        # each member by name, from another member: the headless Service's records of its hostnames
        def lookup(src: dict, name: str) -> list[str]:
            return lab.exec(src, ["dig", "+short", "+time=2", "+tries=1", name]).stdout.split()
        for target in pods:
            name = f"{target['metadata']['name']}.nltweb.default.svc.cluster.local"
            src = pods[2] if target is not pods[2] else pods[0]
            answer = lab.wait(lambda src=src, name=name: lookup(src, name), timeout=30, what=f"{name} resolves")
            assert answer == [target["status"]["podIP"]]
        # and its own name is its hostname
        assert lab.exec(pods[1], ["hostname"]).stdout.strip() == "web-1"
    finally:
        lab.kubectl("delete", "-f", "-", "--wait=false", input=STATEFULSET)


def test_daemonset_one_pod_per_node_and_columns(netlab_lab):
    lab = netlab_lab
    lab.kubectl("apply", "-f", "-", input=DAEMONSET)
    try:
        pods = lab.wait_ready("app=nltagent", count=len(lab.cluster.nodes), timeout=90)
        assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(n.name for n in lab.cluster.nodes)
        out = lab.kubectl("rollout", "status", "ds/nltagent", "--timeout=60s", timeout=70).stdout
        assert 'daemon set "nltagent" successfully rolled out' in out
        lab.kubectl("apply", "-f", "-", input=STATEFULSET.replace("replicas: 3", "replicas: 1"))
        lab.wait_ready("app=nltweb", count=1, timeout=60)
        text = lab.kubectl("get", "sts,ds,controllerrevisions").stdout
        blocks = [b.splitlines() for b in text.strip().split("\n\n")]
        assert blocks[0][0].split() == ["NAME", "READY", "AGE"]
        assert blocks[0][1].split()[:2] == ["statefulset.apps/web", "1/1"]
        assert blocks[1][0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE",
                                        "SELECTOR", "AGE"]
        n = str(len(lab.cluster.nodes))
        assert blocks[1][1].split()[:7] == ["daemonset.apps/nltagent", n, n, n, n, n, "<none>"]
        assert blocks[2][0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"]
        rows = {line.split()[1] for line in blocks[2][1:]}
        assert rows == {"daemonset.apps/nltagent", "statefulset.apps/web"}
    finally:
        lab.kubectl("delete", "-f", "-", "--wait=false", input=DAEMONSET)
        lab.kubectl("delete", "-f", "-", "--wait=false", input=STATEFULSET)


def test_rollout_undo_restores_the_previous_image(netlab_lab):
    lab = netlab_lab
    lab.kubectl("create", "deployment", "nltundo", "--image=nginx:1.25", "--replicas=2")
    try:
        lab.kubectl("rollout", "status", "deploy/nltundo", "--timeout=60s", timeout=70)
        lab.kubectl("set", "image", "deployment/nltundo", "nginx=nginx:1.26")
        lab.kubectl("rollout", "status", "deploy/nltundo", "--timeout=60s", timeout=70)
        assert "deployment.apps/nltundo rolled back" in lab.kubectl("rollout", "undo", "deployment/nltundo").stdout
        lab.kubectl("rollout", "status", "deploy/nltundo", "--timeout=60s", timeout=70)
        d = json.loads(lab.kubectl("get", "deploy", "nltundo", "-o", "json").stdout)
        assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        images = lab.wait(lambda: {p["spec"]["containers"][0]["image"] for p in lab.wait_ready("app=nltundo")}
                          == {"nginx:1.25"}, timeout=60, what="pods on the first image")
        assert images
    finally:
        lab.kubectl("delete", "deployment", "nltundo", "--wait=false")
