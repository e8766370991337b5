"""PersistentVolumes, PersistentVolumeClaims, StorageClasses, ResourceQuotas, LimitRanges and
PodTemplates through the API (against SQLite and a real etcd) and kubectl: defaults, 422s naming
the field, kubectl's columns, and the admission plugins (DefaultStorageClass, LimitRanger,
ResourceQuota) with upstream's messages."""

from __future__ import annotations

import time

import pytest

from tests.apikit import ControlPlane, etcd

PVS = "/api/v1/persistentvolumes"
PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"
SCS = "/apis/storage.k8s.io/v1/storageclasses"
PODS = "/api/v1/namespaces/default/pods"
QUOTAS = "/api/v1/namespaces/default/resourcequotas"
LIMITS = "/api/v1/namespaces/default/limitranges"


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cp(request):
    if request.param == "etcd":
        with etcd() as url, ControlPlane("nltsto-etcd", store=url) as plane:
            yield plane
    else:
        with ControlPlane("nltsto-sqlite") as plane:
            yield plane


def causes(body: dict) -> list[tuple[str, str]]:
    return [(c["field"], c["message"]) for c in body["details"]["causes"]]


def pv(name: str, **spec) -> dict:
    base = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": f"/tmp/{name}"}}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {k: val for k, val in base.items() if val is not None}}


def pvc(name: str, **spec) -> dict:
    base = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {k: val for k, val in base.items() if val is not None}}


