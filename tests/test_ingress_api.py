"""Ingress, IngressClass and the load-balancer fields of Services through the API server (no
lab: the API server on loopback) with upstream's rules: Ingress validation, the default
IngressClass given on create, kubectl's columns; healthCheckNodePort allocated and dropped,
allocateLoadBalancerNodePorts false, loadBalancerClass fixed, the fields a type change drops."""

from __future__ import annotations

import time

import pytest

from tests.apikit import ControlPlane

ING = "/apis/networking.k8s.io/v1/namespaces/default/ingresses"
CLASSES = "/apis/networking.k8s.io/v1/ingressclasses"
SVCS = "/api/v1/namespaces/default/services"


@pytest.fixture(scope="module")
def cp():
    with ControlPlane("nltingapi") as plane:
        yield plane


def ingress(name: str, **spec) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name}, "spec": spec}


def backend(name: str = "web", **port) -> dict:
    return {"service": {"name": name, "port": port or {"number": 80}}}


def rule(*paths: dict, host: str | None = None) -> dict:
    return {**({"host": host} if host else {}), "http": {"paths": list(paths)}}


def causes(body: dict) -> list[tuple[str, str]]:
    return [(c["field"], c["message"]) for c in body["details"]["causes"]]


@pytest.mark.parametrize(("spec", "field", "message"), [
    ({}, "spec", "Invalid value: \"null\": either `defaultBackend` or `rules` must be specified"),
    ({"rules": [rule({"path": "/", "backend": backend()})]}, "spec.rules[0].http.paths[0].pathType",
     "Required value: pathType must be specified"),
    ({"rules": [rule({"path": "foo", "pathType": "Prefix", "backend": backend()})]},
     "spec.rules[0].http.paths[0].path", 'Invalid value: "foo": must be an absolute path'),
    ({"rules": [rule({"path": "/a//b", "pathType": "Exact", "backend": backend()})]},
     "spec.rules[0].http.paths[0].path", "Invalid value: \"/a//b\": must not contain '//'"),
    ({"rules": [rule({"path": "/", "pathType": "Regex", "backend": backend()})]},
     "spec.rules[0].http.paths[0].pathType", 'Unsupported value: "Regex": supported values: "Exact", '
     '"ImplementationSpecific", "Prefix"'),
    ({"rules": [rule({"path": "/", "pathType": "Prefix", "backend": {}})]},
     "spec.rules[0].http.paths[0].backend", 'Invalid value: "": resource or service backend is required'),
    ({"defaultBackend": {"service": {"name": "web", "port": {}}}}, "spec.defaultBackend",
     "Required value: port name or number is required"),
    ({"defaultBackend": {"service": {"name": "web", "port": {"number": 80, "name": "http"}},
                         "resource": {"kind": "StorageBucket", "name": "b"}}},
     "spec.defaultBackend", 'Invalid value: "": cannot set both resource and service backends'),
    ({"rules": [rule({"path": "/", "pathType": "Prefix", "backend": backend()}, host="*.*.foo.com")]},
     "spec.rules[0].host", 'Invalid value: "*.*.foo.com": a wildcard DNS-1123 subdomain must start with'),
    ({"rules": [rule({"path": "/", "pathType": "Prefix", "backend": backend()}, host="10.0.0.1")]},
     "spec.rules[0].host", 'Invalid value: "10.0.0.1": must be a DNS name, not an IP address'),
])
def test_ingress_validation_as_upstream(cp, spec, field, message):
    code, body = cp.api("POST", ING, ingress("bad", **spec))
    assert code == 422, body
    assert any(f == field and m.startswith(message) for f, m in causes(body)), causes(body)


