"""Controllers and scheduler against the real API server: Deployment -> ReplicaSet -> Pods ->
bound -> ready EndpointSlices, rollouts and rollbacks with kubectl, garbage collection, namespace
deletion, and scheduling rules. No kubelet here: a small stand-in reports pods running and ready
through the status subresource, as a kubelet does."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.apikit import ControlPlane

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.39
        args: [netexec, --http-port=8080]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: NS}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


class StandInKubelet:
    """Marks bound pods Running and Ready with an address, and finishes graceful deletions."""

    def __init__(self, cp: ControlPlane, not_ready: set[str] | None = None):
        from kubernetes import client, config

        self.api = client.CoreV1Api(config.new_client_from_config(str(cp.kubeconfig)))
        self.not_ready = not_ready if not_ready is not None else set()
        self.ips: dict[str, str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)

    def loop(self):
        from kubernetes.client import ApiException
        from urllib3.exceptions import HTTPError

        while not self.stop.is_set():
            try:
                for p in self.api.list_pod_for_all_namespaces().items:
                    name, ns, node = p.metadata.name, p.metadata.namespace, p.spec.node_name
                    if not node:
                        continue
                    if p.metadata.deletion_timestamp:
                        self.api.delete_namespaced_pod(name, ns, grace_period_seconds=0)
                        continue
                    ready = "False" if name in self.not_ready else "True"
                    cur = {c.type: c.status for c in (p.status.conditions or [])}
                    if p.status.phase == "Running" and cur.get("Ready") == ready:
                        continue
                    ip = self.ips.setdefault(p.metadata.uid, f"10.244.9.{len(self.ips) + 2}")
                    self.api.patch_namespaced_pod_status(name, ns, {"status": {
                        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                        "conditions": [{"type": "Ready", "status": ready,
                                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                        "containerStatuses": [{"name": c.name, "image": c.image, "imageID": c.image, "ready": ready == "True",
                                               "restartCount": 0, "started": True, "state": {"running": {}}}
                                              for c in p.spec.containers]}})
            except (ApiException, HTTPError, OSError, ValueError):  # a conflict or a dropped connection: again
                pass
            self.stop.wait(0.1)


def add_nodes(cp: ControlPlane, names=("control-plane", "worker", "worker2"), ready=True) -> None:
    for n in names:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}}
        cp.kubectl("create", "-f", "-", input=json.dumps(node))
        if ready:
            cp.kubectl("patch", "node", n, "--subresource=status", "--type=merge", "-p",
                       '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}')


def wait(pred, timeout=15.0, what="condition"):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def objects(cp: ControlPlane, kind: str, ns: str, selector: str = "") -> list[dict]:
    args = ["get", kind, "-n", ns, "-o", "json"] + (["-l", selector] if selector else [])
    return json.loads(cp.kubectl(*args).stdout)["items"]


@pytest.fixture(scope="module")
def cp():
    with ControlPlane("nltctl", components=("controllers", "scheduler")) as plane:
        add_nodes(plane)
        yield plane


def test_nodes_without_a_pod_cidr_get_the_lowest_free_one(cp):
    """--allocate-node-cidrs: the nodes of the module's fixture got 10.244.0-2.0/24; a node that
    brings its own keeps it, and the next one without gets the lowest /24 still free."""
    cidrs = {n["metadata"]["name"]: n["spec"].get("podCIDR") for n in objects(cp, "nodes", "default")}
    assert sorted(cidrs.values()) == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    own = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "nlt-own"}, "spec": {"podCIDR": "10.244.3.0/24"}}
    cp.kubectl("create", "-f", "-", input=json.dumps(own))
    cp.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "nlt-new"}}))
    try:
        new = wait(lambda: json.loads(cp.kubectl("get", "node", "nlt-new", "-o", "json").stdout)["spec"].get("podCIDR"),
                   what="a podCIDR for nlt-new")
        assert new == "10.244.4.0/24"
        assert json.loads(cp.kubectl("get", "node", "nlt-own", "-o", "json").stdout)["spec"]["podCIDR"] == "10.244.3.0/24"
        assert wait(lambda: [e for e in objects(cp, "events", "default")
                             if e["reason"] == "CIDRAssignmentSucceeded" and e["involvedObject"]["name"] == "nlt-new"])
    finally:
        cp.kubectl("delete", "node", "nlt-own", "nlt-new")


def test_deployment_becomes_bound_ready_pods_and_endpoints(cp):
    ns = "nlt-a"
    cp.kubectl("create", "namespace", ns)
    not_ready: set[str] = set()
    with StandInKubelet(cp, not_ready):
        cp.kubectl("apply", "-f", "-", input=APP.replace("NS", ns))
        pods = wait(lambda: (lambda ps: ps if len(ps) == 3 and all(p["spec"].get("nodeName") for p in ps) else None)(
            objects(cp, "pods", ns)), what="3 bound pods")
        rs = objects(cp, "replicasets", ns)
        assert len(rs) == 1
        rs_name, h = rs[0]["metadata"]["name"], rs[0]["metadata"]["labels"]["pod-template-hash"]
        assert rs_name == f"web-{h}"
        for p in pods:
            assert p["metadata"]["name"].startswith(rs_name + "-") and len(p["metadata"]["name"]) == len(rs_name) + 6
            ref = p["metadata"]["ownerReferences"][0]
            assert (ref["kind"], ref["name"], ref["controller"]) == ("ReplicaSet", rs_name, True)
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["control-plane", "worker", "worker2"], "not spread"
        events = cp.kubectl("get", "events", "-n", ns).stdout
        assert "Scheduled" in events and "Successfully assigned" in events
        slice_ = wait(lambda: (lambda s: s if s and len([e for e in s[0].get("endpoints") or []
                                                        if e["conditions"]["ready"]]) == 3 else None)(
            objects(cp, "endpointslices", ns, "kubernetes.io/service-name=web")), what="3 ready endpoints")[0]
        assert slice_["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]  # the named port, resolved
        assert {e["nodeName"] for e in slice_["endpoints"]} == {"control-plane", "worker", "worker2"}
        assert all(e["targetRef"]["kind"] == "Pod" for e in slice_["endpoints"])
        assert slice_["metadata"]["ownerReferences"][0]["name"] == "web"
        ep = json.loads(cp.kubectl("get", "endpoints", "web", "-n", ns, "-o", "json").stdout)
        assert len(ep["subsets"][0]["addresses"]) == 3 and ep["subsets"][0]["ports"][0]["port"] == 8080
        out = cp.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=20s", timeout=30).stdout
        assert 'deployment "web" successfully rolled out' in out
        assert "3/3" in cp.kubectl("get", "deploy", "web", "-n", ns).stdout
        # a pod that stops being ready leaves the ready endpoints, and comes back
        victim = pods[0]["metadata"]["name"]
        not_ready.add(victim)
        wait(lambda: [e for e in objects(cp, "endpointslices", ns, "kubernetes.io/service-name=web")[0]["endpoints"]
                      if e["targetRef"]["name"] == victim and not e["conditions"]["ready"]], what="not ready")
        not_ready.discard(victim)
        wait(lambda: all(e["conditions"]["ready"] for e in objects(
            cp, "endpointslices", ns, "kubernetes.io/service-name=web")[0]["endpoints"]), what="ready again")
        # scale down: 2 pods go; deleted pods are replaced when scaled back
        cp.kubectl("scale", "deploy", "web", "-n", ns, "--replicas=1")
        wait(lambda: len(objects(cp, "pods", ns)) == 1, what="1 pod")
        cp.kubectl("scale", "deploy", "web", "-n", ns, "--replicas=2")
        wait(lambda: len(objects(cp, "pods", ns)) == 2, what="2 pods")
        cp.kubectl("delete", "pod", "-n", ns, objects(cp, "pods", ns)[0]["metadata"]["name"])
        wait(lambda: len([p for p in objects(cp, "pods", ns) if not p["metadata"].get("deletionTimestamp")]) == 2,
             what="replacement")
        cp.kubectl("delete", "namespace", ns, "--wait=false")


def test_rolling_update_and_undo(cp):
    ns = "nlt-b"
    cp.kubectl("create", "namespace", ns)
    with StandInKubelet(cp):
        cp.kubectl("apply", "-f", "-", input=APP.replace("NS", ns))
        cp.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=30s", timeout=40)
        cp.kubectl("set", "image", "deploy/web", "-n", ns, "web=registry.k8s.io/e2e-test-images/agnhost:2.40")
        out = cp.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=30s", timeout=40).stdout
        assert 'deployment "web" successfully rolled out' in out
        rs = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r for r in objects(cp, "rs", ns)}
        assert set(rs) == {"1", "2"} and rs["1"]["spec"]["replicas"] == 0 and rs["2"]["spec"]["replicas"] == 3
        images = {p["spec"]["containers"][0]["image"] for p in objects(cp, "pods", ns)
                  if not p["metadata"].get("deletionTimestamp")}
        assert images == {"registry.k8s.io/e2e-test-images/agnhost:2.40"}
        cp.kubectl("rollout", "undo", "deploy/web", "-n", ns)
        cp.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=30s", timeout=40)
        rs = {r["metadata"]["name"]: r for r in objects(cp, "rs", ns)}
        first = rs[[n for n, r in rs.items() if r["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
            "2.39")][0]]
        assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        assert first["spec"]["replicas"] == 3
        hist = cp.kubectl("rollout", "history", "deploy/web", "-n", ns).stdout
        assert "2 " in hist and "3 " in hist
        # deleting the Deployment takes its ReplicaSets and pods (garbage collector)
        cp.kubectl("delete", "deploy", "web", "-n", ns)
        wait(lambda: not objects(cp, "rs", ns) and not objects(cp, "pods", ns), what="dependents gone")
        cp.kubectl("delete", "svc", "web", "-n", ns)
        wait(lambda: not objects(cp, "endpointslices", ns), what="slices gone")
        # a namespace goes with what it holds
        cp.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=a=b")
        cp.kubectl("delete", "namespace", ns, timeout=60)
        assert cp.kubectl("get", "namespace", ns, check=False).returncode == 1


def test_scheduler_rules_and_events(cp):
    ns = "nlt-c"
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("taint", "node", "worker", "dedicated=lab:NoSchedule")
    cp.kubectl("cordon", "worker2")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "picky", "namespace": ns},
           "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "busybox"}]}}
    cp.kubectl("create", "-f", "-", input=json.dumps(pod))
    msg = wait(lambda: next((e["message"] for e in objects(cp, "events", ns) if e["reason"] == "FailedScheduling"),
                            None), what="FailedScheduling")
    assert msg.startswith("0/3 nodes are available:")
    assert "1 node(s) didn't match Pod's node affinity/selector" in msg
    assert "1 node(s) had untolerated taint {dedicated: lab}" in msg and "1 node(s) were unschedulable" in msg
    cp.kubectl("label", "node", "worker", "disk=ssd")
    time.sleep(0.5)
    assert not json.loads(cp.kubectl("get", "pod", "picky", "-n", ns, "-o", "json").stdout)["spec"].get("nodeName")
    cp.kubectl("taint", "node", "worker", "dedicated-")
    node = wait(lambda: json.loads(cp.kubectl("get", "pod", "picky", "-n", ns, "-o", "json").stdout)["spec"].get(
        "nodeName"), what="scheduled after untaint")
    assert node == "worker"
    cp.kubectl("uncordon", "worker2")
    cp.kubectl("delete", "namespace", ns, "--wait=false")


def test_shared_informers_keep_one_meaning_per_index():
    """The ReplicaSet controller counts the pods it controls; the garbage collector needs every
    dependent of an owner, controller or not. Both read the process's one pods informer."""
    import asyncio

    from netlab.control.controllers.base import Context
    from netlab.control.controllers.lifecycle import GarbageCollector
    from netlab.control.controllers.replicaset import ReplicaSetController

    ctx = Context(client=None)
    rs, gc = ReplicaSetController(ctx), GarbageCollector(ctx)
    pods = ctx.informers["pods"]
    pod = {"metadata": {"namespace": "default", "name": "p", "resourceVersion": "1", "ownerReferences": [
        {"uid": "rs-uid", "controller": True, "kind": "ReplicaSet", "name": "rs"},
        {"uid": "cm-uid", "kind": "ConfigMap", "name": "cm"}]}}
    asyncio.run(pods._apply("ADDED", pod))
    assert [p["metadata"]["name"] for p in rs.pods.by_index("controller", "rs-uid")] == ["p"]
    assert rs.pods.by_index("controller", "cm-uid") == []
    assert [p["metadata"]["name"] for p in gc.infs["pods"].by_index("owner", "cm-uid")] == ["p"]
    with pytest.raises(ValueError, match="index 'owner' is already defined otherwise"):
        pods.add_index("owner", lambda o: [])


def test_a_namespace_goes_after_a_crd_it_was_discovered_with_is_gone(cp):
    """The namespace controller lists every namespaced kind discovery showed it, custom ones too; a
    CRD deleted since (404 on its list) must not hold every later namespace in Terminating."""
    crd = Path(__file__).parent / "data" / "crontab" / "resourcedefinition.yaml"
    cp.kubectl("apply", "-f", str(crd))
    cp.kubectl("create", "namespace", "nlt-ns-crd")
    cp.kubectl("delete", "namespace", "nlt-ns-crd", "--wait=false")
    wait(lambda: "nlt-ns-crd" not in cp.kubectl("get", "namespaces").stdout, timeout=20,
         what="the first namespace gone (discovery now knows crontabs)")
    cp.kubectl("delete", "-f", str(crd))
    cp.kubectl("create", "namespace", "nlt-ns-after")
    cp.kubectl("delete", "namespace", "nlt-ns-after", "--wait=false")
    wait(lambda: "nlt-ns-after" not in cp.kubectl("get", "namespaces").stdout, timeout=20,
         what="a namespace deleted after the CRD went")
