"""netlab explain's step assembly (netlab.tools.podflow) on recorded inputs: a pod's objects,
its namespace's events and slices, and the components' log lines, as a lab wrote them."""

# ruff: noqa: E501  (the recorded log lines are as long as the components wrote them)
from __future__ import annotations

import copy

from netlab.tools import podflow

UID, RS_UID = "9b1c0f6e-0000-4000-8000-000000000001", "9b1c0f6e-0000-4000-8000-0000000000aa"
RS = {"kind": "ReplicaSet", "metadata": {
    "name": "web-5d9c7b", "namespace": "default", "uid": RS_UID, "creationTimestamp": "2026-12-02T05:20:00Z",
    "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d", "controller": True}]}}
POD = {
    "metadata": {"name": "web-5d9c7b-x2x9q", "namespace": "default", "uid": UID,
                 "creationTimestamp": "2026-12-02T05:20:00Z",
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c7b",
                                      "uid": RS_UID, "controller": True, "blockOwnerDeletion": True}]},
    "spec": {"nodeName": "worker", "containers": [{"name": "web"}]},
    "status": {"phase": "Running", "podIP": "10.244.1.7", "conditions": [
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-12-02T05:20:01Z"},
        {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-02T05:20:01Z"},
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-02T05:20:02Z"},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-02T05:20:02Z"},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-02T05:20:00Z"}],
        "containerStatuses": [{"name": "web", "ready": True,
                               "state": {"running": {"startedAt": "2026-12-02T05:20:01Z"}}}]}}
EVENTS = [
    {"involvedObject": {"kind": "ReplicaSet", "name": "web-5d9c7b", "uid": RS_UID}, "reason": "SuccessfulCreate",
     "message": "Created pod: web-5d9c7b-x2x9q", "source": {"component": "replicaset-controller"},
     "firstTimestamp": "2026-12-02T05:20:00Z"},
    {"involvedObject": {"kind": "Pod", "name": "web-5d9c7b-x2x9q", "uid": UID}, "reason": "Scheduled",
     "message": "Successfully assigned default/web-5d9c7b-x2x9q to worker",
     "source": {"component": "default-scheduler"}, "firstTimestamp": "2026-12-02T05:20:00Z"}]
SLICES = [{"metadata": {"name": "web-abcde", "labels": {"kubernetes.io/service-name": "web"}},
           "endpoints": [{"addresses": ["10.244.1.7"], "conditions": {"ready": True},
                          "targetRef": {"kind": "Pod", "name": "web-5d9c7b-x2x9q", "uid": UID}}]}]
NODES = ["control-plane", "worker", "worker2"]
LOGS = {
    "kubelet-worker": f"""\
2026-12-02 05:20:00,412 INFO netlab.node.kubelet: SyncLoop ADD pod="default/web-5d9c7b-x2x9q"
2026-12-02 05:20:00,518 INFO netlab.kubelet: Creating PodSandbox pod="default/web-5d9c7b-x2x9q" podUID={UID}
2026-12-02 05:20:00,601 INFO netlab.node.kubelet.pods: CNI ADD pod="default/web-5d9c7b-x2x9q" podUID={UID} ips=10.244.1.7/24
2026-12-02 05:20:00,733 INFO netlab.node.kubelet.pods: container started pod="default/web-5d9c7b-x2x9q" containerName="web" pid=4242
""",
    "kube-controller-manager": """\
2026-12-02 05:20:00,700 INFO endpointslice: updated EndpointSlice default/web-abcde service="default/web" endpoints=web-5d9c7b-x2x9q=10.244.1.7:notready
2026-12-02 05:20:02,105 INFO endpointslice: updated EndpointSlice default/web-abcde service="default/web" endpoints=web-5d9c7b-x2x9q=10.244.1.7:ready
Traceback (most recent call last):
""",
    # control-plane synced before the slice (not it), then after; worker2 only after
    "kube-proxy-control-plane": """\
2026-12-02 05:20:00,800 INFO proxy.daemon: SyncProxyRules complete kind=partial servicePorts=3 elapsed=0.004s services="default/web"
2026-12-02 05:20:02,160 INFO proxy.daemon: SyncProxyRules complete kind=partial servicePorts=3 elapsed=0.005s services="default/other"
2026-12-02 05:20:02,190 INFO proxy.daemon: SyncProxyRules complete kind=partial servicePorts=3 elapsed=0.006s services="default/other,default/web"
""",
    "kube-proxy-worker": """\
2026-12-02 05:20:02,150 INFO proxy.daemon: SyncProxyRules complete kind=partial servicePorts=3 elapsed=0.012s services="default/web"
""",
    "kube-proxy-worker2": """\
2026-12-02 05:20:02,170 INFO proxy.daemon: SyncProxyRules complete kind=full servicePorts=3 elapsed=0.020s services="default/web"
""",
}


