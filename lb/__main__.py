"""lb-speaker: `python -m lb --kubeconfig PATH --node-name NODE [--interface IF]`."""

from __future__ import annotations

import argparse
import asyncio
import logging

from netlab.api.client import Client
from netlab.api.loadbalancers import LB_CLASS
from lb.memberlist import PORT
from lb.speaker import Speaker


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lb", description="the load-balancer announcer (MetalLB's L2 speaker)")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--node-name", required=True, help="this node's name")
    p.add_argument("--interface", help="where to answer ARP (default: the link holding the node's InternalIP)")
    p.add_argument("--memberlist-port", type=int, default=PORT)
    p.add_argument("--lb-class", default=LB_CLASS, help="the loadBalancerClass announced besides none")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        async with Client.from_kubeconfig(args.kubeconfig) as client:
            await Speaker(client, args.node_name, args.lb_class, args.interface, args.memberlist_port).run()
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
