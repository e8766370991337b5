"""EndpointSlices as upstream's controller makes them, against the real API server and controller
manager: one slice per set of ports the pods resolve (a pod with only one of two named target
ports is in a slice with only that port), the placeholder slice of a Service without endpoints
(no endpoints, no ports), and the mirroring of Endpoints written by hand for a Service without a
selector. A stand-in kubelet reports pods running and ready, as in test_controllers.py."""

from __future__ import annotations

import json

import pytest

from tests.apikit import ControlPlane
from tests.test_controllers import StandInKubelet, add_nodes, objects, wait


@pytest.fixture(scope="module")
def cp():
    with ControlPlane("nlteps", components=("controllers", "scheduler")) as plane:
        add_nodes(plane)
        yield plane


PORTS_APP = """
apiVersion: v1
kind: Pod
metadata: {name: both, namespace: NS, labels: {app: two}}
spec:
  containers:
  - name: c
    image: registry.k8s.io/e2e-test-images/agnhost:2.39
    ports: [{name: http, containerPort: 8080}, {name: metrics, containerPort: 9090}]
---
apiVersion: v1
kind: Pod
metadata: {name: one, namespace: NS, labels: {app: two}}
spec:
  containers:
  - name: c
    image: registry.k8s.io/e2e-test-images/agnhost:2.39
    ports: [{name: http, containerPort: 8081}]
---
apiVersion: v1
kind: Service
metadata: {name: two, namespace: NS}
spec:
  selector: {app: two}
  ports: [{name: http, port: 80, targetPort: http}, {name: metrics, port: 9090, targetPort: metrics}]
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: NS}
spec:
  selector: {app: nobody}
  ports: [{name: http, port: 80}]
"""


def test_slices_per_resolved_port_set_and_a_placeholder_without_ports(cp):
    ns = "nlt-ports"
    cp.kubectl("create", "namespace", ns)
    try:
        with StandInKubelet(cp):
            cp.kubectl("apply", "-f", "-", input=PORTS_APP.replace("NS", ns))

            def by_pod():
                out = {}
                for s in objects(cp, "endpointslices", ns, "kubernetes.io/service-name=two"):
                    for e in s.get("endpoints") or []:
                        out[e["targetRef"]["name"]] = sorted((p["name"], p["port"]) for p in s["ports"] or [])
                return out if len(out) == 2 else None
            got = wait(by_pod, what="both pods in slices")
            # the pod without a metrics port is in a slice of its own with only the http port
            assert got == {"both": [("http", 8080), ("metrics", 9090)], "one": [("http", 8081)]}
            assert len(objects(cp, "endpointslices", ns, "kubernetes.io/service-name=two")) == 2
            ep = json.loads(cp.kubectl("get", "endpoints", "two", "-n", ns, "-o", "json").stdout)
            assert sorted(sorted(p["port"] for p in s["ports"]) for s in ep["subsets"]) == [[8080, 9090], [8081]]
            placeholder = wait(lambda: objects(cp, "endpointslices", ns, "kubernetes.io/service-name=empty"),
                               what="placeholder")
            assert len(placeholder) == 1
            assert placeholder[0]["ports"] is None and placeholder[0]["endpoints"] is None
            row = cp.kubectl("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=empty").stdout
            assert row.splitlines()[1].split()[1:4] == ["IPv4", "<unset>", "<unset>"]
    finally:
        cp.kubectl("delete", "namespace", ns, "--wait=false")


MIRRORED = """
apiVersion: v1
kind: Service
metadata: {name: external, namespace: NS}
spec:
  ports: [{name: db, port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata:
  name: external
  namespace: NS
  labels: {team: data}
  annotations: {note: by-hand}
subsets:
- addresses: [{ip: 192.0.2.10}, {ip: 192.0.2.11, hostname: db1}]
  notReadyAddresses: [{ip: 192.0.2.12}]
  ports: [{name: db, port: 5432, protocol: TCP}]
"""


def test_endpoints_by_hand_are_mirrored_into_slices(cp):
    ns = "nlt-mirror"
    cp.kubectl("create", "namespace", ns)
    try:
        cp.kubectl("apply", "-f", "-", input=MIRRORED.replace("NS", ns))
        sel = "kubernetes.io/service-name=external"
        s = wait(lambda: objects(cp, "endpointslices", ns, sel), what="mirrored slice")
        assert len(s) == 1
        s = s[0]
        labels = s["metadata"]["labels"]
        assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslicemirroring-controller.k8s.io"
        assert labels["team"] == "data" and s["metadata"]["annotations"] == {"note": "by-hand"}
        assert "kubectl.kubernetes.io/last-applied-configuration" not in s["metadata"]["annotations"]
        ref = s["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("Endpoints", "external", True)
        assert s["addressType"] == "IPv4" and s["ports"] == [{"name": "db", "port": 5432, "protocol": "TCP"}]
        assert [(e["addresses"], e["conditions"], e.get("hostname")) for e in s["endpoints"]] == [
            (["192.0.2.10"], {"ready": True}, None), (["192.0.2.11"], {"ready": True}, "db1"),
            (["192.0.2.12"], {"ready": False}, None)]
        # an update follows; skip-mirror takes the slices away
        cp.kubectl("patch", "endpoints", "external", "-n", ns, "--type=json", "-p",
                   '[{"op": "remove", "path": "/subsets/0/notReadyAddresses"}]')
        wait(lambda: len(objects(cp, "endpointslices", ns, sel)[0]["endpoints"]) == 2, what="update mirrored")
        cp.kubectl("label", "endpoints", "external", "-n", ns, "endpointslice.kubernetes.io/skip-mirror=true")
        wait(lambda: not objects(cp, "endpointslices", ns, sel), what="mirror removed")
        # the kubernetes Service's Endpoints are not mirrored (skip-mirror, as upstream labels them)
        mirrored = [x for x in objects(cp, "endpointslices", "default")
                    if x["metadata"]["labels"].get("endpointslice.kubernetes.io/managed-by")
                    == "endpointslicemirroring-controller.k8s.io"]
        assert mirrored == []
    finally:
        cp.kubectl("delete", "namespace", ns, "--wait=false")
