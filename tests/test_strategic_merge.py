"""Strategic merge patch driven by each kind's OpenAPI definition: merge keys and strategies per
field (a container's ports by containerPort, a Service's by port), scalar lists merged as sets
where the schema says so, lists the schema says nothing about replaced; and through the API."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from netlab.control.apiserver import patch
from tests.apikit import ControlPlane, etcd

DEPLOY = "io.k8s.api.apps.v1.Deployment"
SERVICE = "io.k8s.api.core.v1.Service"


def containers(*cs):
    return {"spec": {"template": {"spec": {"containers": list(cs)}}}}


def test_container_ports_merge_by_container_port():
    cur = containers({"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}]})
    out = patch.strategic_merge(cur, containers({"name": "web", "ports": [{"containerPort": 443}]}), DEPLOY)
    c = out["spec"]["template"]["spec"]["containers"]
    assert c == [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"},
                                                            {"containerPort": 443}]}]
    out = patch.strategic_merge(cur, containers({"name": "web", "ports": [{"containerPort": 80, "$patch": "delete"}]}),
                                DEPLOY)
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"] == []


def test_service_ports_merge_by_port_and_a_name_clash_is_no_merge_key():
    cur = {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}], "selector": {"app": "web"}}}
    out = patch.strategic_merge(cur, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, SERVICE)
    assert out["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 9090}]
    # a Service port carries no containerPort: the Service's merge key is port
    with pytest.raises(patch.PatchError, match="does not contain declared merge key: port"):
        patch.strategic_merge(cur, {"spec": {"ports": [{"containerPort": 80}]}}, SERVICE)


def test_lists_without_a_strategy_are_replaced_and_finalizers_merge():
    cur = {"metadata": {"finalizers": ["a"]}, "spec": {"externalIPs": ["1.1.1.1"]}}
    out = patch.strategic_merge(cur, {"metadata": {"finalizers": ["b"]}, "spec": {"externalIPs": ["2.2.2.2"]}},
                                SERVICE)
    assert out == {"metadata": {"finalizers": ["a", "b"]}, "spec": {"externalIPs": ["2.2.2.2"]}}
    # containers' args have no patch strategy: replaced, not merged
    cur = containers({"name": "web", "args": ["-a"]})
    out = patch.strategic_merge(cur, containers({"name": "web", "args": ["-b"]}), DEPLOY)
    assert out["spec"]["template"]["spec"]["containers"][0]["args"] == ["-b"]


def test_env_merges_by_name_and_volumes_by_name():
    cur = containers({"name": "web", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]})
    out = patch.strategic_merge(cur, containers({"name": "web", "env": [{"name": "B", "value": "3"}]}), DEPLOY)
    assert out["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"},
                                                                      {"name": "B", "value": "3"}]


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cp(request):
    if request.param == "etcd":
        with etcd() as url, ControlPlane(f"nltsmp-{request.param}", store=url) as plane:
            yield plane
    else:
        with ControlPlane(f"nltsmp-{request.param}") as plane:
            yield plane


def test_kubectl_patch_merges_ports_of_each_kind(cp):
    cp.kubectl("create", "deployment", "smp-web", "--image=nginx", "--port=80")
    cp.kubectl("create", "service", "clusterip", "smp-web", "--tcp=80:8080")
    try:
        cp.kubectl("patch", "deployment", "smp-web", "-p", json.dumps(
            containers({"name": "nginx", "ports": [{"containerPort": 443, "name": "https"}]})))
        d = json.loads(cp.kubectl("get", "deployment", "smp-web", "-o", "json").stdout)
        ports = d["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert [p["containerPort"] for p in ports] == [80, 443]
        cp.kubectl("patch", "service", "smp-web", "-p", json.dumps(
            {"spec": {"ports": [{"name": "metrics", "port": 9100, "targetPort": 9100}]}}))
        s = json.loads(cp.kubectl("get", "service", "smp-web", "-o", "json").stdout)
        assert [(p["name"], p["port"]) for p in s["spec"]["ports"]] == [("80-8080", 80), ("metrics", 9100)]
        r = cp.kubectl("patch", "service", "smp-web", "-p", json.dumps({"spec": {"ports": [{"containerPort": 1}]}}),
                       check=False)
        assert r.returncode != 0 and "does not contain declared merge key: port" in r.stderr
    finally:
        cp.kubectl("delete", "deployment,service", "smp-web", "--ignore-not-found")


APPLIED = """apiVersion: apps/v1
kind: Deployment
metadata: {name: smp-apply}
spec:
  replicas: 1
  selector: {matchLabels: {app: smp-apply}}
  template:
    metadata: {labels: {app: smp-apply}}
    spec:
      containers:
      - name: nginx
        image: nginx
        ports: PORTS
---
apiVersion: v1
kind: Service
metadata: {name: smp-apply}
spec:
  selector: {app: smp-apply}
  ports: SERVICE_PORTS
"""


@pytest.mark.parametrize("version", ["1.27", "1.33"])  # 1.27 reads the v2 protobuf, 1.33 the v3
def test_client_side_apply_adds_and_removes_ports(cp, version):
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig), HOME=str(cp.home))
    steps = [("[{containerPort: 80}]", "[{port: 80, name: a}]", [80], [80]),
             ("[{containerPort: 80}, {containerPort: 443}]", "[{port: 80, name: a}, {port: 443, name: b}]",
              [80, 443], [80, 443]),
             ("[{containerPort: 443}]", "[{port: 443, name: b}]", [443], [443])]
    try:
        for ports, service_ports, want, want_service in steps:
            r = subprocess.run([f"/usr/lib/google-cloud-sdk/bin/kubectl.{version}", "apply", "-f", "-"],
                               input=APPLIED.replace("SERVICE_PORTS", service_ports).replace("PORTS", ports),
                               capture_output=True, text=True, env=env, timeout=60)
            assert r.returncode == 0, r.stderr
            d = json.loads(cp.kubectl("get", "deploy", "smp-apply", "-o", "json").stdout)
            s = json.loads(cp.kubectl("get", "svc", "smp-apply", "-o", "json").stdout)
            assert [p["containerPort"] for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]] == want
            assert [p["port"] for p in s["spec"]["ports"]] == want_service
    finally:
        cp.kubectl("delete", "deployment,service", "smp-apply", "--ignore-not-found")