def pod(name: str, resources: dict | None = None) -> dict:
    c = {"name": "c", "image": "busybox"}
    if resources is not None:
        c["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [c]}}


def test_persistent_volume_defaults_and_columns(cp):
    status, body = cp.api("POST", PVS, pv("nltpv-a", capacity={"storage": "1024Mi"}))
    assert status == 201, body
    assert body["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert body["spec"]["volumeMode"] == "Filesystem"
    assert body["spec"]["capacity"] == {"storage": "1Gi"}
    assert body["status"] == {"phase": "Pending"}
    assert "namespace" not in body["metadata"]
    out = cp.kubectl("get", "pv", "nltpv-a").stdout.splitlines()
    assert out[0].split() == ["NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY", "STATUS", "CLAIM",
                              "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"]
    assert out[1].split()[:5] == ["nltpv-a", "1Gi", "RWO", "Retain", "Pending"]
    assert "VOLUMEMODE" in cp.kubectl("get", "pv", "-o", "wide").stdout
    assert cp.api("DELETE", f"{PVS}/nltpv-a")[0] == 200


@pytest.mark.parametrize("spec, expected", [
    ({"accessModes": None}, [("spec.accessModes", "Required value")]),
    ({"accessModes": ["ReadWriteSometimes"]},
     [("spec.accessModes", 'Unsupported value: "ReadWriteSometimes": supported values: "ReadOnlyMany", '
                           '"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"')]),
    ({"capacity": None}, [("spec.capacity", "Required value"),
                          ("spec.capacity", 'Unsupported value: map[]: supported values: "storage"')]),
    ({"capacity": {"storage": "0"}}, [("spec.capacity[storage]", 'Invalid value: "0": must be greater than zero')]),
    ({"hostPath": None}, [("spec", "Required value: must specify a volume type")]),
    ({"persistentVolumeReclaimPolicy": "Keep"},
     [("spec.persistentVolumeReclaimPolicy", 'Unsupported value: "Keep": supported values: "Delete", "Recycle", '
                                             '"Retain"')]),
    ({"hostPath": None, "local": {"path": "/tmp/x"}},
     [("spec.nodeAffinity", "Required value: Local volume requires node affinity")]),
])
def test_persistent_volume_validation(cp, spec, expected):
    status, body = cp.api("POST", PVS, pv("nltpv-bad", **spec))
    assert status == 422 and body["reason"] == "Invalid", body
    assert causes(body) == expected
    assert body["message"].startswith('PersistentVolume "nltpv-bad" is invalid: ')


def test_persistent_volume_source_is_immutable(cp):
    assert cp.api("POST", PVS, pv("nltpv-imm"))[0] == 201
    status, body = cp.api("PATCH", f"{PVS}/nltpv-imm", {"spec": {"hostPath": {"path": "/tmp/other"}}},
                          "application/merge-patch+json")
    assert status == 422 and causes(body)[0][0] == "spec.persistentvolumesource", body
    cp.api("DELETE", f"{PVS}/nltpv-imm")


@pytest.mark.parametrize("spec, expected", [
    ({"accessModes": None}, [("spec.accessModes", "Required value: at least 1 access mode is required")]),
    ({"resources": {}}, [("spec.resources[storage]", "Required value")]),
    ({"resources": {"requests": {"storage": "-1Gi"}}},
     [("spec.resources[storage]", 'Invalid value: "-1Gi": must be greater than zero')]),
    ({"volumeMode": "Disk"}, [("spec.volumeMode", 'Unsupported value: "Disk": supported values: "Block", '
                                                  '"Filesystem"')]),
])
def test_claim_validation(cp, spec, expected):
    status, body = cp.api("POST", PVCS, pvc("nltpvc-bad", **spec))
    assert status == 422, body
    assert causes(body) == expected
    assert cp.api("GET", f"{PVCS}/nltpvc-bad")[0] == 404


def test_claim_spec_is_immutable_but_may_grow(cp):
    assert cp.api("POST", PVCS, pvc("nltpvc-imm", storageClassName=""))[0] == 201
    status, body = cp.api("PATCH", f"{PVCS}/nltpvc-imm", {"spec": {"accessModes": ["ReadWriteMany"]}},
                          "application/merge-patch+json")
    assert status == 422 and causes(body)[0][0] == "spec", body
    assert "spec is immutable after creation" in body["message"]
    status, body = cp.api("PATCH", f"{PVCS}/nltpvc-imm", {"spec": {"resources": {"requests": {"storage": "512Mi"}}}},
                          "application/merge-patch+json")
    # an unbound claim's request is part of its fixed spec; no claim may shrink
    assert status == 422 and ("spec.resources.requests.storage",
                              "Forbidden: field can not be less than previous value") in causes(body), body
    cp.api("DELETE", f"{PVCS}/nltpvc-imm")


def test_storage_class_defaults_validation_and_default_class(cp):
    status, body = cp.api("POST", SCS, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                        "metadata": {"name": "nltsc-plain"}, "provisioner": "example.com/x"})
    assert status == 201 and body["reclaimPolicy"] == "Delete" and body["volumeBindingMode"] == "Immediate", body
    status, body = cp.api("POST", SCS, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                        "metadata": {"name": "nltsc-bad"}, "volumeBindingMode": "Later"})
    assert status == 422 and causes(body) == [
        ("provisioner", "Required value"),
        ("volumeBindingMode", 'Unsupported value: "Later": supported values: "Immediate", "WaitForFirstConsumer"')]
    status, body = cp.api("PATCH", f"{SCS}/nltsc-plain", {"provisioner": "example.com/y"},
                          "application/merge-patch+json")
    assert status == 422 and causes(body) == [("provisioner", "Forbidden: updates to provisioner are forbidden.")]

    # DefaultStorageClass admission: a claim naming no class gets the default one; "" stays no class
    assert cp.api("POST", PVCS, pvc("nltpvc-before"))[1]["spec"].get("storageClassName") is None
    assert cp.api("POST", SCS, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                "metadata": {"name": "nltsc-default", "annotations": {
                                    "storageclass.kubernetes.io/is-default-class": "true"}},
                                "provisioner": "rancher.io/local-path",
                                "volumeBindingMode": "WaitForFirstConsumer"})[0] == 201
    assert cp.api("POST", PVCS, pvc("nltpvc-dflt"))[1]["spec"]["storageClassName"] == "nltsc-default"
    assert cp.api("POST", PVCS, pvc("nltpvc-none", storageClassName=""))[1]["spec"]["storageClassName"] == ""
    out = cp.kubectl("get", "sc").stdout.splitlines()
    assert out[0].split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION",
                              "AGE"]
    assert any(line.split()[:5] == ["nltsc-default", "(default)", "rancher.io/local-path", "Delete",
                                    "WaitForFirstConsumer"] for line in out), out
    out = cp.kubectl("get", "pvc", "nltpvc-dflt").stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS",
                              "VOLUMEATTRIBUTESCLASS", "AGE"]
    assert out[1].split()[:3] == ["nltpvc-dflt", "Pending", "nltsc-default"]
    for n in ("nltpvc-before", "nltpvc-dflt", "nltpvc-none"):
        cp.api("DELETE", f"{PVCS}/{n}")
    for n in ("nltsc-plain", "nltsc-default"):
        cp.api("DELETE", f"{SCS}/{n}")


