"""Small typed views of what kube-proxy reads: each Service port with its settings, and its
endpoints from the EndpointSlices (matched by port name and protocol), categorized as upstream's
CategorizeEndpoints does for traffic policies and terminating endpoints."""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass, field

from netlab.api.endpointslices import EndpointSlice, service_of, view


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    ready: bool
    serving: bool
    terminating: bool
    node: str = ""
    addr: str = field(init=False, repr=False, compare=False)  # ip:port, read by every renderer

    def __post_init__(self) -> None:
        object.__setattr__(self, "addr", f"{self.ip}:{self.port}")


@dataclass
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str            # TCP, UDP, SCTP
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: list[str] = field(default_factory=list)
    lb_ips: list[str] = field(default_factory=list)
    lb_source_ranges: list[str] = field(default_factory=list)
    affinity_seconds: int = 0   # > 0: sessionAffinity ClientIP with this timeout
    etp_local: bool = False
    itp_local: bool = False
    health_check_node_port: int = 0
    endpoints: list[Endpoint] = field(default_factory=list)
    # upstream's ServicePortName.String(): ns/name, plus :port when the port is named
    key: str = field(init=False, repr=False, compare=False)
    proto: str = field(init=False, repr=False, compare=False)  # tcp, udp, sctp

    def __post_init__(self) -> None:
        self.key = f"{self.namespace}/{self.name}" + (f":{self.port_name}" if self.port_name else "")
        self.proto = self.protocol.lower()

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.external_ips or self.lb_ips)

    @property
    def has_endpoints(self) -> bool:
        """Any usable endpoint anywhere in the cluster (upstream's hasAnyEndpoints)."""
        return any(e.ready or (e.serving and e.terminating) for e in self.endpoints)

    def categorize(self, node: str) -> tuple[list[Endpoint], list[Endpoint], list[Endpoint]]:
        """(cluster endpoints, local endpoints, all endpoints reachable from this node). Ready
        endpoints are used; when none is ready, serving terminating ones are, so connections drain."""
        def usable(eps: list[Endpoint]) -> list[Endpoint]:
            ready = [e for e in eps if e.ready]
            return ready or [e for e in eps if e.serving and e.terminating]
        need_local = self.itp_local or (self.etp_local and self.externally_accessible)
        need_cluster = not self.itp_local or self.externally_accessible  # eTP Local short-circuits pods
        cluster = usable(self.endpoints) if need_cluster else []
        local = usable([e for e in self.endpoints if e.node == node]) if need_local else []
        seen, reachable = set(), []
        for e in cluster + local:
            if e.addr not in seen:
                seen.add(e.addr)
                reachable.append(e)
        return cluster, local, reachable


@dataclass
class Plan:
    """What one service port needs on a node, whatever the mode: the endpoints each traffic
    policy uses, and which per-service chains exist (the flags upstream's syncProxyRules derives
    from CategorizeEndpoints)."""
    cluster: list[Endpoint]
    local: list[Endpoint]
    reachable: list[Endpoint]
    has_any: bool        # some usable endpoint anywhere: otherwise REJECT
    has_internal: bool   # the ClusterIP has somewhere to go (iTP Local: a local endpoint)
    has_external: bool   # external traffic has somewhere to go (eTP Local: a local endpoint)
    uses_cluster: bool   # the Cluster-policy chain (KUBE-SVC / service-...)
    uses_local: bool     # the Local-policy chain (KUBE-SVL / local-...)
    uses_external: bool  # the external chain (KUBE-EXT / external-...)
    uses_firewall: bool  # the loadBalancerSourceRanges chain


def plan(sp: ServicePort, node: str) -> Plan:
    cluster, local, reachable = sp.categorize(node)
    has_any = sp.has_endpoints
    return Plan(cluster, local, reachable, has_any,
                has_internal=bool(local if sp.itp_local else cluster),
                has_external=bool(local if sp.etp_local else cluster),
                uses_cluster=bool(cluster) and (not sp.itp_local or sp.externally_accessible),
                uses_local=bool(local) and (sp.itp_local or (sp.etp_local and sp.externally_accessible)),
                uses_external=has_any and sp.externally_accessible,
                uses_firewall=has_any and bool(sp.lb_ips) and bool(sp.lb_source_ranges))


@functools.lru_cache(maxsize=1 << 18)
def _hash(*parts: str) -> str:
    # upstream: base32 of the sha256, first 16 characters (which 10 bytes of the digest give);
    # kept, since the same names come back on every sync
    return base64.b32encode(hashlib.sha256("".join(parts).encode()).digest()[:10]).decode()


def svc_chain(sp: ServicePort) -> str:
    return "KUBE-SVC-" + _hash(sp.key, sp.proto)


def svl_chain(sp: ServicePort) -> str:
    return "KUBE-SVL-" + _hash(sp.key, sp.proto)


def ext_chain(sp: ServicePort) -> str:
    return "KUBE-EXT-" + _hash(sp.key, sp.proto)


def fw_chain(sp: ServicePort) -> str:
    return "KUBE-FW-" + _hash(sp.key, sp.proto)


def sep_chain(sp: ServicePort, ep: Endpoint) -> str:
    return "KUBE-SEP-" + _hash(sp.key, sp.proto, ep.addr)


