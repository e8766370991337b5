"""Small typed views of what the agent reads from the API: pods (address, node, labels, named
container ports), namespaces (labels) and NetworkPolicies (networking.k8s.io/v1), with upstream's
meanings of missing and empty fields made explicit, so the renderer never has to guess."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

NAME_LABEL = "kubernetes.io/metadata.name"  # every namespace has it (the API server sets it)
# on a NetworkPolicy, "true": the drops of the pods it selects are logged (nft log), as Antrea's
# policy.antrea.io/enable-np-logging annotation asks for a namespace's policies
LOG_DROPS = "netpol.netlab.io/log-drops"


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: dict[str, str]
    ip: str                                   # IPv4 address
    node: str
    ports: tuple[tuple[str, str, int], ...]   # named container ports: (name, protocol, number)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def named_port(self, name: str, protocol: str) -> int | None:
        return next((n for pn, proto, n in self.ports if pn == name and proto == protocol), None)


def pod_view(obj: dict) -> Pod | None:
    """The pod as a policy sees it, or None when it takes no part: host-network pods (neither
    selected nor peers, as upstream leaves them to the node's own rules), pods that have finished
    (their address may already be another pod's) and pods without an IPv4 address yet."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ips = [e.get("ip", "") for e in status.get("podIPs") or []] or [status.get("podIP") or ""]
    ip = next((a for a in ips if _is_v4(a)), "")
    if not ip:
        return None
    ports = tuple((p["name"], p.get("protocol") or "TCP", int(p["containerPort"]))
                  for c in spec.get("containers") or [] for p in c.get("ports") or []
                  if p.get("name") and p.get("containerPort"))
    return Pod(meta.get("namespace") or "default", meta.get("name", ""), dict(meta.get("labels") or {}), ip,
               spec.get("nodeName") or "", ports)


def namespace_labels(obj: dict) -> tuple[str, dict[str, str]]:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    return name, {**(meta.get("labels") or {}), NAME_LABEL: name}


def _is_v4(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).version == 4
    except ValueError:
        return False


@dataclass(frozen=True)
class Port:
    protocol: str              # TCP, UDP or SCTP (TCP when the policy names none)
    port: int | str | None     # a number, a container port's name, or None: every port
    end_port: int | None = None


@dataclass(frozen=True)
class Peer:
    """One entry of `from`/`to`: either an ipBlock, or selectors. A missing podSelector means
    every pod (of the namespaces chosen); a missing namespaceSelector means the policy's own
    namespace, an empty one every namespace."""
    pod_selector: dict | None = None
    namespace_selector: dict | None = None
    cidr: str = ""
    except_: tuple[str, ...] = ()

    @property
    def is_block(self) -> bool:
        return bool(self.cidr)


@dataclass(frozen=True)
class Rule:
    peers: tuple[Peer, ...]   # empty: every source (ingress) or destination (egress), in or out of the cluster
    ports: tuple[Port, ...]   # empty: every port and protocol


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: dict
    ingress: tuple[Rule, ...] | None   # None: the policy does not select pods for ingress
    egress: tuple[Rule, ...] | None
    log_drops: bool = False            # annotation LOG_DROPS: log what its default deny drops

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: str) -> tuple[Rule, ...] | None:
        return self.ingress if direction == "ingress" else self.egress


def policy_types(spec: dict) -> list[str]:
    """spec.policyTypes, or upstream's default when it is empty: Ingress always, Egress when
    the policy has egress rules."""
    return list(spec.get("policyTypes") or ["Ingress", *(["Egress"] if spec.get("egress") else [])])


def _port(p: dict) -> Port:
    port: Any = p.get("port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    end = p.get("endPort")
    return Port((p.get("protocol") or "TCP").upper(), port, int(end) if end is not None and port is not None else None)


def _peer(p: dict) -> Peer | None:
    block = p.get("ipBlock")
    if block:
        try:
            return Peer(cidr=str(ipaddress.ip_network(block["cidr"], strict=False)),
                        except_=tuple(str(ipaddress.ip_network(e, strict=False)) for e in block.get("except") or []))
        except (KeyError, TypeError, ValueError):
            return None  # (validation refuses it)
    if p.get("podSelector") is None and p.get("namespaceSelector") is None:
        return None  # no peer at all (validation refuses it): it matches nothing
    return Peer(p.get("podSelector"), p.get("namespaceSelector"))


def _rules(items: list[dict] | None, peers_field: str) -> tuple[Rule, ...]:
    out = []
    for r in items or []:
        raw = r.get(peers_field) or []
        peers = tuple(p for p in (_peer(x) for x in raw) if p is not None)
        if raw and not peers:
            continue  # only peers that match nothing: the rule allows nothing
        out.append(Rule(peers, tuple(_port(p) for p in r.get("ports") or [])))
    return tuple(out)


def policy_view(obj: dict) -> Policy:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    types = policy_types(spec)
    return Policy(meta.get("namespace") or "default", meta.get("name", ""), spec.get("podSelector") or {},
                  _rules(spec.get("ingress"), "from") if "Ingress" in types else None,
                  _rules(spec.get("egress"), "to") if "Egress" in types else None,
                  (meta.get("annotations") or {}).get(LOG_DROPS) == "true")
