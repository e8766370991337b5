"""Sidecar containers (init containers with restartPolicy Always), as the website's
deployment-sidecar and job-sidecar examples use them: started in their turn and kept running
beside the pod's containers; a Job's pod ends once its containers are done, its sidecar stopped."""

from __future__ import annotations

POD = """
apiVersion: v1
kind: Pod
metadata: {name: nlt-sidecar}
spec:
  containers:
  - name: myapp
    image: alpine:latest
    command: ['sh', '-c', 'while true; do echo "logging" >> /opt/logs.txt; sleep 1; done']
    volumeMounts: [{name: data, mountPath: /opt}]
  initContainers:
  - name: logshipper
    image: alpine:latest
    restartPolicy: Always
    command: ['sh', '-c', 'tail -F /opt/logs.txt']
    volumeMounts: [{name: data, mountPath: /opt}]
  volumes: [{name: data, emptyDir: {}}]
"""

JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: nlt-sidecar-job}
spec:
  template:
    spec:
      containers:
      - name: myjob
        image: alpine:latest
        command: ['sh', '-c', 'echo "logging" > /opt/logs.txt; sleep 2']
        volumeMounts: [{name: data, mountPath: /opt}]
      initContainers:
      - name: logshipper
        image: alpine:latest
        restartPolicy: Always
        command: ['sh', '-c', 'tail -F /opt/logs.txt']
        volumeMounts: [{name: data, mountPath: /opt}]
      restartPolicy: Never
      volumes: [{name: data, emptyDir: {}}]
"""


def test_a_sidecar_runs_beside_the_container_and_ends_with_a_jobs_pod(netlab_lab):
    lab = netlab_lab
    lab.apply(POD)
    lab.apply(JOB)
    try:
        pod = lab.wait(lambda: (p := lab.get("pods", "nlt-sidecar")) and any(
            c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])
            and p, 60, "the pod with its sidecar Ready")
        side = pod["status"]["initContainerStatuses"][0]
        assert side["name"] == "logshipper" and side["started"] and "running" in side["state"] and side["ready"]
        assert "running" in pod["status"]["containerStatuses"][0]["state"]
        lab.wait(lambda: "logging" in lab.kubectl("logs", "nlt-sidecar", "-c", "logshipper").stdout, 30,
                 "the sidecar to ship the container's log")
        job = lab.wait(lambda: (j := lab.get("jobs", "nlt-sidecar-job")) and any(
            c["type"] == "Complete" and c["status"] == "True" for c in (j.get("status") or {}).get("conditions") or [])
            and j, 90, "the Job with a sidecar to complete")
        assert job["status"]["succeeded"] == 1
        jp = lab.items("pods", selector="job-name=nlt-sidecar-job")[0]
        assert jp["status"]["phase"] == "Succeeded"
        assert "terminated" in jp["status"]["initContainerStatuses"][0]["state"]
    finally:
        lab.kubectl("delete", "pod", "nlt-sidecar", "--grace-period=0", "--force", check=False)
        lab.kubectl("delete", "job", "nlt-sidecar-job", "--wait=false", check=False)
