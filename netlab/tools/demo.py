"""`netlab up --demo`: the demo app (examples/web.yaml, three agnhost pods behind the `web`
Service) and a client pod that calls the Service by name, so a new user sees the whole path
at once: DNS -> ClusterIP -> kube-proxy's rules -> a pod on some node. Idempotent. Each step
shows while it runs; a step that fails is named in the error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from netlab.kit.cluster import Cluster
from netlab.lab.build import LabError
from netlab.tools.testing import Lab

WEB = Path(__file__).resolve().parents[2] / "examples" / "web.yaml"  # the project's examples/
CLIENT = """
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  containers:
  - {name: client, image: busybox, command: [sleep, infinity]}
"""


@contextlib.contextmanager
def step(console: Console, what: str) -> Iterator[None]:
    try:
        with console.status(what):
            yield
    except Exception as e:  # noqa: BLE001 - any failure becomes one line naming the step
        raise LabError(f"demo: {what}: {e}") from e
    console.print(f"[green]✓[/] {what}")


def run(cluster: Cluster, requests: int = 6) -> int:
    console = Console(highlight=False)
    lab = Lab(cluster=cluster)
    console.print()
    with step(console, f"deploying {WEB.name}: Deployment web (3 agnhost pods), Service web, a client pod"):
        lab.apply(WEB)
        lab.apply(CLIENT)
    with step(console, "waiting for cluster DNS (the coredns pods in kube-system)"):
        lab.wait_ready("k8s-app=kube-dns", namespace="kube-system", count=1, timeout=60)
    with step(console, "waiting for the web pods and the client pod to be Ready"):
        pods = {p["metadata"]["name"]: p for p in lab.wait_ready("app=web", count=3, timeout=60)}
        lab.wait_ready("app=client", count=1, timeout=60)
    svc = lab.get("service", "web")
    console.print(f"\nService web: ClusterIP {svc['spec']['clusterIP']}, port 80 -> the pods' port 8080")
    console.print("from the client pod, wget http://web/hostname (a DNS name, then the ClusterIP):")
    answered = set()
    for _ in range(requests):
        out = lab.exec("client", ["wget", "-qO-", "-T", "3", "http://web/hostname"])
        name = out.stdout.strip()
        pod = pods.get(name)
        where = f"{pod['status']['podIP']} on {pod['spec']['nodeName']}" if pod else out.stderr.strip()
        console.print(f"  answered by {name or 'nobody'} ({where})")
        answered.add(name)
    if not answered & set(pods):
        raise LabError("demo: the client pod got no answer from http://web/hostname; see: sudo netlab rules")
    node = cluster.nodes[-1].name
    console.print(f"""
next:
  export KUBECONFIG={lab.kubeconfig}
  kubectl get pods -o wide
  kubectl exec client -- nslookup web
  sudo netlab rules --node {node} --service default/web
  sudo netlab topology
  sudo docs/tutorials/02-service-rules.sh
  sudo netlab down""")
    return 0
