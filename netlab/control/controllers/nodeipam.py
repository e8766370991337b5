"""The node IPAM controller (kube-controller-manager --allocate-node-cidrs): a Node without a
podCIDR gets the lowest free /24 (--node-cidr-mask-size) of --cluster-cidr, as the range
allocator does for nodes that join a cluster. Like upstream's CIDR set, a range is taken in memory
before the Node is written, so two nodes synced before the informer shows the first write cannot
get the same one."""

from __future__ import annotations

import ipaddress

from netlab.control.controllers.base import Controller


class NodeIpamController(Controller):
    name = "node-ipam-controller"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.nodes = ctx.informer("nodes")
        self.nodes.add_handler(self.enqueue_obj, lambda old, new: self.enqueue_obj(new), self._forget)
        self.taken: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}  # node -> its range, once written

    def _forget(self, node: dict) -> None:
        self.taken.pop(node["metadata"]["name"], None)

    async def sync(self, key: str) -> None:
        node = self.nodes.get(None, key)
        if node is None or (node.get("spec") or {}).get("podCIDR") or not self.ctx.cluster_cidr:
            return
        used = {ipaddress.ip_network(c) for n in self.nodes.list()
                for c in [(n.get("spec") or {}).get("podCIDR"), *((n.get("spec") or {}).get("podCIDRs") or [])] if c}
        used |= {cidr for name, cidr in self.taken.items() if name != key}
        free = next((s for s in ipaddress.ip_network(self.ctx.cluster_cidr).subnets(new_prefix=self.ctx.node_cidr_mask)
                     if not any(s.overlaps(u) for u in used)), None)
        if free is None:
            await self.event(node, "CIDRNotAvailable", f"no podCIDR left in {self.ctx.cluster_cidr}", "Warning")
            return
        cur = await self.client.get("nodes", key)  # the newest, so a conflict cannot hand out one range twice
        if (cur.get("spec") or {}).get("podCIDR"):
            return
        cur.setdefault("spec", {}).update(podCIDR=str(free), podCIDRs=[str(free)])
        self.taken[key] = free
        try:
            await self.client.update("nodes", cur)
        except Exception:
            del self.taken[key]  # not written: free again (the sync is retried)
            raise
        await self.event(cur, "CIDRAssignmentSucceeded", f"podCIDR {free} assigned to node {key}")
