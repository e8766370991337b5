"""OpenAPI v2 (JSON and protobuf) and v3 as kubectl reads them: `kubectl explain` of every served
kind and of custom resources with kubectl 1.27 (v2 protobuf) and 1.33 (v3), field types and
descriptions, the patch extensions, and strict validation naming the unknown field."""

from __future__ import annotations

import os
import time
from pathlib import Path
import ssl
import subprocess
import urllib.request

import pytest

from netlab.api.resources import RESOURCES
from netlab.control.apiserver import definitions, openapiv2pb
from tests.apikit import ControlPlane, etcd

KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.{}"
VERSIONS = ["1.27", "1.33"]


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cp(request):
    if request.param == "etcd":
        with etcd() as url, ControlPlane(f"nltoapi-{request.param}", store=url) as plane:
            yield plane
    else:
        with ControlPlane(f"nltoapi-{request.param}") as plane:
            yield plane


def kubectl(cp, version: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig), HOME=str(cp.home))
    return subprocess.run([KUBECTL.format(version), *args], input=input, capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.parametrize("version", VERSIONS)
def test_explain_containers_with_types_and_descriptions(cp, version):
    r = kubectl(cp, version, "explain", "deployment.spec.template.spec.containers")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "KIND:       Deployment" in out and "VERSION:    v1" in out
    assert "FIELD: containers <[]Container>" in out
    assert "List of containers belonging to the pod." in out
    assert "ports\t<[]ContainerPort>" in out and "image\t<string>" in out
    assert "name\t<string> -required-" in out
    r = kubectl(cp, version, "explain", "svc.spec.ports.port")
    assert r.returncode == 0 and "FIELD: port <integer>" in r.stdout, r.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_explain_every_served_kind(cp, version):
    failed = []
    for res in RESOURCES:
        if definitions.of(res.group, res.version, res.kind) is None or "get" not in res.verbs:
            continue
        r = kubectl(cp, version, "explain", res.plural, f"--api-version={res.group_version}")
        if r.returncode != 0 or f"KIND:       {res.kind}" not in r.stdout or "FIELDS:" not in r.stdout:
            failed.append((res.plural, r.stderr.strip()))
    assert failed == []


def test_v3_carries_patch_extensions_and_gvk(cp):
    status, root = cp.api("GET", "/openapi/v3")
    status, doc = cp.api("GET", root["paths"]["api/v1"]["serverRelativeURL"])
    schemas = doc["components"]["schemas"]
    ports = schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"]
    assert ports["x-kubernetes-patch-merge-key"] == "containerPort"
    assert ports["x-kubernetes-patch-strategy"] == "merge"
    assert ports["x-kubernetes-list-type"] == "map"
    assert ports["x-kubernetes-list-map-keys"] == ["containerPort", "protocol"]
    svc_ports = schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]
    assert svc_ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    assert schemas["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Pod", "version": "v1"}]
    spec = schemas["io.k8s.api.core.v1.Pod"]["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]


def test_v2_json_and_protobuf(cp):
    status, doc = cp.api("GET", "/openapi/v2")
    assert status == 200 and doc["swagger"] == "2.0"
    d = doc["definitions"]["io.k8s.api.apps.v1.Deployment"]
    assert d["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert d["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    req = urllib.request.Request(cp.url + "/openapi/v2", headers={
        "Authorization": f"Bearer {cp.token}", "Accept": openapiv2pb.MEDIA_TYPE})
    ctx = ssl.create_default_context(cafile=str(cp.cluster.state_dir / "pki" / "ca.crt"))
    with urllib.request.urlopen(req, context=ctx) as resp:
        assert resp.headers["Content-Type"].startswith("application/com.github.proto-openapi.spec.v2")
        body = resp.read()
    assert body.startswith(b"\n\x032.0") and b"io.k8s.api.apps.v1.Deployment" in body


@pytest.mark.parametrize("version", VERSIONS)
def test_strict_validation_names_the_unknown_field(cp, version):
    manifest = """apiVersion: apps/v1
kind: Deployment
metadata: {name: strict-web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        bogus: 1
"""
    r = kubectl(cp, version, "apply", "--validate=strict", "-f", "-", input=manifest)
    assert r.returncode != 0
    assert 'unknown field "spec.template.spec.containers[0].bogus"' in r.stderr
    assert kubectl(cp, version, "get", "deploy", "strict-web").returncode != 0  # nothing stored


@pytest.mark.parametrize("version", VERSIONS)
def test_explain_a_field_holding_a_kind_and_a_custom_resource(cp, version):
    r = kubectl(cp, version, "explain", "deployment.spec")
    assert r.returncode == 0 and "FIELD: spec <DeploymentSpec>" in r.stdout, r.stderr
    assert "Specification of the desired behavior of the Deployment." in r.stdout
    crd = Path(__file__).parent / "data" / "crontab" / "validation.yaml"
    cp.kubectl("apply", "-f", str(crd))
    try:
        cp.kubectl("wait", "--for", "condition=established", "crd/crontabs.stable.example.com", "--timeout=20s")
        for _ in range(20):  # kubectl caches nothing here, but the documents follow the CRD
            r = kubectl(cp, version, "explain", "crontab.spec")
            if r.returncode == 0:
                break
            time.sleep(0.5)
        assert "KIND:       CronTab" in r.stdout and "replicas\t<integer>" in r.stdout, r.stderr
    finally:
        cp.kubectl("delete", "crd", "crontabs.stable.example.com", "--ignore-not-found", timeout=60)
