"""One typed view of a discovery.k8s.io/v1 EndpointSlice, read once, for every component that
reads them (kube-proxy's service map, the DNS server's records): its Service (the
`kubernetes.io/service-name` label), address type, endpoints and ports.

The conditions are read as upstream's consumers read them: `ready` unset counts as ready (an
unknown state, "interpreted as ready"), `serving` unset as whatever `ready` is, `terminating`
unset as not terminating."""

from __future__ import annotations

from dataclasses import dataclass

SERVICE_NAME = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    ready: bool
    serving: bool
    terminating: bool
    hostname: str = ""
    node_name: str = ""
    zone: str = ""
    target: str = ""  # targetRef's name (the pod)


@dataclass(frozen=True, slots=True)
class Port:
    name: str
    protocol: str
    port: int | None  # unset: every port (upstream leaves such a slice's port out)


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str           # "" when the slice names no Service
    address_type: str      # IPv4, IPv6, FQDN
    endpoints: tuple[Endpoint, ...]
    ports: tuple[Port, ...]

    def port(self, name: str, protocol: str = "TCP") -> Port | None:
        """The port of that name and protocol (the first, if a slice repeats it)."""
        return next((p for p in self.ports if p.name == name and p.protocol == protocol), None)

    def ports_by_name(self) -> dict[tuple[str, str], int]:
        """(port name, protocol) -> port number, for the ports that have one; the first of each."""
        out: dict[tuple[str, str], int] = {}
        for p in self.ports:
            if p.port and (p.name, p.protocol) not in out:
                out[(p.name, p.protocol)] = p.port
        return out


def service_of(obj: dict) -> str:
    """The Service an EndpointSlice object belongs to ("" if none)."""
    return (obj["metadata"].get("labels") or {}).get(SERVICE_NAME) or ""


def endpoint(e: dict) -> Endpoint:
    cond = e.get("conditions") or {}
    ready = cond.get("ready") is not False
    return Endpoint(tuple(e.get("addresses") or ()), ready, cond.get("serving", ready) is not False,
                    bool(cond.get("terminating")), e.get("hostname") or "", e.get("nodeName") or "",
                    e.get("zone") or "", (e.get("targetRef") or {}).get("name") or "")


def view(obj: dict) -> EndpointSlice:
    meta = obj["metadata"]
    return EndpointSlice(meta.get("namespace") or "", meta["name"], service_of(obj), obj.get("addressType", "IPv4"),
                         tuple(endpoint(e) for e in obj.get("endpoints") or ()),
                         tuple(Port(p.get("name", ""), p.get("protocol", "TCP"), p.get("port"))
                               for p in obj.get("ports") or ()))
