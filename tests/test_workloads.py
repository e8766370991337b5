"""StatefulSets, DaemonSets, ControllerRevisions and Deployment rollbacks against the real API
server, controller manager and scheduler, with kubectl: ordered and parallel pod management,
stable names and identity, rolling updates with a partition, OnDelete, rollout status, history
and undo, one daemon pod per eligible node, the columns kubectl prints, and the validation
upstream gives. A stand-in kubelet reports pods running and ready (tests/test_controllers.py)."""

from __future__ import annotations

import json
import time

import pytest

from tests.apikit import ControlPlane
from tests.test_controllers import StandInKubelet, wait

IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.39"
NEW_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.40"
CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def sts_manifest(ns: str, name: str = "web", replicas: int = 3, **spec) -> str:
    return json.dumps({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": ns},
                       "spec": {"serviceName": "nginx", "replicas": replicas,
                                "selector": {"matchLabels": {"app": name}},
                                "template": {"metadata": {"labels": {"app": name}},
                                             "spec": {"containers": [{"name": "c", "image": IMAGE,
                                                                      "args": ["netexec"]}]}}, **spec}})


def ds_manifest(ns: str, name: str = "agent", tolerations=None, **spec) -> str:
    pod_spec = {"containers": [{"name": "c", "image": IMAGE, "args": ["pause"]}]}
    if tolerations:
        pod_spec["tolerations"] = tolerations
    pod_spec.update(spec.pop("pod", {}))
    return json.dumps({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": ns},
                       "spec": {"selector": {"matchLabels": {"app": name}},
                                "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}, **spec}})


class HoldNew:
    """For the stand-in kubelet: while `old` is set, every pod not in it stays unready."""
    old: set[str] | None = None

    def __contains__(self, name: str) -> bool:
        return self.old is not None and name not in self.old


def items(cp: ControlPlane, kind: str, ns: str, selector: str = "") -> list[dict]:
    args = ["get", kind, "-n", ns, "-o", "json"] + (["-l", selector] if selector else [])
    return json.loads(cp.kubectl(*args).stdout)["items"]


def live_pods(cp: ControlPlane, ns: str, selector: str = "") -> list[dict]:
    return sorted((p for p in items(cp, "pods", ns, selector) if not p["metadata"].get("deletionTimestamp")),
                  key=lambda p: p["metadata"]["name"])


def get(cp: ControlPlane, kind: str, name: str, ns: str) -> dict:
    return json.loads(cp.kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)


@pytest.fixture(scope="module")
def cp():
    with ControlPlane("nltwl", components=("controllers", "scheduler")) as plane:
        for n in ("control-plane", "worker", "worker2"):
            node = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n, "kubernetes.io/os": "linux"}},
                    "spec": {"taints": [CP_TAINT]} if n == "control-plane" else {}}
            if n == "control-plane":
                node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = ""
            plane.kubectl("create", "-f", "-", input=json.dumps(node))
            plane.kubectl("patch", "node", n, "--subresource=status", "--type=merge", "-p",
                          '{"status":{"conditions":[{"type":"Ready","status":"True"}],'
                          '"allocatable":{"cpu":"2","memory":"4Gi","pods":"110"}}}')
        yield plane


