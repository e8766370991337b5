"""The downward API and $(VAR) expansion in a lab: an Indexed Job's pods read their index from
the annotation upstream's Job controller sets, and print it through command/args expansion."""

from __future__ import annotations

INDEXED = """
apiVersion: batch/v1
kind: Job
metadata: {name: nlt-indexed}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: worker
        image: busybox
        env:
        - name: FROM_ANNOTATION
          valueFrom: {fieldRef: {fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
        - name: SA
          valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}
        - name: POD_IPS
          valueFrom: {fieldRef: {fieldPath: status.podIPs}}
        command: [sh, -c]
        args: ["echo index=$JOB_COMPLETION_INDEX annotation=$(FROM_ANNOTATION) sa=$(SA) ips=$(POD_IPS) kept='$$(SA)'"]
"""


def test_indexed_job_pods_echo_their_completion_index(netlab_lab):
    lab = netlab_lab
    lab.apply(INDEXED)
    try:
        lab.wait(lambda: any(c["type"] == "Complete" and c["status"] == "True" for c in
                             (lab.get("jobs", "nlt-indexed").get("status") or {}).get("conditions") or []),
                 120, "the Indexed Job to complete")
        pods = lab.items("pods", selector="job-name=nlt-indexed")
        seen = {}
        for p in pods:
            ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            out = lab.kubectl("logs", p["metadata"]["name"]).stdout.strip()
            seen[ix] = out
            assert out == f"index={ix} annotation={ix} sa=default ips={p['status']['podIP']} kept=$(SA)", out
        assert sorted(seen) == ["0", "1", "2"]
    finally:
        lab.kubectl("delete", "job", "nlt-indexed", "--cascade=foreground", "--wait=false", check=False)
