"""The service load-balancer controller: each Service of type LoadBalancer that is ours gets an
address from the lab's pool on the node network, written to status.loadBalancer.ingress[].ip
(ipMode VIP), as MetalLB's controller assigns them (and upstream's service controller writes
what a cloud's load balancer got). The lb-speaker on the nodes then makes the address answer
(lb/, MetalLB's L2 mode).

Ours: a Service without spec.loadBalancerClass (the default implementation's), or with our class
(`netlab.dev/l2`). A Service with another class is left alone, status included, as upstream's
service controller leaves it to that class's implementation. `spec.loadBalancerIP` asks for one
address of the pool; otherwise a Service keeps the address it has, or gets the lowest free one.
The address is released when the Service is deleted or stops being a LoadBalancer (its status
is then cleared).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass

from netlab.api.client import ApiError
from netlab.api.loadbalancers import LB_CLASS, status_ips
from netlab.api.loadbalancers import implemented_here as ours
from netlab.control.controllers.base import Controller, key_of, split_key

log = logging.getLogger("netlab.controllers")


class PoolError(ValueError):
    """Why a Service gets no address; the message is the event's."""


@dataclass(frozen=True)
class Pool:
    """An address range, with the allocation rules MetalLB's controller applies to it."""
    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address

    @classmethod
    def parse(cls, text: str) -> Pool:
        """`A-B` or a CIDR."""
        if "-" in text:
            a, b = (ipaddress.IPv4Address(x.strip()) for x in text.split("-", 1))
        else:
            net = ipaddress.IPv4Network(text.strip(), strict=False)
            a, b = net[0], net[-1]
        if a > b:
            raise ValueError(f"pool {text} ends before it starts")
        return cls(a, b)

    def __contains__(self, ip: object) -> bool:
        try:
            return self.first <= ipaddress.IPv4Address(str(ip)) <= self.last
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    def assign(self, requested: str | None, current: list[str], taken: set[str]) -> str:
        """The address for one Service: the one it asks for (spec.loadBalancerIP), else the one it
        has, else the lowest free one. `taken`: the addresses other Services hold."""
        if requested:
            if requested not in self:
                raise PoolError(f'"{requested}" is not allowed in config')
            if requested in taken:
                raise PoolError(f'"{requested}" is already in use by another service')
            return requested
        for ip in current:
            if ip in self and ip not in taken:
                return ip
        n = int(self.first)
        while n <= int(self.last):
            ip = str(ipaddress.IPv4Address(n))
            if ip not in taken:
                return ip
            n += 1
        raise PoolError("no available IPs")


class ServiceLBController(Controller):
    name = "service-lb-controller"

    def __init__(self, ctx, pool: Pool, lb_class: str = LB_CLASS):
        super().__init__(ctx)
        self.pool, self.lb_class = pool, lb_class
        self.assigned: dict[str, str] = {}  # Service key -> the address written for it (ahead of the informer)
        self.svcs = ctx.informer("services")
        self.svcs.add_handler(self.enqueue_obj, lambda old, new: self.enqueue_obj(new), self._gone)

    def _gone(self, svc: dict) -> None:
        self.assigned.pop(key_of(svc), None)
        self.enqueue_obj(svc)  # (a Service waiting for a full pool may get the freed address)
        for other in self.svcs.list():
            if ours(other, self.lb_class) and not status_ips(other):
                self.enqueue_obj(other)

    def taken(self, key: str) -> set[str]:
        """The pool's addresses that Services other than `key` hold."""
        taken = {ip for k, ip in self.assigned.items() if k != key}
        for s in self.svcs.list():
            k = key_of(s)
            if k != key and k not in self.assigned and ours(s, self.lb_class):
                taken.update(ip for ip in status_ips(s) if ip in self.pool)
        return taken

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.svcs.get(ns, name)
        if svc is None:
            self.assigned.pop(key, None)
            return
        spec = svc.get("spec") or {}
        if spec.get("type") == "LoadBalancer" and not ours(svc, self.lb_class):
            return  # another implementation's: not even its status is ours to touch
        if not ours(svc, self.lb_class):
            self.assigned.pop(key, None)
            if status_ips(svc):  # no longer a LoadBalancer: the address goes back to the pool
                await self._write_status(svc, {})
            return
        try:
            ip = self.pool.assign(spec.get("loadBalancerIP") or None, status_ips(svc), self.taken(key))
        except PoolError as e:
            self.assigned.pop(key, None)
            await self.event(svc, "AllocationFailed", f'Failed to allocate IP for "{key}": {e}', "Warning")
            if status_ips(svc):
                await self._write_status(svc, {})
            return
        self.assigned[key] = ip
        want = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
        if (svc.get("status") or {}).get("loadBalancer") != want:
            await self._write_status(svc, want)
            await self.event(svc, "IPAllocated", f"Assigned IP {json.dumps([ip])}")

    async def _write_status(self, svc: dict, lb: dict) -> None:
        body = dict(svc, status=dict(svc.get("status") or {}, loadBalancer=lb))
        try:
            await self.client.update("services", body, subresource="status")
        except ApiError as e:
            if e.status == 404:
                return
            raise  # a conflict: retried with the newer object the informer brings