def test_limit_range_defaults_and_bounds(cp):
    lr = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "nltlr"},
          "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
                               "defaultRequest": {"cpu": "250m"}, "max": {"cpu": "1"}, "min": {"cpu": "100m"}}]}}
    status, body = cp.api("POST", LIMITS, lr)
    assert status == 201, body
    out = cp.kubectl("get", "limits").stdout.splitlines()
    assert out[0].split() == ["NAME", "CREATED", "AT"] and out[1].split()[0] == "nltlr"
    status, body = cp.api("POST", PODS, pod("nltlr-defaulted"))
    assert status == 201, body
    res = body["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "128Mi"}}
    assert body["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c")
    status, body = cp.api("POST", PODS, pod("nltlr-big", {"limits": {"cpu": "2"}}))
    assert status == 403 and body["reason"] == "Forbidden", body
    assert body["message"] == ('pods "nltlr-big" is forbidden: maximum cpu usage per Container is 1, but limit is 2')
    status, body = cp.api("POST", LIMITS, {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "nltlr-bad"},
                                           "spec": {"limits": [{"type": "Container", "min": {"cpu": "2"},
                                                                "max": {"cpu": "1"}}]}})
    assert status == 422 and ("spec.limits[0][cpu]", 'Invalid value: "2": min value 2 is greater than max value 1') \
        in causes(body), body
    cp.api("DELETE", f"{PODS}/nltlr-defaulted")
    cp.api("DELETE", f"{LIMITS}/nltlr")


def test_resource_quota_refuses_what_exceeds_it(cp):
    q = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "nltquota"},
         "spec": {"hard": {"pods": "1", "requests.cpu": "1", "configmaps": "2"}}}
    assert cp.api("POST", QUOTAS, q)[0] == 201
    status, body = cp.api("POST", PODS, pod("nltq-nocpu"))
    assert status == 403 and body["message"] == ('pods "nltq-nocpu" is forbidden: failed quota: nltquota: must '
                                                 "specify requests.cpu for: c"), body
    assert cp.api("POST", PODS, pod("nltq-1", {"requests": {"cpu": "500m"}}))[0] == 201
    status, body = cp.api("POST", PODS, pod("nltq-2", {"requests": {"cpu": "600m"}}))
    assert status == 403, body
    assert body["message"] == ('pods "nltq-2" is forbidden: exceeded quota: nltquota, requested: pods=1,'
                               "requests.cpu=600m, used: pods=1,requests.cpu=500m, limited: pods=1,requests.cpu=1")
    status, body = cp.api("POST", QUOTAS, {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "nltq-bad"},
                                           "spec": {"hard": {"pods": "-1"}}})
    assert status == 422 and causes(body) == [("spec.hard[pods]", 'Invalid value: "-1": must be greater than or '
                                                                  "equal to 0")]
    assert "REQUEST" in cp.kubectl("get", "quota").stdout
    cp.api("DELETE", f"{PODS}/nltq-1")
    cp.api("DELETE", f"{QUOTAS}/nltquota")


def test_pod_templates_are_stored_and_listed(cp):
    t = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "nltpt"},
         "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    status, body = cp.api("POST", "/api/v1/namespaces/default/podtemplates", t)
    assert status == 201, body
    out = cp.kubectl("get", "podtemplates").stdout.splitlines()
    assert out[0].split() == ["NAME", "CONTAINERS", "IMAGES", "POD", "LABELS"]
    assert out[1].split() == ["nltpt", "c", "nginx", "app=web"]
    status, body = cp.api("POST", "/api/v1/namespaces/default/podtemplates",
                          dict(t, metadata={"name": "nltpt-bad"}, template={"spec": {"containers": []}}))
    assert status == 422 and causes(body) == [("template.spec.containers", "Required value")]
    cp.api("DELETE", "/api/v1/namespaces/default/podtemplates/nltpt")


@pytest.fixture(scope="module")
def managed():
    with ControlPlane("nltsto-ctl", components=("controllers",)) as plane:
        yield plane