def test_statefulset_is_ordered_with_stable_identity_and_hostnames(cp):
    ns = "nlt-sts"
    cp.kubectl("create", "namespace", ns)
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx", "namespace": ns},
           "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"name": "web", "port": 80}]}}
    cp.kubectl("create", "-f", "-", input=json.dumps(svc))
    held = {"web-0"}  # web-0 stays unready: OrderedReady makes nothing after it
    with StandInKubelet(cp, held):
        cp.kubectl("apply", "-f", "-", input=sts_manifest(ns, podManagementPolicy="OrderedReady"))
        wait(lambda: [p for p in live_pods(cp, ns) if p.get("status", {}).get("podIP")], what="web-0 running")
        time.sleep(1.5)
        assert [p["metadata"]["name"] for p in live_pods(cp, ns)] == ["web-0"]
        held.clear()
        pods = wait(lambda: (lambda ps: ps if len(ps) == 3 else None)(live_pods(cp, ns)), what="3 pods")
        out = cp.kubectl("rollout", "status", "sts/web", "-n", ns, "--timeout=20s", timeout=30).stdout
        assert "partitioned roll out complete: 3 new pods have been updated..." in out
        sts = get(cp, "sts", "web", ns)
        rev = sts["status"]["updateRevision"]
        assert sts["status"]["currentRevision"] == rev and rev.startswith("web-")
        assert {k: sts["status"][k] for k in ("replicas", "readyReplicas", "currentReplicas", "updatedReplicas",
                                               "availableReplicas")} == dict.fromkeys(
            ("replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas"), 3)
        for i, p in enumerate(pods):
            assert p["metadata"]["name"] == f"web-{i}"
            assert p["spec"]["hostname"] == f"web-{i}" and p["spec"]["subdomain"] == "nginx"
            assert p["metadata"]["labels"] == {"app": "web", "statefulset.kubernetes.io/pod-name": f"web-{i}",
                                               "apps.kubernetes.io/pod-index": str(i),
                                               "controller-revision-hash": rev}
            ref = p["metadata"]["ownerReferences"][0]
            assert (ref["kind"], ref["name"], ref["controller"]) == ("StatefulSet", "web", True)
        # the creation order is the ordinal order
        created = [e["message"] for e in sorted(items(cp, "events", ns), key=lambda e: e["metadata"]["name"])
                   if e["reason"] == "SuccessfulCreate"]
        assert sorted(created) == [f"create Pod web-{i} in StatefulSet web successful" for i in range(3)]
        # the headless Service's slice names each pod by its hostname, for DNS
        slices = wait(lambda: (lambda s: s if s and len(s[0].get("endpoints") or []) == 3 else None)(
            items(cp, "endpointslices", ns, "kubernetes.io/service-name=nginx")), what="3 endpoints")
        assert sorted(e["hostname"] for e in slices[0]["endpoints"]) == ["web-0", "web-1", "web-2"]
        ep = get(cp, "endpoints", "nginx", ns)
        assert sorted(a["hostname"] for a in ep["subsets"][0]["addresses"]) == ["web-0", "web-1", "web-2"]
        # a deleted member comes back with the same name
        uid = pods[1]["metadata"]["uid"]
        cp.kubectl("delete", "pod", "web-1", "-n", ns)
        wait(lambda: [p for p in live_pods(cp, ns) if p["metadata"]["name"] == "web-1"
                      and p["metadata"]["uid"] != uid], what="web-1 again")
        # scale down: the highest ordinal goes first
        cp.kubectl("scale", "sts", "web", "-n", ns, "--replicas=1")
        wait(lambda: [p["metadata"]["name"] for p in live_pods(cp, ns)] == ["web-0"], what="scaled to 1")
        deleted = [e["message"] for e in items(cp, "events", ns) if e["reason"] == "SuccessfulDelete"]
        assert "delete Pod web-2 in StatefulSet web successful" in deleted
        table = cp.kubectl("get", "sts", "-n", ns, "-o", "wide").stdout.splitlines()
        assert table[0].split() == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]
        wait(lambda: cp.kubectl("get", "sts", "web", "-n", ns).stdout.splitlines()[1].split()[1] == "1/1",
             what="READY 1/1")
        # deleting the set takes its pods and its revisions (garbage collector)
        cp.kubectl("delete", "sts", "web", "-n", ns)
        wait(lambda: not live_pods(cp, ns) and not items(cp, "controllerrevisions", ns), what="dependents gone")
    cp.kubectl("delete", "namespace", ns, "--wait=false")