def logs(**drop: bool) -> dict:
    return {c: podflow.parse_log(c, text) for c, text in LOGS.items() if not drop.get(c.replace("-", "_"))}


def by_step(steps):
    return {s.step: s for s in steps}


def ms(dt) -> str:
    return dt.astimezone().strftime("%H:%M:%S.%f")[:-3]


def test_the_owner_and_eight_steps_in_order_with_their_times():
    steps = podflow.assemble(POD, RS, EVENTS, SLICES, logs(), NODES)
    assert [s.step for s in steps] == ["owner", *podflow.STEPS]
    s = by_step(steps)
    assert "ReplicaSet web-5d9c7b stored (owned by Deployment web)" == s["owner"].what
    assert s["created"].who == "replicaset-controller"
    assert "ownerReferences: ReplicaSet/web-5d9c7b controller=true" in s["created"].what
    assert s["scheduled"].what == "Successfully assigned default/web-5d9c7b-x2x9q to worker"
    # the log lines time the node's steps to the millisecond
    assert ms(s["sandbox"].when) == "05:20:00.518" and s["sandbox"].who == "kubelet (worker)"
    assert ms(s["network"].when) == "05:20:00.601" and "10.244.1.7/24" in s["network"].what
    assert ms(s["started"].when) == "05:20:00.733"
    # the first slice write with the pod ready, not the earlier not-ready one
    assert ms(s["endpoints"].when) == "05:20:02.105" and "default/web" in s["endpoints"].what
    # each node's first sync of the Service after that write; the step is done when the last is
    rows = {r.who: ms(r.when) for r in s["rules"].rows}
    assert rows == {"kube-proxy (control-plane)": "05:20:02.190", "kube-proxy (worker)": "05:20:02.150",
                    "kube-proxy (worker2)": "05:20:02.170"}
    assert ms(s["rules"].when) == "05:20:02.190" and "on 3/3 nodes" in s["rules"].what
    table = podflow.render(steps)
    assert table.splitlines()[0].split() == ["STEP", "WHAT", "TIME", "SINCE", "POD", "WHO", "DETAIL"]
    assert "+2.190s" in table and "+0s" in table  # the API's times in whole seconds, the logs' in ms


def test_without_the_logs_the_api_times_the_steps_to_the_second():
    steps = by_step(podflow.assemble(POD, RS, EVENTS, SLICES, {}, NODES))
    assert steps["sandbox"].what == "PodReadyToStartContainers=True" and steps["sandbox"].when.second == 1
    assert steps["network"].when is None and "10.244.1.7" in steps["network"].what
    assert steps["started"].when.second == 1
    assert steps["endpoints"].when is None and "default/web" in steps["endpoints"].what
    assert steps["rules"].when is None and "0/3 nodes" in steps["rules"].what


def test_a_node_that_has_not_synced_leaves_the_rules_step_open():
    steps = by_step(podflow.assemble(POD, RS, EVENTS, SLICES, logs(kube_proxy_worker2=True), NODES))
    assert steps["rules"].when is None and "on 2/3 nodes" in steps["rules"].what
    assert [r.what for r in steps["rules"].rows][2] == "no sync of them logged"


def test_a_pending_pod_says_what_is_missing():
    pod = copy.deepcopy(POD)
    pod["spec"].pop("nodeName")
    pod["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient cpu."}]}
    steps = by_step(podflow.assemble(pod, RS, EVENTS[:1], [], {}, NODES))
    assert steps["created"].when is not None
    assert steps["scheduled"].when is None and steps["scheduled"].what == "0/3 nodes are available: 3 Insufficient cpu."
    assert all(steps[k].when is None for k in podflow.STEPS[2:])
    assert "no Service rules" in steps["rules"].what