def service_ports(services: list[dict], slices: list[dict]) -> list[ServicePort]:
    """Every proxied Service port (ClusterIP set, not headless or ExternalName), with endpoints."""
    m = ServiceMap()
    for svc in services:
        m.set_service(svc)
    for s in slices:
        m.set_slice(s)
    return m.take()


class ServiceMap:
    """The Service ports kube-proxy proxies, kept from informer events as upstream's change
    trackers keep them: an event reads its object at once and marks its Service, and `take`
    joins only the marked Services' ports with their endpoints, so that a sync in a cluster of
    10k Services does not read them all again."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], list[ServicePort]] = {}  # each port, without endpoints
        # Service -> its slices' endpoints, by slice name, then by (port name, protocol)
        self.slices: dict[tuple[str, str], dict[str, dict[tuple[str, str], list[Endpoint]]]] = {}
        self.owner: dict[tuple[str, str], tuple[str, str]] = {}   # slice -> the Service it was filed under
        self.ports: dict[tuple[str, str], list[ServicePort]] = {}
        self.changed: set[tuple[str, str]] = set()
        self.flat: list[ServicePort] = []

    def set_service(self, svc: dict, deleted: bool = False) -> None:
        meta = svc["metadata"]
        key = (meta["namespace"], meta["name"])
        if deleted:
            self.services.pop(key, None)
        else:
            self.services[key] = _ports(svc)
        self.changed.add(key)

    def set_slice(self, s: dict, deleted: bool = False) -> None:
        meta = s["metadata"]
        ns, name = meta["namespace"], meta["name"]
        was = self.owner.pop((ns, name), None)
        if was is not None:
            del self.slices[was][name]
            if not self.slices[was]:
                del self.slices[was]
            self.changed.add(was)
        owner = service_of(s)
        if deleted or not owner or s.get("addressType", "IPv4") != "IPv4":
            return
        key = (ns, owner)
        self.slices.setdefault(key, {})[name] = _endpoints(view(s))
        self.owner[(ns, name)] = key
        self.changed.add(key)

    def take(self) -> list[ServicePort]:
        """All the ports: the same objects for Services that did not change (so renderers tell
        them by identity), in a new list when anything changed."""
        changed, self.changed = self.changed, set()
        for key in sorted(changed):  # (new Services in a stable order)
            slices = self.slices.get(key, {}).values()
            ports = [_joined(sp, slices) for sp in self.services.get(key, ())]
            if ports:
                self.ports[key] = ports
            else:
                self.ports.pop(key, None)
        if changed:
            self.flat = [p for ps in self.ports.values() for p in ps]
        return self.flat


def _ports(svc: dict) -> list[ServicePort]:
    """A Service's proxied ports (none if headless or ExternalName), without endpoints."""
    spec, meta = svc.get("spec") or {}, svc["metadata"]
    ip = spec.get("clusterIP")
    if not ip or ip == "None" or spec.get("type") == "ExternalName":
        return []
    lb = [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        affinity = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds", 10800)
    out = []
    for p in spec.get("ports") or []:
        sp = ServicePort(meta["namespace"], meta["name"], p.get("name", ""), p.get("protocol", "TCP"), ip,
                         p["port"], p.get("nodePort", 0) if spec.get("type") in ("NodePort", "LoadBalancer")
                         else 0, list(spec.get("externalIPs") or []),
                         lb if spec.get("type") == "LoadBalancer" else [],
                         [r.strip() for r in spec.get("loadBalancerSourceRanges") or []], affinity,
                         spec.get("externalTrafficPolicy") == "Local", spec.get("internalTrafficPolicy") == "Local",
                         spec.get("healthCheckNodePort", 0) if spec.get("type") == "LoadBalancer"
                         and spec.get("externalTrafficPolicy") == "Local" else 0)
        sp.etp_local = sp.etp_local and sp.externally_accessible
        out.append(sp)
    return out


def _endpoints(s: EndpointSlice) -> dict[tuple[str, str], list[Endpoint]]:
    """An EndpointSlice's endpoints for each of its ports, by (port name, protocol)."""
    out: dict[tuple[str, str], list[Endpoint]] = {}
    for k, port in s.ports_by_name().items():
        eps: dict[str, Endpoint] = {}  # address -> its endpoint, each address once
        for e in s.endpoints:
            for a in e.addresses:
                if a not in eps:
                    eps[a] = Endpoint(a, port, e.ready, e.serving, e.terminating, e.node_name)
        out[k] = list(eps.values())
    return out


def _joined(sp: ServicePort, slices) -> ServicePort:
    """A copy of `sp` with the endpoints its slices give its port (each address:port once)."""
    k = (sp.port_name, sp.protocol)
    if len(slices) == 1:
        eps = list(next(iter(slices)).get(k, ()))
    else:
        seen, eps = set(), []
        for by_port in slices:
            for ep in by_port.get(k, ()):
                if (ep.ip, ep.port) not in seen:
                    seen.add((ep.ip, ep.port))
                    eps.append(ep)
    out = object.__new__(ServicePort)  # a copy: dataclasses.replace costs 5x more, 10k times in a first sync
    out.__dict__.update(sp.__dict__)
    out.endpoints = eps
    return out
