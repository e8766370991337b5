"""What every cluster has from its first start: the system namespaces, and the `kubernetes`
Service with its Endpoints and EndpointSlice pointing at this API server (upstream's endpoint
reconciler)."""

from __future__ import annotations

import ipaddress

from netlab.api.resources import Resource, lookup
from netlab.control.apiserver.objects import Objects
from netlab.control.apiserver.store import Exists
from netlab.control.apiserver.strategies.namespaces import SYSTEM


def bootstrap(objects: Objects, service_subnet: str, advertise: str, secure_port: int) -> None:
    store = objects.store
    ns_r = lookup("", "v1", "namespaces")
    for ns in SYSTEM:
        if store.get(objects.key(ns_r, None, ns)) is None:
            obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            objects.prepare_create(ns_r, obj, None)
            _create_quiet(objects, ns_r, obj)
    svc_r = lookup("", "v1", "services")
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
           "spec": {"type": "ClusterIP", "clusterIP": str(ipaddress.ip_network(service_subnet)[1]),
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": secure_port}]}}
    if store.get(objects.key(svc_r, "default", "kubernetes")) is None:
        objects.prepare_create(svc_r, svc, "default")
        objects.strategy(svc_r).allocate(svc)
        _create_quiet(objects, svc_r, svc)
    ep_r = lookup("", "v1", "endpoints")
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "labels": {
        "endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise}],
                     "ports": [{"name": "https", "port": secure_port, "protocol": "TCP"}]}]}
    eps_r = lookup("discovery.k8s.io", "v1", "endpointslices")
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": [advertise], "conditions": {"ready": True}}],
           "ports": [{"name": "https", "port": secure_port, "protocol": "TCP"}]}
    for r, obj in ((ep_r, ep), (eps_r, eps)):
        k = objects.key(r, "default", "kubernetes")
        cur = store.get(k)
        if cur is None:
            objects.prepare_create(r, obj, "default")
            _create_quiet(objects, r, obj)
        elif cur.get("subsets", cur.get("endpoints")) != obj.get("subsets", obj.get("endpoints")):
            cur.update({f: val for f, val in obj.items() if f in ("subsets", "endpoints", "ports")})
            store.update(k, cur)


def _create_quiet(objects: Objects, r: Resource, obj: dict) -> None:
    try:
        objects.store.create(objects.key(r, obj["metadata"].get("namespace"), obj["metadata"]["name"]), obj)
    except Exists:
        pass
