"""kube-controller-manager for a lab: `python -m netlab.control.controllers --kubeconfig PATH`.

Runs the Deployment, ReplicaSet, EndpointSlice (and Endpoints), namespace, garbage-collector,
(with --allocate-node-cidrs) node IPAM and (with --load-balancer-pool) service load-balancer controllers
in one process over shared informers, as upstream's controller manager does."""

from __future__ import annotations

import argparse
import asyncio
import logging

from netlab.api.client import Client
from netlab.control.controllers.base import Context
from netlab.control.controllers.deployment import DeploymentController
from netlab.control.controllers.endpointslice import EndpointSliceController
from netlab.control.controllers.lifecycle import GarbageCollector, NamespaceController
from netlab.control.controllers.nodeipam import NodeIpamController
from netlab.control.controllers.replicaset import ReplicaSetController
from netlab.control.controllers.servicelb import Pool, ServiceLBController

CONTROLLERS = [DeploymentController, ReplicaSetController, EndpointSliceController, NamespaceController,
               GarbageCollector]


async def run(args: argparse.Namespace) -> None:
    ctx = Context(Client.from_kubeconfig(args.kubeconfig), args.cluster_cidr, args.node_cidr_mask_size)
    controllers = [c(ctx) for c in CONTROLLERS + ([NodeIpamController] if args.allocate_node_cidrs else [])]
    if args.load_balancer_pool:
        controllers.append(ServiceLBController(ctx, Pool.parse(args.load_balancer_pool)))
    informers = await ctx.start()  # their first lists reach the handlers, which queue every object
    logging.info("controllers synced: %s", ", ".join(c.name for c in controllers))
    await asyncio.gather(*(c.run() for c in controllers), *informers)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m netlab.control.controllers")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--allocate-node-cidrs", action="store_true", help="give Nodes without one a podCIDR")
    p.add_argument("--cluster-cidr", default="", help="the pod subnet podCIDRs come from")
    p.add_argument("--node-cidr-mask-size", type=int, default=24)
    p.add_argument("--load-balancer-pool", default="", help="addresses for LoadBalancer Services: A-B or a CIDR")
    args = p.parse_args(argv)
    if args.allocate_node_cidrs and not args.cluster_cidr:
        p.error("--allocate-node-cidrs needs --cluster-cidr")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
