"""Which node announces a LoadBalancer address (MetalLB's layer2 ShouldAnnounce), as pure
functions of the Service, its EndpointSlices, the Nodes and the live speakers."""

from __future__ import annotations

import hashlib

from netlab.api.endpointslices import view

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def serving_nodes(slices: list[dict]) -> set[str] | None:
    """The nodes holding a ready endpoint; None when no endpoint is ready anywhere."""
    nodes, any_ready = set(), False
    for s in slices:
        for e in view(s).endpoints:
            if e.ready:
                any_ready = True
                if e.node_name:
                    nodes.add(e.node_name)
    return nodes if any_ready else None


def usable_speakers(nodes: dict[str, dict], alive: set[str]) -> set[str]:
    """Live speakers on nodes that may announce: not labelled exclude-from-external-load-balancers
    (kubeadm labels control planes so) and without the NetworkUnavailable condition."""
    out = set()
    for name in alive:
        node = nodes.get(name)
        if node is None or EXCLUDE_LABEL in (node["metadata"].get("labels") or {}):
            continue
        if any(c.get("type") == "NetworkUnavailable" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or []):
            continue
        out.add(name)
    return out


def order(candidates: set[str], ip: str) -> list[str]:
    """The candidates in the order every speaker computes alike: by sha256 of `node#ip`."""
    return sorted(candidates, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest())


def announcer(svc: dict, ip: str, slices: list[dict], nodes: dict[str, dict], alive: set[str]) -> str | None:
    """The node that announces `ip` of `svc`, or None: nobody (no ready endpoint, no usable
    speaker, or for externalTrafficPolicy Local no speaker on a node with a ready endpoint)."""
    serving = serving_nodes(slices)
    if serving is None:
        return None
    candidates = usable_speakers(nodes, alive)
    if (svc.get("spec") or {}).get("externalTrafficPolicy") == "Local":
        candidates &= serving
    ranked = order(candidates, ip)
    return ranked[0] if ranked else None
