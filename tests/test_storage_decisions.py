"""The decisions of the PersistentVolume binder, the scheduler's volume binding and the quota
counting, as pure functions of the objects (the lab tests run them for real)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from netlab.api import quantity, quota
from netlab.control import volumebinding
from netlab.control.controllers import persistentvolume as pvc_ctl
from netlab.control.controllers.resourcequota import status_of


def pv(name: str, size: str = "1Gi", modes=("ReadWriteOnce",), cls: str = "", claim: dict | None = None,
       labels: dict | None = None, node: str | None = None) -> dict:
    spec = {"capacity": {"storage": size}, "accessModes": list(modes), "hostPath": {"path": f"/x/{name}"}}
    if cls:
        spec["storageClassName"] = cls
    if claim:
        spec["claimRef"] = claim
    if node:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec, "status": {"phase": "Available"}}


def pvc(name: str, size: str = "1Gi", modes=("ReadWriteOnce",), cls: str | None = "", uid: str = "u1",
        **spec) -> dict:
    s = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}, **spec}
    if cls is not None:
        s["storageClassName"] = cls
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid}, "spec": s, "status": {"phase": "Pending"}}


def test_the_smallest_volume_that_fits_is_chosen():
    vols = [pv("big", "10Gi"), pv("small", "2Gi"), pv("tiny", "500Mi"), pv("rox", "2Gi", modes=("ReadOnlyMany",))]
    assert pvc_ctl.find_volume(pvc("c", "1Gi"), vols)["metadata"]["name"] == "small"
    assert pvc_ctl.find_volume(pvc("c", "20Gi"), vols) is None


def test_class_selector_and_modes_must_match():
    vols = [pv("fast", cls="fast"), pv("plain"), pv("labelled", labels={"tier": "gold"}),
            pv("both", modes=("ReadWriteOnce", "ReadOnlyMany"))]
    assert pvc_ctl.find_volume(pvc("c", cls="fast"), vols)["metadata"]["name"] == "fast"
    assert pvc_ctl.find_volume(pvc("c", cls="slow"), vols) is None
    assert pvc_ctl.find_volume(pvc("c", selector={"matchLabels": {"tier": "gold"}}), vols)["metadata"]["name"] \
        == "labelled"
    assert pvc_ctl.find_volume(pvc("c", modes=("ReadWriteOnce", "ReadOnlyMany")), vols)["metadata"]["name"] == "both"


def test_a_bound_volume_is_not_taken_and_a_prebound_one_waits_for_its_claim():
    taken = pv("taken", claim={"namespace": "ns", "name": "other", "uid": "u9"})
    prebound = pv("pre", "5Gi", claim={"namespace": "ns", "name": "mine"})
    assert pvc_ctl.find_volume(pvc("c"), [taken]) is None
    assert pvc_ctl.find_volume(pvc("mine"), [pv("free"), prebound])["metadata"]["name"] == "pre"
    assert pvc_ctl.find_volume(pvc("c", volumeName="free"), [pv("free"), pv("a")])["metadata"]["name"] == "free"
    assert pvc_ctl.find_volume(pvc("c", volumeName="taken"), [taken]) is None


def test_phases_follow_the_claims():
    claim = pvc("c", uid="u1", volumeName="v")
    bound = pv("v", claim={"namespace": "ns", "name": "c", "uid": "u1"})
    assert pvc_ctl.volume_phase(pv("free"), {}) == "Available"
    assert pvc_ctl.volume_phase(bound, {("ns", "c"): claim}) == "Bound"
    assert pvc_ctl.volume_phase(bound, {}) == "Released"  # its claim is gone
    assert pvc_ctl.volume_phase(bound, {("ns", "c"): pvc("c", uid="u2")}) == "Released"  # another claim, same name
    assert pvc_ctl.volume_phase(pv("pre", claim={"namespace": "ns", "name": "c"}), {}) == "Available"


def test_the_local_provisioners_volume():
    claim = pvc("data", "64Mi", uid="abc", cls="standard")
    sc = {"metadata": {"name": "standard"}, "reclaimPolicy": "Delete"}
    vol = pvc_ctl.local_volume(claim, sc, "worker", Path("/s/nodes/worker/local-path/pvc-abc_ns_data"))
    assert vol["metadata"]["name"] == "pvc-abc"
    assert vol["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "rancher.io/local-path"
    assert vol["spec"]["hostPath"] == {"path": "/s/nodes/worker/local-path/pvc-abc_ns_data", "type": "DirectoryOrCreate"}
    assert vol["spec"]["claimRef"]["uid"] == "abc" and vol["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    # the binder takes the volume made for the claim over any other that fits
    assert pvc_ctl.find_volume(claim, [pv("other", "1Gi", cls="standard"), vol])["metadata"]["name"] == "pvc-abc"


def test_scheduler_volume_binding():
    node = {"metadata": {"name": "worker", "labels": {"kubernetes.io/hostname": "worker"}}}
    other = {"metadata": {"name": "worker2", "labels": {"kubernetes.io/hostname": "worker2"}}}
    pod = {"metadata": {"namespace": "ns", "name": "p"},
           "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}}
    wffc = {"metadata": {"name": "standard"}, "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer"}
    immediate = {"metadata": {"name": "now"}, "provisioner": "x", "volumeBindingMode": "Immediate"}
    classes = {"standard": wffc, "now": immediate}

    def run(claims: dict, volumes: dict):
        c, v, s = (lambda ns, n: claims.get(n)), (lambda ns, n: volumes.get(n)), (lambda ns, n: classes.get(n))
        return (volumebinding.prefilter(pod, c, s), volumebinding.node_reason(pod, node, c, v, s),
                volumebinding.node_reason(pod, other, c, v, s), volumebinding.to_provision(pod, c))
    assert run({}, {})[0] == 'persistentvolumeclaim "c" not found'
    assert run({"c": pvc("c", cls="now")}, {})[0] == "pod has unbound immediate PersistentVolumeClaims"
    pre, here, there, todo = run({"c": pvc("c", cls="standard")}, {})
    assert (pre, here, there, [x["metadata"]["name"] for x in todo]) == (None, None, None, ["c"])
    bound = pvc("c", cls="standard", volumeName="v")
    pre, here, there, todo = run({"c": bound}, {"v": pv("v", node="worker")})
    assert (pre, here, there, todo) == (None, None, volumebinding.CONFLICT, [])


def test_quota_counts_and_formats():
    p = {"spec": {"containers": [{"resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                                                "limits": {"cpu": "500m", "memory": "128Mi"}}},
                                 {"resources": {"requests": {"cpu": "250m"}}}]}, "status": {"phase": "Running"}}
    u = quota.usage("pods", "", p)
    assert u["pods"] == 1 and u["count/pods"] == 1
    assert u["requests.cpu"] == Fraction(1, 2) and u["limits.memory"] == 128 * 2 ** 20
    assert quota.usage("pods", "", dict(p, status={"phase": "Succeeded"})) == {}  # done pods are not counted
    svc = {"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}}
    assert quota.usage("services", "", svc)["services.nodeports"] == 2
    claim = pvc("c", "1Gi", cls="standard")
    assert quota.usage("persistentvolumeclaims", "", claim)["standard.storageclass.storage.k8s.io/requests.storage"] \
        == 2 ** 30
    q = {"spec": {"hard": {"pods": "10", "requests.cpu": "2", "requests.memory": "1Gi", "limits.memory": "2Gi"}}}
    assert status_of(q, {("pods", ""): [p, p]}) == {
        "hard": q["spec"]["hard"],
        "used": {"pods": "2", "requests.cpu": "1", "requests.memory": "128Mi", "limits.memory": "256Mi"}}
    assert quantity.canonical("1536Mi") == "1536Mi" and quantity.canonical("2048Mi") == "2Gi"
    assert quantity.format(Fraction(3, 2)) == "1500m"