def wait_for(pred, timeout: float = 20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (got := pred()):
            return got
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_binder_binds_a_claim_to_a_matching_volume_and_releases_it(managed):
    cp = managed
    assert cp.api("POST", PVS, pv("nltpv-small", capacity={"storage": "1Gi"}, storageClassName=""))[0] == 201
    assert cp.api("POST", PVS, pv("nltpv-big", capacity={"storage": "5Gi"}, storageClassName=""))[0] == 201
    wait_for(lambda: cp.api("GET", f"{PVS}/nltpv-small")[1]["status"]["phase"] == "Available")
    assert cp.api("POST", PVCS, pvc("nltpvc-c", storageClassName="",
                                    resources={"requests": {"storage": "512Mi"}}))[0] == 201
    claim = wait_for(lambda: (c := cp.api("GET", f"{PVCS}/nltpvc-c")[1])["status"]["phase"] == "Bound" and c)
    assert claim["spec"]["volumeName"] == "nltpv-small"
    assert claim["status"]["capacity"] == {"storage": "1Gi"} and claim["status"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    vol = wait_for(lambda: (x := cp.api("GET", f"{PVS}/nltpv-small")[1])["status"]["phase"] == "Bound" and x)
    assert vol["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    out = cp.kubectl("get", "pvc", "nltpvc-c").stdout.splitlines()[1].split()
    assert out[:5] == ["nltpvc-c", "Bound", "nltpv-small", "1Gi", "RWO"]
    cp.api("DELETE", f"{PVCS}/nltpvc-c")
    # Retain (a volume made by hand): Released, kept with its claimRef
    wait_for(lambda: cp.api("GET", f"{PVS}/nltpv-small")[1]["status"]["phase"] == "Released")
    for n in ("nltpv-small", "nltpv-big"):
        cp.api("DELETE", f"{PVS}/{n}")


def test_quota_status_counts_the_namespace(managed):
    cp = managed
    ns = "/api/v1/namespaces/default"
    q = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "nltq"},
         "spec": {"hard": {"configmaps": "10", "secrets": "10", "requests.memory": "1Gi", "pods": "5"}}}
    assert cp.api("POST", f"{ns}/resourcequotas", q)[0] == 201
    base = wait_for(lambda: (cp.api("GET", f"{ns}/resourcequotas/nltq")[1].get("status") or {}).get("used"))
    assert base["pods"] == "0" and base["requests.memory"] == "0"
    cms = int(base["configmaps"])
    assert cp.api("POST", f"{ns}/configmaps", {"metadata": {"name": "nltq-cm"}})[0] == 201
    assert cp.api("POST", PODS, pod("nltq-p", {"requests": {"memory": "64Mi"}}))[0] == 201
    used = wait_for(lambda: (u := cp.api("GET", f"{ns}/resourcequotas/nltq")[1]["status"]["used"])["pods"] == "1"
                    and int(u["configmaps"]) == cms + 1 and u)
    assert used["requests.memory"] == "64Mi"
    out = cp.kubectl("get", "quota", "nltq").stdout.splitlines()
    assert out[0].split() == ["NAME", "AGE", "REQUEST", "LIMIT"]
    assert f"configmaps: {cms + 1}/10, pods: 1/5, requests.memory: 64Mi/1Gi, secrets:" in out[1]
    for path in (f"{ns}/configmaps/nltq-cm", f"{PODS}/nltq-p", f"{ns}/resourcequotas/nltq"):
        cp.api("DELETE", path)


def test_a_claim_in_use_stays_until_its_pod_is_gone(managed):
    cp = managed
    status, claim = cp.api("POST", PVCS, pvc("nltpvc-used", storageClassName=""))
    assert status == 201 and claim["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    user = pod("nltpvc-user")
    user["spec"]["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": "nltpvc-used"}}]
    assert cp.api("POST", PODS, user)[0] == 201
    cp.api("DELETE", f"{PVCS}/nltpvc-used")
    time.sleep(1)  # the protection controller has seen it, and keeps it
    out = cp.kubectl("get", "pvc", "nltpvc-used").stdout.splitlines()[1].split()
    assert out[:2] == ["nltpvc-used", "Terminating"]
    cp.api("DELETE", f"{PODS}/nltpvc-user")
    wait_for(lambda: cp.api("GET", f"{PVCS}/nltpvc-used")[0] == 404)
    status, vol = cp.api("POST", PVS, pv("nltpv-prot"))
    assert vol["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    cp.api("DELETE", f"{PVS}/nltpv-prot")
    wait_for(lambda: cp.api("GET", f"{PVS}/nltpv-prot")[0] == 404)  # not bound: it goes


TASK_PV = """
apiVersion: v1
kind: PersistentVolume
metadata:
  name: task-pv-volume
  labels:
    type: local
spec:
  storageClassName: manual
  capacity:
    storage: 10Gi
  accessModes:
    - ReadWriteOnce
  hostPath:
    path: "/mnt/data"
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: task-pv-claim
spec:
  storageClassName: manual
  accessModes:
    - ReadWriteOnce
  resources:
    requests:
      storage: 3Gi
"""


def test_the_websites_persistent_volume_task(managed):
    """pods/storage/pv-volume.yaml and pv-claim.yaml, as the website's task applies them."""
    cp = managed
    cp.kubectl("apply", "-f", "-", input=TASK_PV)
    wait_for(lambda: cp.api("GET", f"{PVCS}/task-pv-claim")[1]["status"]["phase"] == "Bound")
    wait_for(lambda: cp.api("GET", f"{PVS}/task-pv-volume")[1]["status"]["phase"] == "Bound")
    out = cp.kubectl("get", "pv,pvc").stdout.splitlines()
    pv_row = next(line.split() for line in out if line.startswith("persistentvolume/task-pv-volume"))
    assert pv_row[:8] == ["persistentvolume/task-pv-volume", "10Gi", "RWO", "Retain", "Bound",
                          "default/task-pv-claim", "manual", "<unset>"]
    pvc_row = next(line.split() for line in out if line.startswith("persistentvolumeclaim/task-pv-claim"))
    assert pvc_row[:7] == ["persistentvolumeclaim/task-pv-claim", "Bound", "task-pv-volume", "10Gi", "RWO", "manual",
                           "<unset>"]
    cp.kubectl("delete", "-f", "-", "--wait=true", input=TASK_PV, timeout=60)


def test_statefulset_claims_go_with_it_when_asked(managed):
    """persistentVolumeClaimRetentionPolicy.whenDeleted: Delete: the set owns its claims, and the
    garbage collector removes them with it; the default (Retain) keeps them."""
    cp = managed
    sets = "/apis/apps/v1/namespaces/default/statefulsets"

    def sts(name: str, when_deleted: str | None) -> dict:
        spec = {"serviceName": name, "replicas": 1, "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                             "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
        if when_deleted:
            spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": when_deleted}
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name}, "spec": spec}
    status, body = cp.api("POST", sets, sts("nltkeep", None))
    assert status == 201 and body["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain", "whenScaled": "Retain"}
    assert cp.api("POST", sets, sts("nltgone", "Delete"))[0] == 201
    kept = wait_for(lambda: (c := cp.api("GET", f"{PVCS}/data-nltkeep-0"))[0] == 200 and c[1])
    gone = wait_for(lambda: (c := cp.api("GET", f"{PVCS}/data-nltgone-0"))[0] == 200 and c[1])
    assert "ownerReferences" not in kept["metadata"]
    assert [r["kind"] for r in gone["metadata"]["ownerReferences"]] == ["StatefulSet"]
    assert kept["metadata"]["labels"] == {"app": "nltkeep"}
    status, body = cp.api("POST", sets, dict(sts("nltbadclaim", None), spec=dict(
        sts("nltbadclaim", None)["spec"], volumeClaimTemplates=[{"metadata": {"name": "d"}, "spec": {}}])))
    assert status == 422 and ("spec.volumeClaimTemplates[0].spec.accessModes",
                              "Required value: at least 1 access mode is required") in causes(body), body
    for name in ("nltkeep", "nltgone"):
        cp.api("DELETE", f"{sets}/{name}")
    wait_for(lambda: cp.api("GET", f"{PVCS}/data-nltgone-0")[0] == 404, timeout=30)
    time.sleep(1)
    assert cp.api("GET", f"{PVCS}/data-nltkeep-0")[0] == 200
    cp.api("DELETE", f"{PVCS}/data-nltkeep-0")


def test_statefulset_scaled_down_deletes_the_condemned_claims_when_asked(managed):
    cp = managed
    sets = "/apis/apps/v1/namespaces/default/statefulsets"
    body = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "nltscale"}, "spec": {
        "serviceName": "nltscale", "replicas": 2, "podManagementPolicy": "Parallel",
        "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete"},
        "selector": {"matchLabels": {"app": "nltscale"}},
        "template": {"metadata": {"labels": {"app": "nltscale"}}, "spec": {"containers": [{"name": "c",
                                                                                          "image": "busybox"}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}
    assert cp.api("POST", sets, body)[0] == 201
    for n in (0, 1):
        wait_for(lambda n=n: cp.api("GET", f"{PVCS}/data-nltscale-{n}")[0] == 200)
    cp.kubectl("scale", "sts", "nltscale", "--replicas=1")
    wait_for(lambda: cp.api("GET", f"{PVCS}/data-nltscale-1")[0] == 404, timeout=30)
    assert cp.api("GET", f"{PVCS}/data-nltscale-0")[0] == 200  # the member kept keeps its claim
    cp.api("DELETE", f"{sets}/nltscale")
    cp.api("DELETE", f"{PVCS}/data-nltscale-0")