def test_the_websites_examples_are_accepted(cp):
    fanout = ingress("simple-fanout-example", rules=[rule(
        {"path": "/foo", "pathType": "Prefix", "backend": backend("service1", number=4200)},
        {"path": "/bar", "pathType": "Prefix", "backend": backend("service2", number=8080)}, host="foo.bar.com")])
    resource = ingress("ingress-resource-backend", defaultBackend={"resource": {
        "apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "static-assets"}},
        rules=[rule({"path": "/icons", "pathType": "ImplementationSpecific", "backend": {"resource": {
            "apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "icon-assets"}}})])
    wildcard = ingress("ingress-wildcard-host", rules=[
        rule({"path": "/bar", "pathType": "Prefix", "backend": backend("service1")}, host="foo.bar.com"),
        rule({"path": "/foo", "pathType": "Prefix", "backend": backend("service2")}, host="*.foo.com")])
    for obj in (fanout, resource, wildcard):
        code, body = cp.api("POST", ING, obj)
        assert code == 201, body
    out = cp.kubectl("get", "ingress").stdout.splitlines()
    assert out[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["simple-fanout-example"][1:4] == ["<none>", "foo.bar.com", "80"]
    assert rows["ingress-resource-backend"][2] == "*"
    assert rows["ingress-wildcard-host"][2] == "foo.bar.com,*.foo.com"


def test_the_default_ingress_class_is_given_on_create(cp):
    def cls(name: str, default: bool) -> dict:
        return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {
            "name": name, "annotations": {"ingressclass.kubernetes.io/is-default-class": str(default).lower()}},
            "spec": {"controller": "k8s.io/ingress-nginx"}}
    for name, default in (("plain", False), ("older", True)):
        assert cp.api("POST", CLASSES, cls(name, default))[0] == 201
    time.sleep(1.1)  # creation timestamps have seconds
    assert cp.api("POST", CLASSES, cls("newer", True))[0] == 201
    try:
        one = rule({"path": "/", "pathType": "Prefix", "backend": backend()})
        code, body = cp.api("POST", ING, ingress("defaulted", rules=[one]))
        assert code == 201 and body["spec"]["ingressClassName"] == "newer", body  # the newest default
        code, body = cp.api("POST", ING, ingress("chosen", rules=[one], ingressClassName="plain"))
        assert body["spec"]["ingressClassName"] == "plain"
        annotated = ingress("annotated", rules=[one])
        annotated["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "nginx"}
        code, body = cp.api("POST", ING, annotated)
        assert code == 201 and "ingressClassName" not in body["spec"]
        clash = ingress("clash", rules=[one], ingressClassName="plain")
        clash["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "nginx"}
        code, body = cp.api("POST", ING, clash)
        assert code == 422 and causes(body) == [("annotations.kubernetes.io/ingress.class", 'Invalid value: "nginx": '
                                                 "must match `ingressClassName` when both are specified")]
        out = cp.kubectl("get", "ingressclass").stdout.splitlines()
        assert out[0].split() == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
        assert out[1].split()[:3] == ["newer", "k8s.io/ingress-nginx", "<none>"]
        code, body = cp.api("PATCH", f"{CLASSES}/plain", {"spec": {"controller": "example.com/other"}},
                            "application/merge-patch+json")
        assert code == 422 and "field is immutable" in body["message"]
        code, body = cp.api("POST", CLASSES, {**cls("nocontroller", False), "spec": {"controller": "nodomain"}})
        assert code == 422 and 'must be a domain-prefixed path (such as "acme.io/foo")' in body["message"]
    finally:
        for name in ("plain", "older", "newer"):
            cp.api("DELETE", f"{CLASSES}/{name}")


def svc(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"port": 80}], "selector": {"app": name}, **spec}}


def test_load_balancer_fields(cp):
    code, body = cp.api("POST", SVCS, svc("local", type="LoadBalancer", externalTrafficPolicy="Local"))
    assert code == 201 and 30000 <= body["spec"]["healthCheckNodePort"] <= 32767, body
    code, body = cp.api("PATCH", f"{SVCS}/local", {"spec": {"externalTrafficPolicy": "Cluster"}},
                        "application/merge-patch+json")
    assert code == 200 and "healthCheckNodePort" not in body["spec"], body
    code, body = cp.api("POST", SVCS, svc("direct", type="LoadBalancer", allocateLoadBalancerNodePorts=False,
                                          loadBalancerClass="example.com/lb"))
    assert code == 201 and "nodePort" not in body["spec"]["ports"][0], body
    code, body = cp.api("PATCH", f"{SVCS}/direct", {"spec": {"loadBalancerClass": "example.com/other"}},
                        "application/merge-patch+json")
    assert code == 422 and "spec.loadBalancerClass: Invalid value: \"example.com/other\": may not change once set" \
        in body["message"]
    # to ClusterIP: the load-balancer fields go with the type, as upstream drops them
    code, body = cp.api("PATCH", f"{SVCS}/direct", {"spec": {"type": "ClusterIP"}}, "application/merge-patch+json")
    assert code == 200, body
    assert not {"allocateLoadBalancerNodePorts", "loadBalancerClass", "externalTrafficPolicy"} & set(body["spec"])
    code, body = cp.api("POST", SVCS, svc("ranges", loadBalancerSourceRanges=["10.0.0.0/8"]))
    assert code == 422 and "spec.loadBalancerSourceRanges: Forbidden: may only be used when `type` is " \
        "'LoadBalancer'" in body["message"]
    code, body = cp.api("POST", SVCS, svc("badrange", type="LoadBalancer", loadBalancerSourceRanges=["nope"]))
    assert code == 422 and "must be a list of IP ranges" in body["message"]
    code, body = cp.api("POST", SVCS, svc("hc", type="NodePort", healthCheckNodePort=31111))
    assert code == 422 and "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'" \
        in body["message"]
    code, body = cp.api("POST", SVCS, svc("local2", type="LoadBalancer", externalTrafficPolicy="Local"))
    taken = body["spec"]["healthCheckNodePort"]
    code, body = cp.api("POST", SVCS, svc("clash", type="LoadBalancer", externalTrafficPolicy="Local",
                                          healthCheckNodePort=taken))
    assert code == 422 and f"spec.healthCheckNodePort: Invalid value: {taken}: provided port is already allocated" \
        in body["message"]
