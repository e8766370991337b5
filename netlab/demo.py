"""`netlab up --demo`: the demo app (examples/web.yaml, three agnhost pods behind the `web`
Service) and a client pod that calls the Service by name, so a new user sees the whole path
at once: DNS -> ClusterIP -> kube-proxy's rules -> a pod on some node. Idempotent."""

from __future__ import annotations

from pathlib import Path

from netlab.cluster import Cluster
from netlab.testing import Lab

WEB = Path(__file__).resolve().parent.parent / "examples" / "web.yaml"
CLIENT = """
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  containers:
  - {name: client, image: busybox, command: [sleep, infinity]}
"""


def run(cluster: Cluster, requests: int = 6) -> int:
    lab = Lab(cluster=cluster)
    print(f"\ndeploying {WEB.name}: Deployment web (3 agnhost pods) and Service web; a client pod")
    lab.apply(WEB)
    lab.apply(CLIENT)
    lab.wait_ready("k8s-app=kube-dns", namespace="kube-system", count=1, timeout=60)
    pods = {p["metadata"]["name"]: p for p in lab.wait_ready("app=web", count=3, timeout=60)}
    lab.wait_ready("app=client", count=1, timeout=60)
    svc = lab.get("service", "web")
    print(f"Service web: ClusterIP {svc['spec']['clusterIP']}, port 80 -> pods' port 8080\n")
    print("from the client pod, wget http://web/hostname (DNS name, then the ClusterIP):")
    for _ in range(requests):
        out = lab.exec("client", ["wget", "-qO-", "-T", "3", "http://web/hostname"])
        name = out.stdout.strip()
        pod = pods.get(name)
        where = f"{pod['status']['podIP']} on {pod['spec']['nodeName']}" if pod else out.stderr.strip()
        print(f"  answered by {name or 'nobody'} ({where})")
    node = cluster.nodes[-1].name
    rules = {"iptables": "iptables-save -t nat | grep web", "nftables": "nft list table ip kube-proxy",
             "ipvs": "ipvsadm -Ln"}[cluster.proxy_mode]
    print(f"""
next:
  export KUBECONFIG={lab.kubeconfig}
  kubectl get pods -o wide
  kubectl exec client -- nslookup web
  sudo netlab exec {node} -- {rules}
  sudo netlab down""")
    return 0
