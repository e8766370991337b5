"""kube-controller-manager for a lab: `python -m netlab.control.controllers --kubeconfig PATH`.

Runs the Deployment, ReplicaSet, StatefulSet, DaemonSet, EndpointSlice (and Endpoints), EndpointSlice
mirroring, namespace, garbage-collector, ReplicationController, Job, TTL-after-finished, CronJob,
disruption, ServiceAccounts, root CA publisher, resource quota, PersistentVolume binder (with --lab,
also the local provisioner), PVC and PV protection controllers, (with --allocate-node-cidrs) node
IPAM and (with --load-balancer-pool) service load-balancer controllers in one process over shared
informers, as upstream's controller manager does."""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
from pathlib import Path

import yaml

from netlab.api.client import Client
from netlab.control.controllers.base import Context
from netlab.control.controllers.cronjob import CronJobController
from netlab.control.controllers.deployment import DeploymentController
from netlab.control.controllers.disruption import DisruptionController
from netlab.control.controllers.endpointslice import EndpointSliceController
from netlab.control.controllers.endpointslicemirroring import EndpointSliceMirroringController
from netlab.control.controllers.job import JobController, TTLAfterFinishedController
from netlab.control.controllers.lifecycle import GarbageCollector, NamespaceController
from netlab.control.controllers.nodeipam import NodeIpamController
from netlab.control.controllers.persistentvolume import PersistentVolumeController
from netlab.control.controllers.resourcequota import ResourceQuotaController
from netlab.control.controllers.volumeprotection import PVCProtectionController, PVProtectionController
from netlab.control.controllers.replicaset import ReplicaSetController
from netlab.control.controllers.replicationcontroller import ReplicationControllerController
from netlab.control.controllers.rootcacert import RootCACertPublisher
from netlab.control.controllers.serviceaccount import ServiceAccountsController
from netlab.control.controllers.servicelb import Pool, ServiceLBController
from netlab.control.controllers.statefulset import StatefulSetController
from netlab.control.controllers.daemonset import DaemonSetController
from netlab.kit import logs

CONTROLLERS = [DeploymentController, ReplicaSetController, EndpointSliceController, EndpointSliceMirroringController,
               NamespaceController,
               GarbageCollector, StatefulSetController, DaemonSetController,
               ReplicationControllerController, JobController, TTLAfterFinishedController, CronJobController,
               DisruptionController, ServiceAccountsController, RootCACertPublisher, ResourceQuotaController,
               PVCProtectionController, PVProtectionController]


async def run(args: argparse.Namespace) -> None:
    ctx = Context(Client.from_kubeconfig(args.kubeconfig), args.cluster_cidr, args.node_cidr_mask_size,
                  root_ca(args.kubeconfig, args.root_ca_file))
    controllers = [c(ctx) for c in CONTROLLERS + ([NodeIpamController] if args.allocate_node_cidrs else [])]
    controllers.append(PersistentVolumeController(ctx, args.lab))
    if args.load_balancer_pool:
        controllers.append(ServiceLBController(ctx, Pool.parse(args.load_balancer_pool)))
    informers = await ctx.start()  # their first lists reach the handlers, which queue every object
    logging.info("controllers synced: %s", ", ".join(c.name for c in controllers))
    await asyncio.gather(*(c.run() for c in controllers), *informers)


def root_ca(kubeconfig: str, path: str = "") -> bytes:
    """--root-ca-file, else the CA the kubeconfig trusts for its API server."""
    if path:
        return Path(path).read_bytes()
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    ctx_name = doc.get("current-context")
    ctx = next((c["context"] for c in doc.get("contexts") or [] if c["name"] == ctx_name), {})
    cluster = next((c["cluster"] for c in doc.get("clusters") or [] if c["name"] == ctx.get("cluster")), {})
    if cluster.get("certificate-authority-data"):
        return base64.b64decode(cluster["certificate-authority-data"])
    if cluster.get("certificate-authority"):
        return Path(cluster["certificate-authority"]).read_bytes()
    return b""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m netlab.control.controllers")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--allocate-node-cidrs", action="store_true", help="give Nodes without one a podCIDR")
    p.add_argument("--cluster-cidr", default="", help="the pod subnet podCIDRs come from")
    p.add_argument("--node-cidr-mask-size", type=int, default=24)
    p.add_argument("--root-ca-file", default="", help="the CA published in every namespace's kube-root-ca.crt "
                   "(default: the kubeconfig's)")
    p.add_argument("--lab", default="", help="the lab whose state holds local volumes: runs the local provisioner "
                   "(rancher.io/local-path)")
    p.add_argument("--load-balancer-pool", default="", help="addresses for LoadBalancer Services: A-B or a CIDR")
    args = p.parse_args(argv)
    if args.allocate_node_cidrs and not args.cluster_cidr:
        p.error("--allocate-node-cidrs needs --cluster-cidr")
    logs.setup()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
