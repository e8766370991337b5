"""The scheduler's rules as pure functions (netlab/control/placement.py): taints, node affinity,
resources, inter-pod affinity and topology spread, with upstream's reasons; and the scheduler's
filter and score over them, without an API server."""

from __future__ import annotations

from netlab.control import placement
from netlab.control.scheduler import Scheduler


def node(name: str, zone: str = "a", taints=(), ready: bool = True, cpu: str = "2", memory: str = "4Gi",
         pods: str = "110", **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone,
                                                  **labels}},
            "spec": {"taints": list(taints)},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}}


def pod(name: str, node_name: str | None = None, ns: str = "default", labels: dict | None = None, **spec) -> dict:
    spec = {"containers": [{"name": "c", "image": "x"}], **spec}
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}, "uid": name}, "spec": spec,
            "status": {"phase": "Running" if node_name else "Pending"}}


class FakeInformer:
    def __init__(self, items):
        self.items = items

    def list(self):
        return list(self.items)

    def get(self, ns, name):
        return next((o for o in self.items if o["metadata"]["name"] == name), None)


def scheduler(nodes, pods) -> Scheduler:
    s = Scheduler.__new__(Scheduler)
    s.nodes, s.pods, s.namespaces = FakeInformer(nodes), FakeInformer(pods), FakeInformer([])
    s.claims, s.volumes, s.classes = FakeInformer([]), FakeInformer([]), FakeInformer([])
    return s


def test_quantities_and_requests():
    assert placement.quantity("100m") == 0.1 and placement.quantity("1Gi") == 2 ** 30
    assert placement.quantity("1e3") == 1000 and placement.quantity("500M") == 5e8 and placement.quantity("2") == 2
    spec = {"containers": [{"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                           {"resources": {"limits": {"cpu": "1"}}}],  # a limit stands for a missing request
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}]}
    req = placement.pod_requests(spec)
    assert req["cpu"] == 2000 and req["memory"] == 64 * 2 ** 20  # the larger of the init container and the sum


def test_tolerations_as_upstream_matches_them():
    taint = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    assert placement.tolerates({"key": taint["key"], "operator": "Exists"}, taint)
    assert placement.tolerates({"operator": "Exists"}, taint)  # no key: every taint
    assert not placement.tolerates({"key": taint["key"], "operator": "Exists", "effect": "NoExecute"}, taint)
    assert placement.tolerates({"key": "k", "value": "v", "effect": "NoSchedule"},
                               {"key": "k", "value": "v", "effect": "NoSchedule"})
    assert not placement.tolerates({"key": "k", "value": "w"}, {"key": "k", "value": "v", "effect": "NoSchedule"})