def test_statefulset_parallel_partition_undo_and_ondelete(cp):
    ns = "nlt-sts2"
    cp.kubectl("create", "namespace", ns)
    held = {"web-0", "web-1", "web-2"}
    with StandInKubelet(cp, held):
        cp.kubectl("apply", "-f", "-", input=sts_manifest(ns, podManagementPolicy="Parallel"))
        wait(lambda: len(live_pods(cp, ns)) == 3, what="3 pods at once, none ready")
        held.clear()
        cp.kubectl("rollout", "status", "sts/web", "-n", ns, "--timeout=20s", timeout=30)
        first = get(cp, "sts", "web", ns)["status"]["updateRevision"]
        # a partition of 2: only web-2 takes the new template
        cp.kubectl("patch", "sts", "web", "-n", ns, "-p",
                   '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}')
        cp.kubectl("set", "image", "sts/web", "-n", ns, f"c={NEW_IMAGE}")
        out = cp.kubectl("rollout", "status", "sts/web", "-n", ns, "--timeout=20s", timeout=30).stdout
        assert "partitioned roll out complete: 1 new pods have been updated..." in out
        images = {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in live_pods(cp, ns)}
        assert images == {"web-0": IMAGE, "web-1": IMAGE, "web-2": NEW_IMAGE}
        sts = get(cp, "sts", "web", ns)
        assert sts["status"]["currentRevision"] == first != sts["status"]["updateRevision"]
        assert sts["status"]["updatedReplicas"] == 1 and sts["status"]["currentReplicas"] == 2
        # partition 0: the rest, highest first
        cp.kubectl("patch", "sts", "web", "-n", ns, "-p",
                   '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}')
        cp.kubectl("rollout", "status", "sts/web", "-n", ns, "--timeout=30s", timeout=40)
        wait(lambda: {p["spec"]["containers"][0]["image"] for p in live_pods(cp, ns)} == {NEW_IMAGE}
             and len(live_pods(cp, ns)) == 3, what="all updated")
        sts = get(cp, "sts", "web", ns)
        assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
        revs = items(cp, "controllerrevisions", ns)
        assert sorted(r["revision"] for r in revs) == [1, 2]
        table = cp.kubectl("get", "controllerrevisions", "-n", ns).stdout.splitlines()
        assert table[0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"]
        assert any(line.split()[1:3] == ["statefulset.apps/web", "2"] for line in table[1:])
        hist = cp.kubectl("rollout", "history", "sts/web", "-n", ns).stdout
        assert "REVISION" in hist and "1 " in hist and "2 " in hist
        # undo: the previous template back, as revision 3
        cp.kubectl("rollout", "undo", "sts/web", "-n", ns)
        wait(lambda: {p["spec"]["containers"][0]["image"] for p in live_pods(cp, ns)} == {IMAGE}
             and len(live_pods(cp, ns)) == 3, timeout=30, what="undone")
        assert get(cp, "sts", "web", ns)["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
        revs = {r["metadata"]["name"]: r["revision"] for r in items(cp, "controllerrevisions", ns)}
        assert revs[first] == 3 and len(revs) == 2
        # OnDelete: a new template waits for someone to delete the pods
        cp.kubectl("patch", "sts", "web", "-n", ns, "--type=json", "-p",
                   '[{"op":"replace","path":"/spec/updateStrategy","value":{"type":"OnDelete"}}]')
        cp.kubectl("set", "image", "sts/web", "-n", ns, f"c={NEW_IMAGE}")
        time.sleep(1.5)
        assert {p["spec"]["containers"][0]["image"] for p in live_pods(cp, ns)} == {IMAGE}
        cp.kubectl("delete", "pod", "web-1", "-n", ns)
        wait(lambda: {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in live_pods(cp, ns)}
             == {"web-0": IMAGE, "web-1": NEW_IMAGE, "web-2": IMAGE}, what="web-1 on the new template")
    cp.kubectl("delete", "namespace", ns, "--wait=false")


def test_statefulset_validation_as_upstream(cp):
    ns = "nlt-sts3"
    cp.kubectl("create", "namespace", ns)
    bad = cp.kubectl("apply", "-f", "-", input=sts_manifest(ns, podManagementPolicy="Sometimes"), check=False)
    assert "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'" in bad.stderr
    bad = cp.kubectl("apply", "-f", "-", input=sts_manifest(ns, updateStrategy={
        "type": "OnDelete", "rollingUpdate": {"partition": 1}}), check=False)
    assert "spec.updateStrategy.rollingUpdate: Invalid value" in bad.stderr
    assert "only allowed for updateStrategy 'RollingUpdate'" in bad.stderr
    cp.kubectl("apply", "-f", "-", input=sts_manifest(ns, replicas=0, volumeClaimTemplates=[
        {"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                               "resources": {"requests": {"storage": "1Gi"}}}}]))
    sts = get(cp, "sts", "web", ns)
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert (claim["apiVersion"], claim["kind"], claim["spec"]["volumeMode"], claim["status"]) == (
        "v1", "PersistentVolumeClaim", "Filesystem", {"phase": "Pending"})
    out = cp.kubectl("patch", "sts", "web", "-n", ns, "-p", '{"spec":{"serviceName":"other"}}', check=False)
    assert ("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
            "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden") in out.stderr
    # the claims' volumes are in the pods, named <claim>-<set>-<ordinal>
    with StandInKubelet(cp):
        cp.kubectl("scale", "sts", "web", "-n", ns, "--replicas=1")
        pod = wait(lambda: live_pods(cp, ns), what="web-0")[0]
        assert pod["spec"]["volumes"][0] == {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}}
    cp.kubectl("delete", "namespace", ns, "--wait=false")


def test_daemonset_one_pod_per_eligible_node(cp):
    ns = "nlt-ds"
    cp.kubectl("create", "namespace", ns)
    with StandInKubelet(cp):
        cp.kubectl("apply", "-f", "-", input=ds_manifest(ns))
        pods = wait(lambda: (lambda ps: ps if len(ps) == 2 and all(p["spec"].get("nodeName") for p in ps) else None)(
            live_pods(cp, ns)), what="2 daemon pods")
        # the control-plane node's taint is not tolerated: the workers only
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["worker", "worker2"]
        for p in pods:
            terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
                "nodeSelectorTerms"]
            assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                               "values": [p["spec"]["nodeName"]]}]}]
            keys = [(t["key"], t["effect"]) for t in p["spec"]["tolerations"]]
            assert keys == [("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
                            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                            ("node.kubernetes.io/unschedulable", "NoSchedule")]
            assert p["metadata"]["labels"]["pod-template-generation"] == "1"
            assert p["metadata"]["name"].startswith("agent-")
        ds = get(cp, "ds", "agent", ns)
        assert ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
        assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
        out = cp.kubectl("rollout", "status", "ds/agent", "-n", ns, "--timeout=20s", timeout=30).stdout
        assert 'daemon set "agent" successfully rolled out' in out
        st = get(cp, "ds", "agent", ns)["status"]
        assert {k: st.get(k) for k in ("desiredNumberScheduled", "currentNumberScheduled", "numberReady",
                                        "updatedNumberScheduled", "numberAvailable", "numberMisscheduled")} == {
            "desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 2,
            "updatedNumberScheduled": 2, "numberAvailable": 2, "numberMisscheduled": 0}
        assert st["observedGeneration"] == 1
        head = cp.kubectl("get", "ds", "-n", ns, "-o", "wide").stdout.splitlines()
        assert head[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE",
                                   "SELECTOR", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
        assert head[1].split()[:7] == ["agent", "2", "2", "2", "2", "2", "<none>"]
        # tolerating the control-plane taint: every node; a node added later gets one too
        cp.kubectl("apply", "-f", "-", input=ds_manifest(ns, tolerations=[
            {"key": CP_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}]))
        wait(lambda: sorted(p["spec"].get("nodeName", "") for p in live_pods(cp, ns)) ==
             ["control-plane", "worker", "worker2"], timeout=30, what="one pod per node after the update")
        cp.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": "nlt-worker3", "labels": {"kubernetes.io/hostname": "nlt-worker3"}}}))
        cp.kubectl("patch", "node", "nlt-worker3", "--subresource=status", "--type=merge", "-p",
                   '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}')
        try:
            wait(lambda: sorted(p["spec"].get("nodeName", "") for p in live_pods(cp, ns)) ==
                 ["control-plane", "nlt-worker3", "worker", "worker2"], what="a pod on the new node")
            revs = items(cp, "controllerrevisions", ns)
            assert sorted(r["revision"] for r in revs) == [1, 2]
            assert all(r["metadata"]["labels"]["controller-revision-hash"] == r["metadata"]["name"][len("agent-"):]
                       for r in revs)
            assert get(cp, "ds", "agent", ns)["metadata"]["annotations"][
                "deprecated.daemonset.template.generation"] == "2"
            # a nodeSelector narrows it; the pods on other nodes go
            cp.kubectl("label", "node", "worker", "disk=ssd")
            cp.kubectl("apply", "-f", "-", input=ds_manifest(ns, pod={"nodeSelector": {"disk": "ssd"}}))
            wait(lambda: [p["spec"].get("nodeName") for p in live_pods(cp, ns)] == ["worker"], timeout=30,
                 what="only the labelled node")
            assert "disk=ssd" in cp.kubectl("get", "ds", "agent", "-n", ns).stdout
            # undo: back to every node
            cp.kubectl("rollout", "undo", "ds/agent", "-n", ns)
            wait(lambda: len(live_pods(cp, ns)) == 4, timeout=30, what="undone: 4 pods")
        finally:
            cp.kubectl("delete", "node", "nlt-worker3")
            cp.kubectl("label", "node", "worker", "disk-")
        wait(lambda: len(live_pods(cp, ns)) == 3, what="the removed node's pod goes")
        cp.kubectl("delete", "ds", "agent", "-n", ns)
        wait(lambda: not live_pods(cp, ns), what="pods gone with the DaemonSet")
    cp.kubectl("delete", "namespace", ns, "--wait=false")


def test_daemonset_rolling_update_with_surge_and_validation(cp):
    ns = "nlt-ds2"
    cp.kubectl("create", "namespace", ns)
    bad = cp.kubectl("apply", "-f", "-", input=ds_manifest(ns, updateStrategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}), check=False)
    assert "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is " \
           "non-zero" in bad.stderr
    bad = cp.kubectl("apply", "-f", "-", input=ds_manifest(ns, selector={}), check=False)
    assert "spec.selector" in bad.stderr
    held = HoldNew()
    with StandInKubelet(cp, held):
        cp.kubectl("apply", "-f", "-", input=ds_manifest(ns, updateStrategy={
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
        cp.kubectl("rollout", "status", "ds/agent", "-n", ns, "--timeout=20s", timeout=30)
        held.old = {p["metadata"]["name"] for p in live_pods(cp, ns)}
        cp.kubectl("set", "image", "ds/agent", "-n", ns, f"c={NEW_IMAGE}")
        # surge: one new pod beside the old ones, which stay while it is not available
        wait(lambda: len(live_pods(cp, ns)) == 3, what="a surge pod")
        time.sleep(1)
        pods = live_pods(cp, ns)
        assert len(pods) == 3 and held.old <= {p["metadata"]["name"] for p in pods}
        held.old = None  # the new pods become ready: the update goes on
        wait(lambda: (lambda ps: len(ps) == 2 and {p["spec"]["containers"][0]["image"] for p in ps} == {NEW_IMAGE})(
            live_pods(cp, ns)), timeout=30, what="all replaced")
        out = cp.kubectl("rollout", "status", "ds/agent", "-n", ns, "--timeout=20s", timeout=30).stdout
        assert 'daemon set "agent" successfully rolled out' in out
    cp.kubectl("delete", "namespace", ns, "--wait=false")


def test_rollout_undo_of_a_deployment_made_without_annotations(cp):
    """`kubectl create deployment` leaves no annotations; undo's JSON patch replaces
    /metadata/annotations, which the controller's revision annotation makes exist."""
    ns = "nlt-undo"
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("taint", "node", "control-plane", f"{CP_TAINT['key']}:NoSchedule-")
    try:
        with StandInKubelet(cp):
            cp.kubectl("create", "deployment", "web", "-n", ns, f"--image={IMAGE}", "--replicas=2")
            cp.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=20s", timeout=30)
            d = get(cp, "deploy", "web", ns)
            assert d["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}
            cp.kubectl("annotate", "deploy", "web", "-n", ns, "kubernetes.io/change-cause=first image")
            cp.kubectl("set", "image", "deploy/web", "-n", ns, f"agnhost={NEW_IMAGE}")
            cp.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=30s", timeout=40)
            assert get(cp, "deploy", "web", ns)["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
            out = cp.kubectl("rollout", "undo", "deployment/web", "-n", ns).stdout
            assert "deployment.apps/web rolled back" in out
            cp.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=30s", timeout=40)
            wait(lambda: {p["spec"]["containers"][0]["image"] for p in live_pods(cp, ns)} == {IMAGE}, timeout=30,
                 what="the first image back")
            d = get(cp, "deploy", "web", ns)
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
            rs = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r for r in items(cp, "rs", ns)}
            assert rs["3"]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
            hist = cp.kubectl("rollout", "history", "deploy/web", "-n", ns).stdout
            assert "first image" in hist
    finally:
        cp.kubectl("taint", "node", "control-plane", f"{CP_TAINT['key']}:NoSchedule")
    cp.kubectl("delete", "namespace", ns, "--wait=false")


def test_scheduler_affinity_gates_and_resources(cp):
    ns = "nlt-sched"
    cp.kubectl("create", "namespace", ns)

    def make(name: str, **spec) -> None:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns,
                                                                "labels": spec.pop("labels", {"app": "x"})},
                "spec": {"containers": [{"name": "c", "image": IMAGE, **spec.pop("container", {})}], **spec}}
        cp.kubectl("create", "-f", "-", input=json.dumps(body))

    def node_of(name: str):
        return get(cp, "pod", name, ns)["spec"].get("nodeName")

    make("pinned", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                                     "values": ["worker2"]}]}]}}})
    assert wait(lambda: node_of("pinned"), what="pinned bound") == "worker2"
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    make("apart", affinity=anti)
    assert wait(lambda: node_of("apart"), what="apart bound") == "worker"
    make("nowhere", affinity=anti)
    msg = wait(lambda: next((e["message"] for e in items(cp, "events", ns) if e["reason"] == "FailedScheduling"
                             and e["involvedObject"]["name"] == "nowhere"), None), what="FailedScheduling")
    assert msg.startswith("0/3 nodes are available: 1 node(s) had untolerated taint "
                          "{node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match pod anti-affinity rules.")
    make("hungry", labels={"app": "y"}, container={"resources": {"requests": {"cpu": "3"}}})
    msg = wait(lambda: next((e["message"] for e in items(cp, "events", ns) if e["reason"] == "FailedScheduling"
                             and e["involvedObject"]["name"] == "hungry"), None), what="FailedScheduling")
    assert "2 Insufficient cpu" in msg and "2 No preemption victims found for incoming pod" in msg
    make("gated", labels={"app": "z"}, schedulingGates=[{"name": "example.com/wait"}])
    wait(lambda: any(c.get("reason") == "SchedulingGated" for c in
                     get(cp, "pod", "gated", ns)["status"].get("conditions") or []), what="SchedulingGated")
    assert "SchedulingGated" in cp.kubectl("get", "pod", "gated", "-n", ns).stdout
    assert not node_of("gated")
    cp.kubectl("patch", "pod", "gated", "-n", ns, "--type=json", "-p",
               '[{"op":"remove","path":"/spec/schedulingGates"}]')
    assert wait(lambda: node_of("gated"), what="bound once ungated") in ("worker", "worker2")
    cp.kubectl("delete", "namespace", ns, "--wait=false")
