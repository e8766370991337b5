"""The speaker's loop: informers on Services, EndpointSlices and Nodes; the memberlist; every
tick, the addresses this node should announce (election.announcer), with gratuitous ARP for each
one it takes over (repeated for 5 s, as MetalLB's announcer spams it) and ARP replies for them."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time

from netlab.api.client import ApiError, Client, Informer, event
from netlab.api.endpointslices import service_of
from netlab.api.loadbalancers import LB_CLASS, implemented_here, status_ips
from netlab.kit import net
from lb import arp, election
from lb.memberlist import Memberlist

log = logging.getLogger("netlab.lb")
TICK = 0.2           # seconds between elections (and link checks)
SPAM_FOR, SPAM_EVERY = 5.0, 1.1


def internal_ip(node: dict) -> str | None:
    return next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                 if a.get("type") == "InternalIP"), None)


def interface_of(ip: str) -> str:
    """The link that holds `ip` (the node's address): where the node network is."""
    for link in net.link_list(None):
        for cidr in net.addr_list(None, link["name"]):
            if str(ipaddress.ip_interface(cidr).ip) == ip:
                return link["name"]
    raise RuntimeError(f"no interface holds the node's address {ip}")


class Speaker:
    def __init__(self, client: Client, node: str, lb_class: str = LB_CLASS, interface: str | None = None,
                 port: int = 7946):
        self.client, self.node, self.lb_class, self.ifname, self.port = client, node, lb_class, interface, port
        self.svcs = Informer(client, "services")
        self.slices = Informer(client, "endpointslices")
        self.nodes = Informer(client, "nodes")
        self.slices.add_index("service", lambda s: [f"{s['metadata']['namespace']}/{service_of(s)}"])
        self.announcing: dict[str, str] = {}   # ip -> the Service (ns/name) it is announced for
        self.spam_until: dict[str, float] = {}
        self.last_spam: dict[str, float] = {}
        self.link_up = False
        self.wake = asyncio.Event()
        for inf in (self.svcs, self.slices, self.nodes):
            inf.add_handler(lambda *_: self.wake.set(), lambda *_: self.wake.set(), lambda *_: self.wake.set())

    def wanted(self, alive: set[str]) -> dict[str, str]:
        """ip -> Service key, for the addresses this node wins."""
        nodes = {n["metadata"]["name"]: n for n in self.nodes.list()}
        out = {}
        for svc in self.svcs.list():
            ips = status_ips(svc)
            if not implemented_here(svc, self.lb_class) or not ips:
                continue
            key = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
            # MetalLB elects with the first address (the same node then holds them all)
            if election.announcer(svc, ips[0], self.slices.by_index("service", key), nodes, alive) == self.node:
                out.update({ip: key for ip in ips})
        return out

    async def check_link(self) -> None:
        # (pyroute2 makes its own event loop: netlink from a thread, as kube-proxy's syncs do)
        links = await asyncio.to_thread(net.link_list, None)
        link = next((x for x in links if x["name"] == self.ifname), None)
        up = bool(link) and link["state"] == "UP"
        if up != self.link_up:
            log.info("link %s is %s", self.ifname, "up" if up else "down")
            self.members.link_changed(up)
            self.link_up = up

    async def reconcile(self) -> None:
        await self.check_link()
        self.members.peers = {n["metadata"]["name"]: ip for n in self.nodes.list() if (ip := internal_ip(n))}
        self.members.beat()
        want = self.wanted(self.members.alive(self.link_up))
        now = time.monotonic()
        for ip, key in want.items():
            if ip not in self.announcing:
                log.info("announcing %s for %s from node %s", ip, key, self.node)
                self.spam_until[ip] = now + SPAM_FOR
                self.last_spam[ip] = 0.0
                await self.record(key, "nodeAssigned", f'announcing from node "{self.node}" with protocol "layer2"')
        for ip in set(self.announcing) - set(want):
            log.info("withdrawing %s (%s)", ip, self.announcing[ip])
            self.spam_until.pop(ip, None)
        self.announcing = want
        for ip, until in list(self.spam_until.items()):
            if now >= until:
                del self.spam_until[ip]
            elif now - self.last_spam[ip] >= SPAM_EVERY:
                self.last_spam[ip] = now
                for a in arp.gratuitous(ip, self.arp.mac):
                    self.arp.send(a)

    def answer_arp(self) -> None:
        for req in self.arp.read():
            if req.target_ip in self.announcing and self.link_up:
                self.arp.send(arp.reply_to(req, self.arp.mac))

    async def record(self, key: str, reason: str, message: str) -> None:
        ns, name = key.split("/", 1)
        svc = self.svcs.get(ns, name)
        if svc is None:
            return
        try:
            await self.client.create("events", event(svc, reason, message, component="metallb-speaker",
                                                      host=self.node))
        except ApiError as e:
            log.debug("event not recorded: %s", e)

    async def run(self) -> None:
        tasks = [asyncio.create_task(inf.run()) for inf in (self.svcs, self.slices, self.nodes)]
        await asyncio.gather(*(inf.wait_synced() for inf in (self.svcs, self.slices, self.nodes)))
        me = self.nodes.get(None, self.node)
        ip = internal_ip(me) if me else None
        if self.ifname is None:
            if ip is None:
                raise SystemExit(f"lb-speaker: node {self.node} has no InternalIP; pass --interface")
            self.ifname = await asyncio.to_thread(interface_of, ip)
        self.arp = arp.Responder(self.ifname, await asyncio.to_thread(net.link_mac, None, self.ifname))
        self.members = Memberlist(self.node, self.port)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.arp.fileno(), self.answer_arp)
        loop.add_reader(self.members.fileno(), self.members.read)
        log.info("speaker on node %s: ARP on %s (%s), memberlist on :%d", self.node, self.ifname,
                 arp.mac_text(self.arp.mac), self.port)
        while True:
            for t in tasks:
                if t.done():
                    t.result()
            await self.reconcile()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), TICK)
            except asyncio.TimeoutError:
                pass
