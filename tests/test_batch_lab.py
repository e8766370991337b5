"""Jobs, a CronJob, a ReplicationController, a PodDisruptionBudget and `kubectl drain`, and the
namespace publishers, in a running lab: real pods run the Jobs' commands to their end."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.lab

WORKLOADS = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: date, image: busybox, command: [sh, -c, "date; echo tick"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: para}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox, command: [sh, -c, "sleep 1; echo done"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: fail}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox, command: [sh, -c, "exit 3"]}]
---
apiVersion: v1
kind: ReplicationController
metadata: {name: web}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: rcweb}}
    spec:
      containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [pause]}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web-pdb}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: rcweb}}
"""

GUARDED = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded}
spec:
  replicas: 2
  selector: {matchLabels: {app: guarded}}
  template:
    metadata: {labels: {app: guarded}}
    spec:
      containers: [{name: pause, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [pause]}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: guarded}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: guarded}}
"""


def conds(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def test_jobs_cronjob_and_their_columns(netlab_lab):
    lab = netlab_lab
    lab.apply(WORKLOADS)  # the CronJob's first run comes at the next minute, while the Jobs run
    try:
        para = lab.wait(lambda: (j := lab.get("jobs", "para")) and "Complete" in conds(j) and j, timeout=90,
                        what="the Job to complete")
        assert para["status"]["succeeded"] == 3 and "failed" not in para["status"]
        pods = lab.items("pods", selector="batch.kubernetes.io/job-name=para")
        assert len(pods) == 3 and all(p["status"]["phase"] == "Succeeded" for p in pods)
        assert lab.kubectl("logs", pods[0]["metadata"]["name"]).stdout == "done\n"
        fail = lab.wait(lambda: (j := lab.get("jobs", "fail")) and "Failed" in conds(j) and j, timeout=90,
                        what="the failing Job to give up")
        assert conds(fail)["Failed"]["reason"] == "BackoffLimitExceeded" and fail["status"]["failed"] == 2
        pods = lab.items("pods", selector="job-name=fail")
        assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" and p["status"]["containerStatuses"][0][
            "state"]["terminated"]["exitCode"] == 3 for p in pods)
        lab.wait(lambda: lab.get("poddisruptionbudgets", "web-pdb")["status"].get("currentHealthy") == 1, timeout=60,
                 what="the ReplicationController's pod counted by its budget")
        cj = lab.wait(lambda: (c := lab.get("cronjobs", "tick")) and c["status"].get("lastSuccessfulTime") and c,
                      timeout=150, what="the CronJob's first Job to succeed")
        runs = lab.items("jobs", selector="")
        ran = [j for j in runs if (j["metadata"].get("ownerReferences") or [{}])[0].get("kind") == "CronJob"]
        assert ran and ran[0]["metadata"]["name"].startswith("tick-") and cj["status"]["lastScheduleTime"]
        out = lab.kubectl("get", "jobs,cronjobs,rc,pdb").stdout
        headers = [ln.split() for ln in out.splitlines() if ln.startswith("NAME")]
        assert headers == [["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
                           ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"],
                           ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
                           ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]], out
        rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln and not ln.startswith("NAME")}
        assert rows["job.batch/para"][1:3] == ["Complete", "3/3"] and rows["job.batch/fail"][1:3] == ["Failed", "0/1"]
        assert rows["cronjob.batch/tick"][1:8] == ["*/1", "*", "*", "*", "*", "<none>", "False"]
        assert rows["replicationcontroller/web"][1:4] == ["1", "1", "1"]
        assert rows["poddisruptionbudget.policy/web-pdb"][1:4] == ["1", "N/A", "0"]
    finally:
        lab.kubectl("delete", "cronjob", "tick", "--ignore-not-found", "--wait=false")
        lab.kubectl("delete", "jobs", "--all", "--wait=false")
        lab.kubectl("delete", "rc", "web", "--ignore-not-found", "--wait=false")
        lab.kubectl("delete", "pdb", "web-pdb", "--ignore-not-found")


def test_drain_waits_for_the_disruption_budget(netlab_lab):
    lab = netlab_lab
    lab.apply(GUARDED)
    node = None
    try:
        pods = lab.wait_ready("app=guarded", count=2, timeout=90)
        lab.wait(lambda: (b := lab.get("poddisruptionbudgets", "guarded"))["status"].get("currentHealthy") == 2 and b,
                 what="the budget to count both pods")
        node = pods[0]["spec"]["nodeName"]
        victims = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == node}
        # the budget allows no disruption: drain cordons, then retries the refused eviction until it gives up
        r = lab.kubectl("drain", node, "--ignore-daemonsets", "--pod-selector=app=guarded", "--timeout=12s",
                        check=False, timeout=60)
        assert r.returncode != 0 and f"node/{node} cordoned" in r.stdout, (r.stdout, r.stderr)
        assert "Cannot evict pod as it would violate the pod's disruption budget." in r.stderr, r.stderr
        assert "(will retry after 5s)" in r.stderr
        assert lab.get("nodes", node, namespace=None)["spec"]["unschedulable"] is True
        assert victims <= {p["metadata"]["name"] for p in lab.items("pods", selector="app=guarded")}
        # one may go: the eviction goes through, and the replacement lands elsewhere
        lab.kubectl("patch", "pdb", "guarded", "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
        lab.wait(lambda: lab.get("poddisruptionbudgets", "guarded")["status"].get("disruptionsAllowed") == 1,
                 what="one disruption allowed")
        r = lab.kubectl("drain", node, "--ignore-daemonsets", "--pod-selector=app=guarded", "--timeout=90s",
                        timeout=120)
        assert f"node/{node} drained" in r.stdout and all(f"pod/{v} evicted" in r.stdout for v in victims), r.stdout
        now = lab.wait_ready("app=guarded", count=2, timeout=90)
        assert all(p["spec"]["nodeName"] != node for p in now)
    finally:
        if node:
            lab.kubectl("uncordon", node, check=False)
        lab.kubectl("delete", "-f", "-", input=GUARDED, check=False)


def test_new_namespace_gets_service_account_and_root_ca(netlab_lab):
    lab = netlab_lab
    lab.kubectl("create", "namespace", "nlt-pub")
    try:
        lab.wait(lambda: lab.kubectl("get", "sa", "default", "-n", "nlt-pub", check=False).returncode == 0,
                 what="the default ServiceAccount")
        cm = lab.wait(lambda: lab.kubectl("get", "cm", "kube-root-ca.crt", "-n", "nlt-pub", check=False).returncode
                      == 0 and lab.get("configmaps", "kube-root-ca.crt", "nlt-pub"), what="kube-root-ca.crt")
        assert cm["data"] == {"ca.crt": (lab.cluster.state_dir / "pki" / "ca.crt").read_text()}
    finally:
        lab.kubectl("delete", "namespace", "nlt-pub", "--wait=false")
