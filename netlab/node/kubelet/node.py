"""The kubelet's Node: registration (labels, roles, kind's control-plane taint, podCIDR), status
with addresses, capacity, node info and conditions, and the heartbeat Lease in kube-node-lease."""

from __future__ import annotations

import asyncio
import logging
import os
import platform

from netlab.api.client import ApiError, Client
from netlab.kit import clock
from netlab.kit.cluster import Cluster, Node

log = logging.getLogger("netlab.kubelet")
VERSION = "v1.31.0+netlab"
HEARTBEAT = 10.0
LEASE_SECONDS = 40


def node_object(cluster: Cluster, node: Node) -> dict:
    """A Node as kind registers its nodes: roles, podCIDR, and the control-plane taint when there
    are workers to run pods."""
    labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}
    # a node joining from another machine has none yet: the node IPAM controller assigns it
    spec: dict = {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]} if node.pod_cidr else {}
    if node.role == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        if len(cluster.nodes) > 1:
            spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": labels}, "spec": spec}


def _os_image() -> str:
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _memory() -> str:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1])}Ki"
    except OSError:
        pass
    return "0"


def node_status(node: Node, old: dict) -> dict:
    capacity = {"cpu": str(os.cpu_count() or 1), "memory": _memory(), "pods": "110", "ephemeral-storage": "0"}
    prev = {c["type"]: c for c in old.get("conditions") or []}

    def cond(type_: str, status: str, reason: str, message: str) -> dict:
        p = prev.get(type_) or {}
        return {"type": type_, "status": status, "lastHeartbeatTime": clock.now(),
                "lastTransitionTime": p.get("lastTransitionTime") if p.get("status") == status else clock.now(),
                "reason": reason, "message": message}
    return {
        "addresses": [{"type": "InternalIP", "address": node.ip}, {"type": "Hostname", "address": node.name}],
        "capacity": capacity, "allocatable": dict(capacity),
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": "netlab://0.1.0",
                     "kernelVersion": platform.release(), "kubeProxyVersion": VERSION, "kubeletVersion": VERSION,
                     "machineID": "", "operatingSystem": "linux", "osImage": _os_image(), "systemUUID": ""},
    }


async def register(client: Client, cluster: Cluster, node: Node) -> None:
    """Create this node's Node, retrying until the API server answers (it may start after us)."""
    delay = 0.1
    while True:
        try:
            await client.create("nodes", node_object(cluster, node))
            return
        except ApiError as e:
            if e.status == 409:
                return
            log.warning("registering node %s: %s", node.name, e)
        except OSError as e:
            log.info("registering node %s: API server not reachable yet (%s)", node.name, e)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5)


async def heartbeat(client: Client, node: Node) -> None:
    """Node status and the Lease, every HEARTBEAT seconds, for as long as the kubelet runs."""
    while True:
        try:
            cur = await client.get("nodes", node.name)
            cur["status"] = {**(cur.get("status") or {}), **node_status(node, cur.get("status") or {})}
            await client.update("nodes", cur, subresource="status")
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": node.name, "namespace": "kube-node-lease",
                                  "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node.name,
                                                       "uid": cur["metadata"]["uid"]}]},
                     "spec": {"holderIdentity": node.name, "leaseDurationSeconds": LEASE_SECONDS,
                              "renewTime": clock.now_micro()}}
            try:
                old = await client.get("leases", node.name, "kube-node-lease")
                old["spec"] = lease["spec"]
                await client.update("leases", old)
            except ApiError as e:
                if e.status != 404:
                    raise
                await client.create("leases", lease)
        except (ApiError, OSError) as e:
            log.warning("heartbeat failed: %s", e)
        except Exception:  # noqa: BLE001 - a heartbeat must keep beating
            log.exception("heartbeat failed")
        await asyncio.sleep(HEARTBEAT)
