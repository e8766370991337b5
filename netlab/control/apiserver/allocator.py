"""Service ClusterIPs from the service subnet and NodePorts from 30000-32767, as upstream's
allocators hand them out."""

from __future__ import annotations

import ipaddress
import random

from netlab.control.apiserver import validation as v
from netlab.control.apiserver.errors import Invalid

NODE_PORT_RANGE = (30000, 32767)


class Allocator:
    """Checked against the Services in the store, so allocations survive restarts without a
    separate bitmap."""

    def __init__(self, service_subnet: str, list_services):
        self.subnet = ipaddress.ip_network(service_subnet)
        self.list_services = list_services

    def _used(self, skip_uid: str | None) -> tuple[set[str], set[int]]:
        ips, ports = set(), set()
        for s in self.list_services():
            if s["metadata"].get("uid") == skip_uid:
                continue
            spec = s.get("spec") or {}
            ips.update(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
            ports.update(p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort"))
        return ips, ports

    def allocate(self, svc: dict, old: dict | None = None) -> None:
        spec = svc["spec"]
        ips, ports = self._used(svc["metadata"].get("uid"))
        errs: list[v.FieldError] = []
        stype = spec.get("type", "ClusterIP")
        if stype == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            return
        ip = spec.get("clusterIP") or ((spec.get("clusterIPs") or [None])[0])
        if old and (old.get("spec") or {}).get("clusterIP") and not ip:
            ip = old["spec"]["clusterIP"]
        if ip == "None":
            spec["clusterIPs"] = ["None"]
        elif ip:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                errs.append(v.invalid("spec.clusterIPs", [ip], "must be a valid IP address"))
                addr = None
            if addr is not None and (old or {}).get("spec", {}).get("clusterIP") != ip:
                if addr not in self.subnet:
                    errs.append(v.invalid("spec.clusterIPs", [ip], f"failed to allocate IP {ip}: the provided IP "
                                          f"({ip}) is not in the valid range. The range of valid IPs is {self.subnet}"))
                elif ip in ips:
                    errs.append(v.invalid("spec.clusterIPs", [ip], f"failed to allocate IP {ip}: provided IP is "
                                          "already allocated"))
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        else:
            free = self._free_ip(ips)
            if free is None:
                errs.append(v.FieldError("spec.clusterIPs", "FieldValueInvalid",
                                         f"failed to allocate a serviceIP: range is full ({self.subnet})"))
            else:
                spec["clusterIP"], spec["clusterIPs"] = free, [free]
        if stype in ("NodePort", "LoadBalancer"):
            old_ports = {(p.get("port"), p.get("protocol")): p.get("nodePort")
                         for p in ((old or {}).get("spec") or {}).get("ports") or []}
            taken = set(ports)
            for i, p in enumerate(spec.get("ports") or []):
                np = p.get("nodePort") or old_ports.get((p.get("port"), p.get("protocol")))
                if np:
                    if np in taken and np != old_ports.get((p.get("port"), p.get("protocol"))):
                        errs.append(v.invalid(f"spec.ports[{i}].nodePort", np, "provided port is already allocated"))
                    p["nodePort"] = np
                else:
                    free = [n for n in range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1) if n not in taken]
                    if not free:
                        errs.append(v.FieldError(f"spec.ports[{i}].nodePort", "FieldValueInvalid",
                                                 "failed to allocate a nodePort: range is full"))
                        continue
                    p["nodePort"] = random.choice(free)
                taken.add(p["nodePort"])
        else:
            for p in spec.get("ports") or []:
                p.pop("nodePort", None)
        if errs:
            raise Invalid(errs)

    def _free_ip(self, used: set[str]) -> str | None:
        first, last = int(self.subnet.network_address) + 1, int(self.subnet.broadcast_address) - 1
        # Dynamic allocations stay out of the lowest addresses, which users pick by hand
        # (10.96.0.1 kubernetes, 10.96.0.10 kube-dns), as upstream reserves a static band.
        lo = first + min(256, (last - first) // 16)
        for _ in range(64):
            cand = str(ipaddress.ip_address(random.randint(lo, last)))
            if cand not in used:
                return cand
        for n in range(lo, last + 1):
            cand = str(ipaddress.ip_address(n))
            if cand not in used:
                return cand
        return None
