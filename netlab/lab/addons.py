"""The cluster add-ons `netlab up` installs, as kubeadm does: CoreDNS as the kube-dns Service in
kube-system, the `coredns` Deployment and ServiceAccount, and its Corefile in the `coredns`
ConfigMap. The objects are kubeadm's (names, labels, ports, probes), so what a learner sees
with `kubectl -n kube-system get all` is what a kubeadm cluster shows. Also kubeadm's
ConfigMaps that `netlab join` reads, as `kubeadm join` does: `cluster-info` in kube-public (the
API server's address and CA, checked against the CA hash the joiner was given), `kubeadm-config`
(the cluster's subnets) and `kube-proxy` (its mode) in kube-system. And kind's default StorageClass
`standard` (local volumes, WaitForFirstConsumer)."""

from __future__ import annotations

import asyncio
import base64

import yaml

from netlab.api.client import ApiError, Client
from netlab.kit.cluster import Cluster
from netlab.kit.kubeadm import corefile as kubeadm_corefile

COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.11.3"


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


def cluster_info(cluster: Cluster) -> tuple[str, dict]:
    ca = base64.b64encode(cluster.layout.ca_cert.read_bytes()).decode()
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "users": None, "contexts": None,
                  "current-context": "", "clusters": [{"name": "", "cluster": {
                      "server": f"https://{cluster.nodes[0].ip}:6443", "certificate-authority-data": ca}}]}
    return "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "cluster-info", "namespace": "kube-public"},
                          "data": {"kubeconfig": yaml.safe_dump(kubeconfig, sort_keys=False)}}


def kubeadm_config(cluster: Cluster) -> list[tuple[str, dict]]:
    from netlab.node.kubelet.node import VERSION

    def cm(name: str, key: str, doc: dict) -> tuple[str, dict]:
        return "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": name, "namespace": "kube-system"},
                              "data": {key: yaml.safe_dump(doc, sort_keys=False)}}
    return [
        cm("kubeadm-config", "ClusterConfiguration", {
            "apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration", "clusterName": cluster.name,
            "controlPlaneEndpoint": f"{cluster.nodes[0].ip}:6443", "kubernetesVersion": VERSION.split("+")[0],
            "networking": {"dnsDomain": cluster.dns_domain, "podSubnet": cluster.pod_subnet,
                           "serviceSubnet": cluster.service_subnet}}),
        cm("kube-proxy", "config.conf", {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clusterCIDR": cluster.pod_subnet, "mode": cluster.proxy_mode}),
    ]


def storage_class() -> tuple[str, dict]:
    """kind's default StorageClass `standard`: rancher's local-path provisioner (the controller
    manager's local provisioner here), volumes made on the node the scheduler picks."""
    return "storageclasses", {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {
        "name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}


def install(cluster: Cluster) -> None:
    """Create the add-ons that do not exist yet (so a restarted API server keeps user changes)."""
    async def go():
        client = Client.from_lab(cluster.name)
        try:
            for resource, obj in [cluster_info(cluster), *kubeadm_config(cluster), *coredns(cluster),
                                  storage_class()]:
                try:
                    await client.create(resource, obj)
                except ApiError as e:
                    if e.status != 409:
                        raise
        finally:
            await client.close()
    asyncio.run(go())
