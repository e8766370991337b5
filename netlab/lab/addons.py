"""The cluster add-ons `netlab up` installs, as kubeadm does: CoreDNS as the kube-dns Service in
kube-system, the `coredns` Deployment and ServiceAccount, and its Corefile in the `coredns`
ConfigMap. The objects are kubeadm's (names, labels, ports, probes), so what a learner sees
with `kubectl -n kube-system get all` is what a kubeadm cluster shows. Also kubeadm's
ConfigMaps that `netlab join` reads, as `kubeadm join` does: `cluster-info` in kube-public (the
API server's address and CA, checked against the CA hash the joiner was given), `kubeadm-config`
(the cluster's subnets) and `kube-proxy` (its mode) in kube-system. And kind's default StorageClass
`standard` (local volumes, WaitForFirstConsumer).

The node agents (kube-proxy, the CNI agent, the network-policy agent, the lb-speaker) are
DaemonSets in kube-system, as kubeadm (and kind) show them: one hostNetwork pod per node, named
by the DaemonSet controller (`kube-proxy-x7k2p`). The processes stay the supervisor's components
(`kube-proxy-<node>` ...: they start with the node, before any pod could, and the watchdog and
adoption keep them); the pod template's `netlab.dev/node-agent` annotation names the component,
and the node's kubelet reports that process as the pod's container (netlab/node/kubelet/agents.py)."""

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
        kube_proxy(cluster),
    ]


def storage_class() -> tuple[str, dict]:
    """kind's default StorageClass `standard`: rancher's local-path provisioner (the controller
    manager's local provisioner here), volumes made on the node the scheduler picks."""
    return "storageclasses", {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {
        "name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}


def kube_proxy(cluster: Cluster) -> tuple[str, dict]:
    """kube-proxy's ConfigMap as kubeadm writes it: its configuration (config.conf) and the
    kubeconfig (kubeconfig.conf) it reads the API server with, its service account's token and CA."""
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "default", "cluster": {
        "certificate-authority": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        "server": f"https://{cluster.nodes[0].ip}:6443"}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "namespace": "default", "user": "default"}}],
        "current-context": "default",
        "users": [{"name": "default", "user": {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}}]}
    config = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
              "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
              "clusterCIDR": cluster.pod_subnet, "mode": cluster.proxy_mode}
    return "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": {"app": "kube-proxy"}},
                          "data": {"config.conf": yaml.safe_dump(config, sort_keys=False),
                                   "kubeconfig.conf": yaml.safe_dump(kubeconfig, sort_keys=False)}}


NODE_AGENT = "netlab.dev/node-agent"  # the pod template's annotation: which supervisor component the pod is


def node_agents(cluster: Cluster) -> list[tuple[str, dict]]:
    """The node agents' ServiceAccounts and DaemonSets. Named after the supervisor's components
    (`kube-proxy` as kubeadm names it; `cni-agent`, `netpol-agent` and `lb-speaker` rather than
    kind's `kindnet`, which is another CNI: the pod, `netlab status` and `netlab logs` then share
    one name)."""
    from netlab.node.kubelet.node import VERSION

    tag = VERSION.split("+")[0]
    node_name = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}]
    agents = [
        # (name, image, command, extra env, volumes as (name, hostPath or ConfigMap, mountPath))
        ("kube-proxy", f"registry.k8s.io/kube-proxy:{tag}",
         ["netlab-proxy", "run", "--hostname-override=$(NODE_NAME)", f"--proxy-mode={cluster.proxy_mode}",
          f"--cluster-cidr={cluster.pod_subnet}", f"--service-cidr={cluster.service_subnet}"],
         [("kube-proxy", {"configMap": {"name": "kube-proxy"}}, "/var/lib/kube-proxy"),
          ("xtables-lock", {"hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}}, "/run/xtables.lock"),
          ("lib-modules", {"hostPath": {"path": "/lib/modules", "type": ""}}, "/lib/modules")]),
        ("cni-agent", "netlab/cni-agent:0.1.0", ["python3", "-m", "cni.agent"],
         [("cni-cfg", {"hostPath": {"path": "/etc/cni/net.d", "type": ""}}, "/etc/cni/net.d")]),
        ("netpol-agent", "netlab/netpol-agent:0.1.0", ["netlab-netpol", "run", "--hostname-override=$(NODE_NAME)"],
         [("lib-modules", {"hostPath": {"path": "/lib/modules", "type": ""}}, "/lib/modules")]),
    ]
    if cluster.lb_pool:
        agents.append(("lb-speaker", "netlab/lb-speaker:0.1.0", ["python3", "-m", "lb", "--node-name=$(NODE_NAME)"], []))
    out = []
    for name, image, command, vols in agents:
        labels = {"k8s-app": name}
        out.append(("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                        "metadata": {"name": name, "namespace": "kube-system"}}))
        out.append(("daemonsets", {"apiVersion": "apps/v1", "kind": "DaemonSet",
                                   "metadata": {"name": name, "namespace": "kube-system", "labels": dict(labels)},
                                   "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": dict(labels), "annotations": {NODE_AGENT: name}}, "spec": {
                "hostNetwork": True,
                "priorityClassName": "system-node-critical",
                "serviceAccountName": name,
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"operator": "Exists"}],  # every node, whatever its taints, as kubeadm's kube-proxy
                "containers": [{
                    "name": name, "image": image, "imagePullPolicy": "IfNotPresent", "command": command,
                    "env": node_name, "securityContext": {"privileged": True},
                    "volumeMounts": [{"name": v, "mountPath": m, **({"readOnly": True} if v == "lib-modules" else {})}
                                     for v, _, m in vols]}],
                "volumes": [{"name": v, **src} for v, src, _ in vols],
            }}}}))
    return out


def install(cluster: Cluster) -> None:
    """Create the add-ons that do not exist yet (so a restarted API server keeps user changes)."""
    async def go():
        client = Client.from_lab(cluster.name)
        try:
            for resource, obj in [cluster_info(cluster), *kubeadm_config(cluster), *coredns(cluster),
                                  storage_class(), *node_agents(cluster)]:
                try:
                    await client.create(resource, obj)
                except ApiError as e:
                    if e.status != 409:
                        raise
        finally:
            await client.close()
    asyncio.run(go())
