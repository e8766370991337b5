"""The EndpointSlice mirroring controller: Endpoints that someone wrote by hand for a Service
without a selector are mirrored into EndpointSlices, so kube-proxy and DNS (which read only
slices) see them, as upstream's endpointslicemirroring-controller does.

Mirrored: Endpoints of an existing Service whose selector is unset, unless labelled
`endpointslice.kubernetes.io/skip-mirror: "true"` or carrying a leader-election record. Each
subset's ready and not-ready addresses become endpoints with only the `ready` condition, grouped
by (address type, ports) into slices of at most 100, owned by the Endpoints, with its labels and
annotations (but the last-applied configuration and the trigger time) and the service-name and
managed-by labels."""

from __future__ import annotations

import ipaddress

from netlab.api.client import ApiError
from netlab.control.controllers.base import Controller, owner_ref, split_key

MANAGED_BY = "endpointslicemirroring-controller.k8s.io"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SERVICE_NAME = "kubernetes.io/service-name"
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
LEADER = "control-plane.alpha.kubernetes.io/leader"
DROPPED_ANNOTATIONS = ("endpoints.kubernetes.io/last-change-trigger-time",
                       "kubectl.kubernetes.io/last-applied-configuration")
MAX_PER_SLICE = 100
MAX_PER_SUBSET = 1000  # upstream mirrors at most this many addresses of each subset


def _address_type(ip: str) -> str | None:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return None


def desired_slices(ep: dict) -> list[tuple[str, list, list[dict]]]:
    """(address type, ports, endpoints) of the slices an Endpoints object mirrors into."""
    groups: dict[tuple[str, str], tuple[list, list[dict]]] = {}
    for subset in ep.get("subsets") or []:
        ports = [{k: v for k, v in (("name", p.get("name", "")), ("port", p.get("port")),
                                    ("protocol", p.get("protocol", "TCP")), ("appProtocol", p.get("appProtocol")))
                  if v is not None} for p in subset.get("ports") or []]
        addrs = [(a, True) for a in subset.get("addresses") or []] + \
                [(a, False) for a in subset.get("notReadyAddresses") or []]
        for a, ready in addrs[:MAX_PER_SUBSET]:
            family = _address_type(a.get("ip", ""))
            if family is None:
                continue  # upstream skips what does not parse as an IP
            e = {"addresses": [str(ipaddress.ip_address(a["ip"]))], "conditions": {"ready": ready}}
            for k in ("hostname", "nodeName", "targetRef"):
                if a.get(k):
                    e[k] = a[k]
            key = (family, repr(sorted(ports, key=repr)))
            groups.setdefault(key, (ports, []))[1].append(e)
    out = []
    for (family, _), (ports, eps) in sorted(groups.items()):
        for i in range(0, len(eps), MAX_PER_SLICE):
            out.append((family, ports, eps[i:i + MAX_PER_SLICE]))
    return out


class EndpointSliceMirroringController(Controller):
    name = "endpointslicemirroring-controller"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.svcs = ctx.informer("services")
        self.endpoints = ctx.informer("endpoints")
        self.slices = ctx.informer("endpointslices")
        self.slices.add_index("mirrored", lambda s: [f"{s['metadata']['namespace']}/{svc}"] if (
            svc := (s["metadata"].get("labels") or {}).get(SERVICE_NAME)) and
            (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY else [])
        self.svcs.add_handler(self.enqueue_obj, self.enqueue_obj, self.enqueue_obj)
        self.endpoints.add_handler(self.enqueue_obj, self.enqueue_obj, self.enqueue_obj)
        self.slices.add_handler(None, self._slice, self._slice)

    def _slice(self, s: dict, *_: dict) -> None:
        labels = s["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(SERVICE_NAME):
            self.enqueue(f"{s['metadata']['namespace']}/{labels[SERVICE_NAME]}")

    def _mirrors(self, svc: dict | None, ep: dict | None) -> bool:
        if svc is None or ep is None or (svc.get("spec") or {}).get("selector") is not None:
            return False
        meta = ep["metadata"]
        return (meta.get("labels") or {}).get(SKIP_MIRROR) != "true" and LEADER not in (meta.get("annotations") or {})

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc, ep = self.svcs.get(ns, name), self.endpoints.get(ns, name)
        mine = sorted(self.slices.by_index("mirrored", key), key=lambda s: s["metadata"]["name"])
        desired = desired_slices(ep) if self._mirrors(svc, ep) else []
        if desired:
            labels = {**(ep["metadata"].get("labels") or {}), SERVICE_NAME: name, MANAGED_BY_LABEL: MANAGED_BY}
            annotations = {k: v for k, v in (ep["metadata"].get("annotations") or {}).items()
                           if k not in DROPPED_ANNOTATIONS}
            owner = owner_ref(dict(ep, apiVersion="v1", kind="Endpoints"))
        for i, (family, ports, eps) in enumerate(desired):
            body = {"addressType": family, "endpoints": eps, "ports": ports or None}
            if i < len(mine):
                cur = mine[i]
                meta = cur["metadata"]
                if any(cur.get(k) != v for k, v in body.items()) or (meta.get("labels") or {}) != labels or \
                        (meta.get("annotations") or {}) != annotations:
                    if cur.get("addressType") != family:  # immutable: made again
                        await self._delete(cur)
                        mine[i] = None
                    else:
                        await self.client.update("endpointslices", dict(cur, **body, metadata=dict(
                            meta, labels=labels, annotations=annotations)))
                        continue
                else:
                    continue
            body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", **body,
                    "metadata": {"generateName": f"{name}-", "namespace": ns, "labels": labels,
                                 "annotations": annotations, "ownerReferences": [owner]}}
            await self.client.create("endpointslices", body)
        for s in mine[len(desired):]:
            await self._delete(s)

    async def _delete(self, s: dict) -> None:
        try:
            await self.client.delete("endpointslices", s["metadata"]["name"], s["metadata"]["namespace"])
        except ApiError as e:
            if e.status != 404:
                raise
