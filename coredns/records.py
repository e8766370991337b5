"""The Kubernetes DNS-Based Service Discovery specification (kubernetes/dns, specification.md,
schema 1.1.0) as CoreDNS's kubernetes plugin answers it: a pure function of (query, indexed
cluster state).

    <svc>.<ns>.svc.<zone>               A: ClusterIP, or each ready endpoint (headless); CNAME: ExternalName
    <host>.<svc>.<ns>.svc.<zone>        A: a headless endpoint (hostname, or its IP with dashes)
    _<port>._<proto>.<svc>.<ns>.svc.<zone>  SRV per named port
    <a-b-c-d>.<ns>.pod.<zone>           A (pods insecure | verified)
    <reversed ip>.in-addr.arpa          PTR for ClusterIPs and headless endpoints
    dns-version.<zone>                  TXT "1.1.0"
A name that exists without records of the asked type is NOERROR with no answer (and the SOA);
a name that does not exist is NXDOMAIN.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A

from netlab.api.endpointslices import EndpointSlice, view

SCHEMA_VERSION = "1.1.0"


@dataclass
class Endpoint:
    ip: str
    hostname: str
    ready: bool
    pod: str = ""


@dataclass
class Service:
    namespace: str
    name: str
    cluster_ip: str          # "" for headless
    type: str
    external_name: str = ""
    publish_not_ready: bool = False
    ports: list[tuple[str, str, int]] = field(default_factory=list)      # (name, protocol, port)
    endpoints: list[Endpoint] = field(default_factory=list)
    endpoint_ports: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def headless(self) -> bool:
        return not self.cluster_ip and self.type != "ExternalName"

    def ready_endpoints(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.ready or self.publish_not_ready]


class State:
    """The cluster as DNS sees it, indexed for answering."""

    def __init__(self):
        self.services: dict[tuple[str, str], Service] = {}
        self.pods: dict[str, set[str]] = {}        # ip -> namespaces of running pods with that IP
        self.namespaces: set[str] = set()
        self.version = 0

    @classmethod
    def build(cls, services: list[dict], slices: list[dict], pods: list[dict], namespaces: list[dict]) -> State:
        st = cls()
        st.namespaces = {n["metadata"]["name"] for n in namespaces}
        by_svc: dict[tuple[str, str], list[EndpointSlice]] = {}
        for obj in slices:
            sl = view(obj)
            if sl.service and sl.address_type == "IPv4":
                by_svc.setdefault((sl.namespace, sl.service), []).append(sl)
        for svc in services:
            meta, spec = svc["metadata"], svc.get("spec") or {}
            ns = meta.get("namespace", "default")
            st.namespaces.add(ns)
            ip = spec.get("clusterIP") or ""
            s = Service(ns, meta["name"], "" if ip == "None" else ip, spec.get("type", "ClusterIP"),
                        spec.get("externalName", ""), bool(spec.get("publishNotReadyAddresses")),
                        [(p.get("name", ""), p.get("protocol", "TCP"), p["port"]) for p in spec.get("ports") or []])
            seen = set()
            for sl in by_svc.get((ns, meta["name"]), []):
                for p in sl.ports:
                    entry = (p.name, p.protocol, p.port)
                    if entry not in s.endpoint_ports and p.port:
                        s.endpoint_ports.append(entry)
                for e in sl.endpoints:
                    for a in e.addresses:
                        if a not in seen:
                            seen.add(a)
                            s.endpoints.append(Endpoint(a, e.hostname, e.ready, e.target))
            st.services[(ns, meta["name"])] = s
        for p in pods:
            ip = (p.get("status") or {}).get("podIP")
            if ip and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                st.pods.setdefault(ip, set()).add(p["metadata"]["namespace"])
                st.namespaces.add(p["metadata"]["namespace"])
        return st


def dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


@dataclass
class Answer:
    rcode: int
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    fallthrough: bool = False    # not ours: the next plugin (forward) should answer
    authoritative: bool = True


class Kubernetes:
    """The `kubernetes` plugin: zones, `pods disabled|insecure|verified`, `ttl`, `fallthrough`,
    `endpoint_pod_names`."""

    def __init__(self, zones: list[str], ttl: int = 5, pods: str = "disabled", fallthrough: list[str] | None = None,
                 endpoint_pod_names: bool = False):
        self.zones = [z.lower().rstrip(".") + "." for z in zones]
        self.ttl, self.pods_mode, self.endpoint_pod_names = ttl, pods, endpoint_pod_names
        self.fallthrough = None if fallthrough is None else [z.lower().rstrip(".") + "." for z in fallthrough]
        self.state = State()

    @property
    def cluster_zone(self) -> str:
        return next((z for z in self.zones if not z.endswith("arpa.")), "cluster.local.")

    def zone_of(self, qname: str) -> str | None:
        q = qname.lower()
        best = None
        for z in self.zones:
            if (q == z or q.endswith("." + z) or z == ".") and (best is None or len(z) > len(best)):
                best = z
        return best

    def _falls_through(self, qname: str) -> bool:
        if self.fallthrough is None:
            return False
        if not self.fallthrough:
            return True
        q = qname.lower()
        return any(q == z or q.endswith("." + z) for z in self.fallthrough)

    def soa(self, zone: str) -> RR:
        return RR(zone, QTYPE.SOA, ttl=self.ttl, rdata=SOA(f"ns.dns.{zone}", f"hostmaster.{zone}",
                                                          (self.state.version or 1, 7200, 1800, 86400, self.ttl)))

    def _rr(self, name: str, rtype: int, rdata) -> RR:
        return RR(name, rtype, ttl=self.ttl, rdata=rdata)

    def _endpoint_name(self, e: Endpoint) -> str:
        if e.hostname:
            return e.hostname
        if self.endpoint_pod_names and e.pod:
            return e.pod
        return dashed(e.ip)

    def answer(self, qname: str, qtype: int) -> Answer:
        zone = self.zone_of(qname)
        if zone is None:
            return Answer(RCODE.REFUSED, authoritative=False)
        name = qname.lower().rstrip(".") + "."
        if zone.endswith("arpa."):
            return self._reverse(name, qtype, zone)
        rel = name[: -len(zone)].rstrip(".")
        labels = rel.split(".") if rel else []
        nodata = Answer(RCODE.NOERROR, authority=[self.soa(zone)])
        nx = Answer(RCODE.NXDOMAIN, authority=[self.soa(zone)])
        if not labels:  # the zone apex
            if qtype in (QTYPE.SOA, QTYPE.ANY):
                return Answer(RCODE.NOERROR, [self.soa(zone)])
            if qtype == QTYPE.NS:
                return Answer(RCODE.NOERROR, [self._rr(zone, QTYPE.NS, NS(f"ns.dns.{zone}"))])
            return nodata
        if labels == ["dns-version"]:
            if qtype in (QTYPE.TXT, QTYPE.ANY):
                return Answer(RCODE.NOERROR, [self._rr(name, QTYPE.TXT, TXT(SCHEMA_VERSION))])
            return nodata
        kind = labels[-1]
        if kind == "svc":
            return self._service(name, labels[:-1], qtype, zone, nodata, nx)
        if kind == "pod":
            return self._pod(name, labels[:-1], qtype, nodata, nx)
        if self._falls_through(name):
            return Answer(RCODE.NXDOMAIN, fallthrough=True)
        return nx

    def _service(self, name, labels, qtype, zone, nodata, nx) -> Answer:
        st = self.state
        if not labels:
            return nodata  # svc.<zone>
        ns = labels[-1]
        if len(labels) == 1:
            return nodata if ns in st.namespaces else nx
        svc = st.services.get((ns, labels[-2]))
        if svc is None:
            return nx
        rest = labels[:-2]
        if not rest:
            if svc.type == "ExternalName":
                target = svc.external_name.rstrip(".") + "."
                return Answer(RCODE.NOERROR, [self._rr(name, QTYPE.CNAME, CNAME(target))])
            if qtype in (QTYPE.A, QTYPE.ANY):
                ips = [svc.cluster_ip] if not svc.headless else [e.ip for e in svc.ready_endpoints()]
                recs = [self._rr(name, QTYPE.A, A(ip)) for ip in ips if ":" not in ip]
                return Answer(RCODE.NOERROR, recs) if recs else (nodata if svc.headless else nx)
            if qtype == QTYPE.SRV:
                return self._srv(svc, name, None, None, zone, nodata)
            if qtype == QTYPE.AAAA:
                recs = [self._rr(name, QTYPE.AAAA, AAAA(e.ip)) for e in svc.ready_endpoints() if ":" in e.ip] \
                    if svc.headless else ([self._rr(name, QTYPE.AAAA, AAAA(svc.cluster_ip))]
                                          if ":" in svc.cluster_ip else [])
                return Answer(RCODE.NOERROR, recs) if recs else nodata
            return nodata
        if len(rest) == 2 and rest[0].startswith("_") and rest[1].startswith("_"):
            if qtype not in (QTYPE.SRV, QTYPE.ANY):
                has = self._srv(svc, name, rest[0][1:], rest[1][1:], zone, nodata)
                return nodata if has.answer else nx
            return self._srv(svc, name, rest[0][1:], rest[1][1:], zone, nx)
        if len(rest) == 1 and svc.headless:
            for e in svc.ready_endpoints():
                if self._endpoint_name(e) == rest[0]:
                    if qtype in (QTYPE.A, QTYPE.ANY) and ":" not in e.ip:
                        return Answer(RCODE.NOERROR, [self._rr(name, QTYPE.A, A(e.ip))])
                    return nodata
        return nx

    def _srv(self, svc: Service, name: str, port: str | None, proto: str | None, zone: str, empty: Answer) -> Answer:
        """SRV records: a ClusterIP Service points at its own name; a headless one at each
        endpoint's name, with the addresses as additional records."""
        ports = svc.endpoint_ports if svc.headless else svc.ports
        matching = [(n, pr, p) for n, pr, p in ports if n and (port is None or n == port)
                    and (proto is None or pr.lower() == proto)]
        if svc.headless:
            svc_ports = {(n, pr): p for n, pr, p in svc.ports}
            matching = [(n, pr, p) for n, pr, p in matching if (n, pr) in svc_ports or not svc.ports]
        answers, extra = [], []
        base = f"{svc.name}.{svc.namespace}.svc.{zone}"
        if svc.headless:
            eps = svc.ready_endpoints()
            weight = int(100 / max(1, len(eps) * max(1, len(matching)))) or 1
            for n, pr, p in matching:
                for e in eps:
                    target = f"{self._endpoint_name(e)}.{base}"
                    answers.append(self._rr(name if port else f"_{n}._{pr.lower()}.{base}", QTYPE.SRV,
                                            SRV(0, weight, p, target)))
                    extra.append(self._rr(target, QTYPE.A, A(e.ip)))
        elif svc.cluster_ip:
            weight = int(100 / max(1, len(matching))) or 1
            for n, pr, p in matching:
                answers.append(self._rr(name if port else f"_{n}._{pr.lower()}.{base}", QTYPE.SRV,
                                        SRV(0, weight, p, base)))
            if answers:
                extra.append(self._rr(base, QTYPE.A, A(svc.cluster_ip)))
        if not answers:
            return empty
        return Answer(RCODE.NOERROR, answers, additional=extra)

    def _pod(self, name, labels, qtype, nodata, nx) -> Answer:
        if self.pods_mode == "disabled" or len(labels) != 2:
            return nx
        ip_label, ns = labels
        try:
            ip = str(ipaddress.IPv4Address(ip_label.replace("-", ".")))
        except ValueError:
            return nx
        if self.pods_mode == "verified" and ns not in self.state.pods.get(ip, set()):
            return nx
        if qtype in (QTYPE.A, QTYPE.ANY):
            return Answer(RCODE.NOERROR, [self._rr(name, QTYPE.A, A(ip))])
        return nodata

    def _reverse(self, name: str, qtype: int, zone: str) -> Answer:
        targets = []
        if name.endswith(".in-addr.arpa."):
            parts = name[: -len(".in-addr.arpa.")].split(".")
            if len(parts) == 4:
                ip = ".".join(reversed(parts))
                cz = self.cluster_zone
                for svc in self.state.services.values():
                    if svc.cluster_ip == ip:
                        targets.append(f"{svc.name}.{svc.namespace}.svc.{cz}")
                    elif svc.headless:
                        for e in svc.ready_endpoints():
                            if e.ip == ip:
                                targets.append(f"{self._endpoint_name(e)}.{svc.name}.{svc.namespace}.svc.{cz}")
        if targets:
            if qtype in (QTYPE.PTR, QTYPE.ANY):
                return Answer(RCODE.NOERROR, [self._rr(name, QTYPE.PTR, PTR(t)) for t in targets])
            return Answer(RCODE.NOERROR, authority=[self.soa(zone)])
        if self._falls_through(name):
            return Answer(RCODE.NXDOMAIN, fallthrough=True)
        return Answer(RCODE.NXDOMAIN, authority=[self.soa(zone)])

