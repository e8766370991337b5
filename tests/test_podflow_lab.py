"""`netlab explain pod` and `netlab events --follow` on a real Deployment: every step of a new
pod's creation found, in order, with the times the API and the components' logs hold."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

import pytest

from netlab.tools import podflow

pytestmark = pytest.mark.lab

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nlt-flow}
spec:
  replicas: 1
  selector: {matchLabels: {app: nlt-flow}}
  template:
    metadata: {labels: {app: nlt-flow}}
    spec:
      containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: nlt-flow}
spec:
  selector: {app: nlt-flow}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_explain_and_follow_a_deployments_pod(netlab_lab):
    follow = subprocess.Popen([sys.executable, "-m", "netlab.tools.cli", "events", "--follow", "--timeout", "60",
                               "--name", netlab_lab.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # its watches are open
        netlab_lab.apply(MANIFEST)
        pod = netlab_lab.wait_ready("app=nlt-flow", count=1)[0]
        name, nodes = pod["metadata"]["name"], [n.name for n in netlab_lab.cluster.nodes]

        def all_synced():
            steps = podflow.gather(netlab_lab, name)
            return steps if steps[-1].when is not None else None
        steps = netlab_lab.wait(all_synced, timeout=20, what="every node's kube-proxy synced the Service")
        assert [s.step for s in steps] == ["owner", *podflow.STEPS]
        assert all(s.when is not None for s in steps), podflow.render(steps)
        times = [s.when for s in steps]
        # the API's times are whole seconds, the logs' milliseconds: in order to within the second
        assert all(b.timestamp() >= a.timestamp() - 1 for a, b in itertools.pairwise(times)), podflow.render(steps)
        by = {s.step: s for s in steps}
        assert by["owner"].what.startswith("ReplicaSet nlt-flow-") and "Deployment nlt-flow" in by["owner"].what
        assert by["scheduled"].what == f"Successfully assigned default/{name} to {pod['spec']['nodeName']}"
        assert pod["status"]["podIP"] in by["network"].what
        assert by["rules"].what == f"default/nlt-flow on {len(nodes)}/{len(nodes)} nodes"

        out = subprocess.run([sys.executable, "-m", "netlab.tools.cli", "explain", "pod", name, "--name",
                              netlab_lab.name], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert [line.split()[0] for line in out.stdout.splitlines()[2:10]] == [str(i) for i in range(1, 9)]
        bad = subprocess.run([sys.executable, "-m", "netlab.tools.cli", "explain", "pod", "nlt-none", "--name",
                              netlab_lab.name], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and 'pods "nlt-none" not found' in bad.stderr
    finally:
        follow.terminate()
        live, _ = follow.communicate(timeout=30)
        netlab_lab.kubectl("delete", "deployment/nlt-flow", "service/nlt-flow", "--wait=true", check=False)
    for line in (f"Pod/{name} ADDED owner=ReplicaSet/nlt-flow-", f'CNI ADD pod="default/{name}"',
                 f"Event Pod/{name} Scheduled (default-scheduler)", 'services="default/nlt-flow"'):
        assert line in live, live