def test_a_pod_without_an_owner():
    pod = copy.deepcopy(POD)
    pod["metadata"].pop("ownerReferences")
    steps = by_step(podflow.assemble(pod, None, [], SLICES, logs(), NODES))
    assert steps["owner"].what.startswith("none: the Pod was created directly")
    assert steps["created"].who == "a client"


def test_the_live_lines():
    assert podflow.describe("pods", "ADDED", POD).startswith(
        "Pod/web-5d9c7b-x2x9q ADDED owner=ReplicaSet/web-5d9c7b node=worker ip=10.244.1.7 phase=Running")
    assert podflow.describe("endpointslices", "MODIFIED", SLICES[0]) == \
        "EndpointSlice/web-abcde MODIFIED service=web endpoints=[10.244.1.7(ready)]"
    assert podflow.describe("events", "ADDED", EVENTS[1]) == (
        "Event Pod/web-5d9c7b-x2x9q Scheduled (default-scheduler): "
        "Successfully assigned default/web-5d9c7b-x2x9q to worker")
    assert podflow.describe("events", "DELETED", EVENTS[1]) is None


def test_lines_of_an_earlier_pod_of_the_same_name_do_not_count():
    pod = copy.deepcopy(POD)
    pod["metadata"]["creationTimestamp"] = "2026-12-02T05:20:02Z"  # made again, after those lines
    steps = by_step(podflow.assemble(pod, RS, EVENTS, SLICES, logs(), NODES))
    assert not steps["started"].precise and steps["started"].when.second == 1  # the API's, not the old line
    assert steps["endpoints"].when is not None  # 05:20:02.105 is after the second it was made in


def test_follow_prints_the_watch_events_and_the_step_lines_of_the_logs(tmp_path):
    # against the real API server and controllers (no kubelet: the pod stays Pending)
    import asyncio
    import io

    from netlab.api.client import Client
    from tests.apikit import ControlPlane

    log = tmp_path / "kubelet-worker.log"
    log.write_text("2026-12-02 05:00:00,000 INFO netlab.kubelet: before the follow: not news\n")
    out = io.StringIO()
    with ControlPlane("nltflow", components=("controllers",)) as plane:
        async def go():
            async with Client.from_kubeconfig(plane.kubeconfig) as c:
                stop = asyncio.Event()
                task = asyncio.create_task(podflow.follow(c, "default", tmp_path, out, stop))
                await asyncio.sleep(1)
                await c.create("deployments", {"apiVersion": "apps/v1", "kind": "Deployment",
                                               "metadata": {"name": "nlt-f", "namespace": "default"}, "spec": {
                    "replicas": 1, "selector": {"matchLabels": {"app": "nlt-f"}},
                    "template": {"metadata": {"labels": {"app": "nlt-f"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
                with open(log, "a") as f:
                    f.write(f'2026-12-02 05:00:01,234 INFO netlab.kubelet: CNI ADD pod="default/p" podUID={UID} ips=10.244.1.9/24\n'
                            "2026-12-02 05:00:01,300 INFO netlab.kubelet: SyncLoop ADD pod=\"default/p\"\n")
                for _ in range(100):
                    if "Event ReplicaSet/nlt-f-" in out.getvalue() and "CNI ADD" in out.getvalue():
                        break
                    await asyncio.sleep(0.1)
                stop.set()
                await task
        asyncio.run(go())
    text = out.getvalue()
    assert "ReplicaSet/nlt-f-" in text and " ADDED replicas=1" in text
    assert " ADDED owner=ReplicaSet/nlt-f-" in text and "phase=" in text
    assert "SuccessfulCreate (replicaset-controller): Created pod: nlt-f-" in text
    # a step's log line, with the time it was written; other lines and what was there before: not
    cni = next(line for line in text.splitlines() if "CNI ADD" in line)
    assert cni.startswith(ms(podflow.parse_log("k", "2026-12-02 05:00:01,234 I x: y")[0].when)) and "kubelet-worker" in cni
    assert "SyncLoop" not in text and "not news" not in text
