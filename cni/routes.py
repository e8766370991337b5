"""host-gw routing for nodes on separate machines (`netlab init` / `netlab join`), as flannel's
host-gw backend and kind's kindnetd do it: for every other Node, a route to its podCIDR via its
InternalIP, kept in step with the Nodes the API server holds. (A lab on one box routes its
planned nodes when it builds them: see netlab.lab.build.)"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from netlab.kit import net
from netlab.api.client import Client, Informer

log = logging.getLogger("netlab.cni.routes")


def route_of(node: dict) -> tuple[str, str] | None:
    """(podCIDR, InternalIP) of a Node, once it has both."""
    cidr = (node.get("spec") or {}).get("podCIDR")
    ip = next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
               if a.get("type") == "InternalIP"), None)
    return (cidr, ip) if cidr and ip else None


class Routes:
    """The routes to other nodes' pods. Netlink calls run in a thread: pyroute2's synchronous
    socket cannot be used inside a running event loop."""

    def __init__(self, me: str, pod_subnet: str):
        self.me, self.pod_subnet = me, ipaddress.ip_network(pod_subnet)
        self.routed: dict[str, tuple[str, str]] = {}  # node name -> (podCIDR, via)
        self.pending: dict[str, tuple[str, str] | None] = {}  # node name -> its route, None: gone
        self.wake = asyncio.Event()

    def set(self, node: dict) -> None:
        if node["metadata"]["name"] != self.me:
            self.pending[node["metadata"]["name"]] = route_of(node)
            self.wake.set()

    def remove(self, node: dict) -> None:
        self.pending[node["metadata"]["name"]] = None
        self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            work, self.pending = self.pending, {}
            for name, want in work.items():
                if self.routed.get(name) != want:
                    await asyncio.to_thread(self.apply, name, want)

    def apply(self, name: str, want: tuple[str, str] | None) -> None:
        old = self.routed.pop(name, None)
        if old:
            net.route_del(None, old[0])
        if want is None or not ipaddress.ip_network(want[0]).subnet_of(self.pod_subnet):
            return
        try:
            net.route_add(None, want[0], via=want[1])
        except net.NetError as e:
            log.warning("no route to node %s's pods: %s (is it on this machine's network?)", name, e)
            return
        self.routed[name] = want
        log.info("node %s: pods %s via %s", name, *want)


async def run(kubeconfig: str, me: str, pod_subnet: str) -> None:
    routes = Routes(me, pod_subnet)
    nodes = Informer(Client.from_kubeconfig(kubeconfig), "nodes")
    nodes.add_handler(routes.set, lambda old, new: routes.set(new), routes.remove)
    await asyncio.gather(nodes.run(), routes.run())
