"""Volumes in a running lab: a claim of the default StorageClass binds once a pod uses it (the
scheduler picks the node, the local provisioner makes the volume there), a pod writes a file, a
new pod with the same claim reads it back; deleting the claim removes the volume and its
directory (reclaimPolicy Delete). A StatefulSet's claim templates give each member its own claim,
kept across the pods' deletion. `kubectl get pv,pvc,sc` prints upstream's columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

CLAIM = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: nltdata}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
"""


def writer(name: str, command: str) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "{command}"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: nltdata}}}}]
"""


def get(lab, *args: str) -> dict:
    return json.loads(lab.kubectl("get", *args, "-o", "json").stdout)


def running(lab, name: str) -> dict | None:
    pod = get(lab, "pod", name)
    return pod if (pod.get("status") or {}).get("phase") == "Running" else None


def test_claim_binds_on_first_consumer_and_data_outlives_the_pod(netlab_lab):
    lab = netlab_lab
    lab.kubectl("apply", "-f", "-", input=CLAIM)
    try:
        pvc = get(lab, "pvc", "nltdata")
        assert pvc["spec"]["storageClassName"] == "standard"  # DefaultStorageClass admission
        assert pvc["status"]["phase"] == "Pending"  # WaitForFirstConsumer: no volume before a pod
        sc = lab.kubectl("get", "sc").stdout
        assert "standard (default)" in sc and "rancher.io/local-path" in sc and "WaitForFirstConsumer" in sc
        lab.kubectl("apply", "-f", "-", input=writer("nltw", "echo hello-from-w > /data/f; sleep 3600"))
        pod = lab.wait(lambda: running(lab, "nltw"), timeout=90, what="nltw runs")
        pvc = get(lab, "pvc", "nltdata")
        assert pvc["status"]["phase"] == "Bound"
        assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == pod["spec"]["nodeName"]
        pv = get(lab, "pv", pvc["spec"]["volumeName"])
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == \
            [pod["spec"]["nodeName"]]
        directory = Path(pv["spec"]["hostPath"]["path"])
        assert directory.name == f"{pv['metadata']['name']}_default_nltdata"
        lab.wait(lambda: (directory / "f").exists(), timeout=30, what="the pod's file in the volume's directory")
        assert (directory / "f").read_text() == "hello-from-w\n"
        rows = lab.kubectl("get", "pvc", "nltdata").stdout.splitlines()
        assert rows[1].split()[:6] == ["nltdata", "Bound", pv["metadata"]["name"], "64Mi", "RWO", "standard"]
        rows = lab.kubectl("get", "pv", pv["metadata"]["name"]).stdout.splitlines()
        assert rows[1].split()[1:7] == ["64Mi", "RWO", "Delete", "Bound", "default/nltdata", "standard"]

        lab.kubectl("delete", "pod", "nltw", "--wait=true", timeout=60)
        lab.kubectl("apply", "-f", "-", input=writer("nltr", "cat /data/f; sleep 3600"))
        reader = lab.wait(lambda: running(lab, "nltr"), timeout=90, what="nltr runs")
        assert reader["spec"]["nodeName"] == pod["spec"]["nodeName"]  # the local volume's node
        lab.wait(lambda: "hello-from-w" in lab.kubectl("logs", "nltr").stdout, timeout=30, what="nltr reads the file")
        lab.kubectl("delete", "pod", "nltr", "--wait=true", timeout=60)

        # the claim goes: its volume (Delete) and the directory go too
        lab.kubectl("delete", "pvc", "nltdata", "--wait=true", timeout=60)
        lab.wait(lambda: lab.kubectl("get", "pv", pv["metadata"]["name"], check=False).returncode != 0, timeout=60,
                 what="the released volume deleted")
        assert not directory.exists()
    finally:
        lab.kubectl("delete", "pod", "nltw", "nltr", "--ignore-not-found", "--wait=false")
        lab.kubectl("delete", "pvc", "nltdata", "--ignore-not-found", "--wait=false")


STATEFULSET = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: nltdb}
spec:
  serviceName: nltdb
  replicas: 2
  selector: {matchLabels: {app: nltdb}}
  template:
    metadata: {labels: {app: nltdb}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: busybox
        command: [sh, -c, "[ -f /data/name ] || hostname > /data/name; cat /data/name; sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 16Mi}}
"""


def test_statefulset_members_keep_their_claims(netlab_lab):
    lab = netlab_lab
    lab.kubectl("apply", "-f", "-", input=STATEFULSET)
    try:
        sts = get(lab, "sts", "nltdb")
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}

        def running() -> list[dict]:
            pods = get(lab, "pods", "-l", "app=nltdb")["items"]
            return pods if len(pods) == 2 and all(p["status"].get("phase") == "Running"
                                                  and not p["metadata"].get("deletionTimestamp") for p in pods) else []
        first = {p["metadata"]["name"]: p["metadata"]["uid"] for p in lab.wait(running, timeout=120, what="2 run")}
        claims = {c["metadata"]["name"]: c for c in get(lab, "pvc", "-l", "app=nltdb")["items"]}
        assert sorted(claims) == ["data-nltdb-0", "data-nltdb-1"]
        assert all(c["status"]["phase"] == "Bound" for c in claims.values())
        for name in first:
            lab.wait(lambda name=name: lab.kubectl("logs", name).stdout.strip() == name, timeout=30,
                     what=f"{name} wrote its name")
        lab.kubectl("delete", "pods", "-l", "app=nltdb", "--wait=true", timeout=60)
        again = lab.wait(lambda: [p for p in running() if p["metadata"]["uid"] not in first.values()] and running(),
                         timeout=120, what="the members back")
        for p in again:
            name = p["metadata"]["name"]
            # the new pod found the file its predecessor wrote in its own claim (and no other)
            lab.wait(lambda name=name: lab.kubectl("logs", name).stdout.strip() == name, timeout=30,
                     what=f"{name} read its own name")
        assert sorted(c["metadata"]["uid"] for c in get(lab, "pvc", "-l", "app=nltdb")["items"]) == \
            sorted(c["metadata"]["uid"] for c in claims.values())  # the same claims, Retain
    finally:
        lab.kubectl("delete", "sts", "nltdb", "--ignore-not-found", "--wait=false")
        lab.kubectl("delete", "pvc", "-l", "app=nltdb", "--ignore-not-found", "--wait=false")