def test_node_affinity_terms_expressions_and_fields():
    n = node("worker", disk="ssd", gen="3")
    def spec(*terms):
        return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": list(terms)}}}}
    assert placement.required_affinity_matches(spec({"matchExpressions": [
        {"key": "disk", "operator": "In", "values": ["ssd"]}, {"key": "gen", "operator": "Gt", "values": ["2"]}]}), n)
    assert not placement.required_affinity_matches(spec({"matchExpressions": [
        {"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}), n)
    # terms are ORed; a DaemonSet pod's matchFields name the node
    assert placement.required_affinity_matches(spec({"matchExpressions": [{"key": "x", "operator": "Exists"}]},
                                                    {"matchFields": [{"key": "metadata.name", "operator": "In",
                                                                      "values": ["worker"]}]}), n)
    assert not placement.required_affinity_matches(spec({"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["worker2"]}]}), n)
    assert not placement.required_affinity_matches(spec({}), n)  # an empty term matches nothing
    assert not placement.required_affinity_matches({"nodeSelector": {"disk": "hdd"}}, n)
    prefs = {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 20, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
        {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}}]}}}
    assert placement.preferred_affinity_score(prefs, n) == 20


def test_failed_scheduling_message_counts_reasons_as_upstream():
    cp = node("control-plane", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    nodes = [cp, node("worker", cpu="1"), node("worker2", ready=False)]
    s = scheduler(nodes, [])
    big = pod("big", containers=[{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1500m"}}}])
    fits, why = s.filter(big)
    assert not fits
    assert why == ("0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint "
                   "{node-role.kubernetes.io/control-plane: }, 1 node(s) had untolerated taint "
                   "{node.kubernetes.io/not-ready: }. preemption: 0/3 nodes are available: 1 No preemption victims "
                   "found for incoming pod, 2 Preemption is not helpful for scheduling.")
    fits, _ = s.filter(pod("small", containers=[{"name": "c", "image": "x",
                                                  "resources": {"requests": {"cpu": "500m"}}}]))
    assert [n["metadata"]["name"] for n in fits] == ["worker"]
    # what is placed counts: two pods of 600m do not fit one core
    s = scheduler([node("worker", cpu="1")], [pod("a", "worker", containers=[
        {"name": "c", "image": "x", "resources": {"requests": {"cpu": "600m"}}}])])
    assert not s.filter(pod("b", containers=[{"name": "c", "image": "x",
                                               "resources": {"requests": {"cpu": "600m"}}}]))[0]
    s = scheduler([node("worker", pods="1")], [pod("a", "worker")])
    assert s.filter(pod("b"))[1].startswith("0/1 nodes are available: 1 Too many pods.")


def test_pod_anti_affinity_affinity_and_existing_anti_affinity():
    nodes = [node("n1", zone="a"), node("n2", zone="a"), node("n3", zone="b")]
    placed = [pod("web-1", "n1", labels={"app": "web"})]
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    s = scheduler(nodes, placed)
    fits, why = s.filter(pod("web-2", labels={"app": "web"}, affinity=anti))
    assert sorted(n["metadata"]["name"] for n in fits) == ["n2", "n3"]
    zone_anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}
    fits, _ = s.filter(pod("web-2", labels={"app": "web"}, affinity=zone_anti))
    assert [n["metadata"]["name"] for n in fits] == ["n3"]
    fits, why = scheduler(nodes[:2], placed).filter(pod("web-2", labels={"app": "web"}, affinity=zone_anti))
    assert not fits and "2 node(s) didn't match pod anti-affinity rules" in why
    # affinity: with the cache's zone; the first pod of a self-selecting group goes anywhere
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}
    s = scheduler(nodes, [pod("cache-1", "n3", labels={"app": "cache"})])
    assert [n["metadata"]["name"] for n in s.filter(pod("app", affinity=aff))[0]] == ["n3"]
    assert len(scheduler(nodes, []).filter(pod("cache-0", labels={"app": "cache"}, affinity=aff))[0]) == 3
    fits, why = scheduler(nodes, []).filter(pod("app", affinity=aff))
    assert not fits and "3 node(s) didn't match pod affinity rules" in why
    # an existing pod's anti-affinity keeps others of its selection away
    guard = pod("guard", "n1", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}})
    fits, why = scheduler(nodes[:1], [guard]).filter(pod("web-3", labels={"app": "web"}))
    assert not fits and "1 node(s) didn't satisfy existing pods anti-affinity rules" in why


def test_topology_spread_and_scores():
    nodes = [node("n1", zone="a"), node("n2", zone="b"), node("n3")]
    nodes[2]["metadata"]["labels"].pop("topology.kubernetes.io/zone")
    placed = [pod("w1", "n1", labels={"app": "w"}), pod("w2", "n1", labels={"app": "w"})]
    spread = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "w"}}}]
    fits, why = scheduler(nodes, placed).filter(pod("w3", labels={"app": "w"}, topologySpreadConstraints=spread))
    assert [n["metadata"]["name"] for n in fits] == ["n2"]
    assert why.startswith("0/3 nodes are available: 1 node(s) didn't match pod topology spread constraints, 1 node(s) "
                          "didn't match pod topology spread constraints (missing required label).")
    _, why = scheduler(nodes[:1] + nodes[2:], placed).filter(pod("w3", labels={"app": "w"},
                                                                 topologySpreadConstraints=spread))
    assert "1 node(s) didn't match pod topology spread constraints (missing required label)" in why
    # preferences: node affinity weight and ScheduleAnyway spread choose among the nodes that fit
    prefer = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In",
                                                            "values": ["a"]}]}}]}}
    s = scheduler(nodes, placed)
    assert s.score(pod("p", affinity=prefer), nodes)["metadata"]["name"] == "n1"
    anyway = [dict(spread[0], whenUnsatisfiable="ScheduleAnyway")]
    assert s.score(pod("w3", labels={"app": "w"}, topologySpreadConstraints=anyway), nodes[:2])["metadata"][
        "name"] == "n2"
    soft_anti = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "w"}},
                                            "topologyKey": "kubernetes.io/hostname"}}]}}
    assert s.score(pod("w3", labels={"app": "w"}, affinity=soft_anti), nodes[:2])["metadata"]["name"] == "n2"
