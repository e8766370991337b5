"""The EndpointSlice controller and the legacy Endpoints it mirrors: for each Service with a
selector, the pods it selects as endpoints with ready/serving/terminating conditions, named
targetPorts resolved per pod, nodeName, targetRef and hostname (of a pod whose subdomain names the
Service: a StatefulSet's), in slices of at most 100 endpoints labelled `kubernetes.io/service-name`,
one set of slices per set of ports the pods resolve (a pod that has only one of two named
targetPorts is in a slice with only that port); a Service without endpoints has one placeholder
slice without endpoints or ports."""

from __future__ import annotations

import logging

from netlab.api.client import ApiError
from netlab.control.controllers.base import Controller, matches, owner_ref, pod_ready, split_key

MAX_PER_SLICE = 100
MANAGED_BY = "endpointslice-controller.k8s.io"
SERVICE_NAME = "kubernetes.io/service-name"
log = logging.getLogger("endpointslice")


def _said(eps: list[dict] | None) -> str:
    """A slice's endpoints as one log field: pod=address:ready|notready, ..."""
    return ",".join(f"{(e.get('targetRef') or {}).get('name', '')}={e['addresses'][0]}:"
                    f"{'ready' if e['conditions'].get('ready') else 'notready'}" for e in eps or [])


def resolve_port(svc_port: dict, pod: dict) -> int | None:
    """A Service port's targetPort for one pod: a number, or a name looked up in its containers."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == svc_port.get("protocol", "TCP"):
                return p.get("containerPort")
    return None


def endpoint_ports(spec: dict, pod: dict) -> tuple[tuple, ...]:
    """The Service's ports this pod resolves, as (name, protocol, port, appProtocol): a port whose
    named targetPort the pod lacks is left out (upstream groups endpoints by these sets)."""
    out = []
    for sp in spec.get("ports") or []:
        port = resolve_port(sp, pod)
        if port is not None:
            out.append((sp.get("name", ""), sp.get("protocol", "TCP"), port, sp.get("appProtocol")))
    return tuple(out)


class EndpointSliceController(Controller):
    name = "endpointslice-controller"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.svcs = ctx.informer("services")
        self.pods = ctx.informer("pods", "namespace")
        self.slices = ctx.informer("endpointslices")
        self.endpoints = ctx.informer("endpoints")
        def owner(s: dict) -> list[str]:
            svc = (s["metadata"].get("labels") or {}).get(SERVICE_NAME)
            return [f"{s['metadata']['namespace']}/{svc}"] if svc else []
        self.slices.add_index("service", owner)
        self.svcs.add_handler(self.enqueue_obj, self.enqueue_obj, self.enqueue_obj)
        self.pods.add_handler(self._pod, lambda old, new: (self._pod(old), self._pod(new)), self._pod)
        self.slices.add_handler(None, None, self._slice_gone)

    def _pod(self, pod: dict) -> None:
        ns = pod["metadata"]["namespace"]
        for svc in self.svcs.list():
            if svc["metadata"]["namespace"] == ns and matches((svc.get("spec") or {}).get("selector") and
                                                              {"matchLabels": svc["spec"]["selector"]},
                                                              pod["metadata"].get("labels")):
                self.enqueue(f"{ns}/{svc['metadata']['name']}")

    def _slice_gone(self, s: dict) -> None:
        svc = (s["metadata"].get("labels") or {}).get(SERVICE_NAME)
        if svc:
            self.enqueue(f"{s['metadata']['namespace']}/{svc}")

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.svcs.get(ns, name)
        mine = [s for s in self.slices.by_index("service", key)
                if (s["metadata"].get("labels") or {}).get("endpointslice.kubernetes.io/managed-by") == MANAGED_BY]
        spec = (svc or {}).get("spec") or {}
        if svc is None or not spec.get("selector") or spec.get("type") == "ExternalName":
            for s in mine:  # no selector: slices are the user's to manage
                await self._delete("endpointslices", s)
            if svc is None and self.endpoints.get(ns, name) is not None:
                await self._delete("endpoints", self.endpoints.get(ns, name))
            return
        pods = [p for p in self.pods.by_index("namespace", ns)
                if matches({"matchLabels": spec["selector"]}, p["metadata"].get("labels"))
                and (p.get("status") or {}).get("podIP")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        pods.sort(key=lambda p: p["metadata"]["name"])
        headless = spec.get("clusterIP") == "None"
        publish = spec.get("publishNotReadyAddresses", False)
        groups: dict[tuple, list[dict]] = {}
        for p in pods:
            groups.setdefault(endpoint_ports(spec, p), []).append(self._endpoint(p, svc, publish))
        desired = []
        for ports, eps in sorted(groups.items(), key=lambda kv: str(kv[0])):
            for i in range(0, len(eps), MAX_PER_SLICE):
                desired.append((ports, eps[i:i + MAX_PER_SLICE]))
        if not desired:
            desired = [((), [])]  # the placeholder: no endpoints and no ports, as upstream's
        labels = {**(svc["metadata"].get("labels") or {}), SERVICE_NAME: name,
                  "endpointslice.kubernetes.io/managed-by": MANAGED_BY}
        if headless:
            labels["service.kubernetes.io/headless"] = ""
        mine.sort(key=lambda s: s["metadata"]["name"])
        for i, (ports, eps) in enumerate(desired):
            # empty lists are null, as upstream's slices read back (a nil Go slice without omitempty)
            body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                    "endpoints": eps or None,
                    "ports": [{k: v for k, v in (("name", n), ("protocol", pr), ("port", po), ("appProtocol", ap))
                               if v is not None} for n, pr, po, ap in ports] or None}
            if i < len(mine):
                cur = mine[i]
                if cur.get("endpoints") != body["endpoints"] or cur.get("ports") != body["ports"] or \
                        (cur["metadata"].get("labels") or {}) != labels:
                    new = dict(cur, **{k: body[k] for k in ("endpoints", "ports")})
                    new["metadata"] = dict(cur["metadata"], labels=labels)
                    await self.client.update("endpointslices", new)
                    log.info('updated EndpointSlice %s/%s service="%s" endpoints=%s', ns, cur["metadata"]["name"],
                             key, _said(body["endpoints"]))
            else:
                body["metadata"] = {"generateName": f"{name}-", "namespace": ns, "labels": labels,
                                    "ownerReferences": [owner_ref(svc)]}
                made = await self.client.create("endpointslices", body)
                log.info('created EndpointSlice %s/%s service="%s" endpoints=%s', ns, made["metadata"]["name"],
                         key, _said(body["endpoints"]))
        for s in mine[len(desired):]:
            await self._delete("endpointslices", s)
        await self._sync_endpoints(svc, pods, publish)

    def _endpoint(self, p: dict, svc: dict, publish: bool) -> dict:
        ready = pod_ready(p)
        terminating = bool(p["metadata"].get("deletionTimestamp"))
        ep = {"addresses": [p["status"]["podIP"]],
              "conditions": {"ready": (ready or publish) and not terminating, "serving": ready or publish,
                             "terminating": terminating},
              "targetRef": {"kind": "Pod", "namespace": p["metadata"]["namespace"], "name": p["metadata"]["name"],
                            "uid": p["metadata"]["uid"]}}
        pspec = p.get("spec") or {}
        if pspec.get("nodeName"):
            ep["nodeName"] = pspec["nodeName"]
        if pspec.get("hostname") and pspec.get("subdomain") == svc["metadata"]["name"]:
            ep["hostname"] = pspec["hostname"]  # upstream's ShouldSetHostname: headless or not
        return ep

    async def _sync_endpoints(self, svc: dict, pods: list[dict], publish: bool) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        subsets: dict[tuple, dict] = {}
        for p in pods:
            if p["metadata"].get("deletionTimestamp") and not publish:
                continue
            ports = tuple((n, po, pr, ap) for n, pr, po, ap in endpoint_ports(svc["spec"], p))
            if svc["spec"].get("ports") and not ports:
                continue  # upstream's Endpoints list an address per port it resolves
            addr = {"ip": p["status"]["podIP"], "targetRef": {"kind": "Pod", "namespace": ns,
                                                              "name": p["metadata"]["name"],
                                                              "uid": p["metadata"]["uid"]}}
            if (p.get("spec") or {}).get("nodeName"):
                addr["nodeName"] = p["spec"]["nodeName"]
            if (p.get("spec") or {}).get("hostname") and p["spec"].get("subdomain") == name:
                addr["hostname"] = p["spec"]["hostname"]
            s = subsets.setdefault(ports, {})
            s.setdefault("addresses" if pod_ready(p) or publish else "notReadyAddresses", []).append(addr)
        out = []
        for ports, s in subsets.items():
            s["ports"] = [{k: v for k, v in (("name", n), ("port", po), ("protocol", pr), ("appProtocol", ap)) if v}
                          for n, po, pr, ap in ports]
            out.append(s)
        labels = dict(svc["metadata"].get("labels") or {})
        if svc["spec"].get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        cur = self.endpoints.get(ns, name)
        body = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns,
                                                                       "labels": labels}}
        if out:
            body["subsets"] = out
        if cur is None:
            try:
                await self.client.create("endpoints", body)
            except ApiError as e:
                if e.status != 409:
                    raise
        elif cur.get("subsets") != body.get("subsets") or (cur["metadata"].get("labels") or {}) != labels:
            new = dict(cur, metadata=dict(cur["metadata"], labels=labels))
            new.pop("subsets", None)
            if out:
                new["subsets"] = out
            await self.client.update("endpoints", new)

    async def _delete(self, resource: str, obj: dict) -> None:
        try:
            await self.client.delete(resource, obj["metadata"]["name"], obj["metadata"]["namespace"])
        except ApiError as e:
            if e.status != 404:
                raise
