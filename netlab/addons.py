"""The cluster add-ons `netlab up` installs, as kubeadm does: CoreDNS as the kube-dns Service in
kube-system, the `coredns` Deployment and ServiceAccount, and its Corefile in the `coredns`
ConfigMap. The objects are kubeadm's (names, labels, ports, probes), so what a learner sees
with `kubectl -n kube-system get all` is what a kubeadm cluster shows."""

from __future__ import annotations

import asyncio

from netlab.client import ApiError, Client
from netlab.cluster import Cluster

COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.11.3"


def kubeadm_corefile(domain: str = "cluster.local") -> str:
    """The Corefile kubeadm installs, less `forward . /etc/resolv.conf`: nothing leaves a lab."""
    return f"""\
.:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    cache 30
    loop
    reload
    loadbalance
}}
"""


def coredns(cluster: Cluster) -> list[tuple[str, dict]]:
    """(resource, object) pairs, in the order to create them."""
    labels = {"k8s-app": "kube-dns"}
    meta = {"name": "coredns", "namespace": "kube-system"}
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
             {"name": "metrics", "port": 9153, "protocol": "TCP"}]
    return [
        ("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)}),
        ("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": dict(meta),
                        "data": {"Corefile": kubeadm_corefile(cluster.dns_domain)}}),
        ("services", {"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": "kube-dns", "namespace": "kube-system",
            "labels": {**labels, "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
            "spec": {"selector": labels, "clusterIP": cluster.dns_service_ip,
                     "ports": [{**p, "targetPort": p["port"]} for p in ports]}}),
        ("deployments", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {**meta, "labels": labels},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "coredns",
                    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                    {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "dnsPolicy": "Default",
                    "containers": [{
                        "name": "coredns", "image": COREDNS_IMAGE, "imagePullPolicy": "IfNotPresent",
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
                        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}],
                        "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                  {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                  {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}],
                        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                                          "initialDelaySeconds": 60, "timeoutSeconds": 5, "failureThreshold": 5},
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}},
                    }],
                    "volumes": [{"name": "config-volume", "configMap": {
                        "name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}],
                }},
            }}),
    ]


def install(cluster: Cluster) -> None:
    """Create the add-ons that do not exist yet (so a restarted API server keeps user changes)."""
    async def go():
        client = Client.from_lab(cluster.name)
        try:
            for resource, obj in coredns(cluster):
                try:
                    await client.create(resource, obj)
                except ApiError as e:
                    if e.status != 409:
                        raise
        finally:
            await client.close()
    asyncio.run(go())
