"""kube-controller-manager for a lab: `python -m netlab.controllers --kubeconfig PATH`.

Runs the Deployment, ReplicaSet, EndpointSlice (and Endpoints), namespace and garbage-collector
controllers in one process over shared informers, as upstream's controller manager does."""

from __future__ import annotations

import argparse
import asyncio
import logging

from netlab.client import Client
from netlab.controllers.base import Context
from netlab.controllers.deployment import DeploymentController
from netlab.controllers.endpointslice import EndpointSliceController
from netlab.controllers.lifecycle import GarbageCollector, NamespaceController
from netlab.controllers.replicaset import ReplicaSetController

CONTROLLERS = [DeploymentController, ReplicaSetController, EndpointSliceController, NamespaceController,
               GarbageCollector]


async def run(kubeconfig: str) -> None:
    ctx = Context(Client.from_kubeconfig(kubeconfig))
    controllers = [c(ctx) for c in CONTROLLERS]
    informers = await ctx.start()  # their first lists reach the handlers, which queue every object
    logging.info("controllers synced: %s", ", ".join(c.name for c in controllers))
    await asyncio.gather(*(c.run() for c in controllers), *informers)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m netlab.controllers")
    p.add_argument("--kubeconfig", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(args.kubeconfig))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
