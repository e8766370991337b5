"""HorizontalPodAutoscalers served as autoscaling/v2 and v1 over one storage: `kubectl autoscale`,
`kubectl get hpa` columns as upstream prints them, each version converted (v1's
targetCPUUtilizationPercentage is v2's CPU metric), v2's defaults, and upstream's validation."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.apikit import ControlPlane, etcd

KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.{}"
HPAS = "/apis/autoscaling/{}/namespaces/default/horizontalpodautoscalers"


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cp(request):
    if request.param == "etcd":
        with etcd() as url, ControlPlane(f"nlthpa-{request.param}", store=url) as plane:
            yield plane
    else:
        with ControlPlane(f"nlthpa-{request.param}") as plane:
            yield plane


def kubectl(cp, version: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig), HOME=str(cp.home))
    return subprocess.run([KUBECTL.format(version), *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("version", ["1.27", "1.31", "1.33"])  # 1.33 sends protobuf
def test_kubectl_autoscale_and_get_hpa(cp, version):
    cp.kubectl("create", "deployment", "web", "--image=nginx")
    try:
        r = kubectl(cp, version, "autoscale", "deployment", "web", "--min=1", "--max=3", "--cpu-percent=50")
        assert r.returncode == 0 and r.stdout.strip() == "horizontalpodautoscaler.autoscaling/web autoscaled", r.stderr
        lines = kubectl(cp, version, "get", "hpa").stdout.splitlines()
        assert lines[0].split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
        assert lines[1].split()[:7] == ["web", "Deployment/web", "cpu:", "<unknown>/50%", "1", "3", "0"]
        status, v2 = cp.api("GET", HPAS.format("v2") + "/web")
        assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 50}}}]
        status, v1 = cp.api("GET", HPAS.format("v1") + "/web")
        assert v1["apiVersion"] == "autoscaling/v1" and v1["spec"]["targetCPUUtilizationPercentage"] == 50
        assert "metrics" not in v1["spec"]
    finally:
        cp.kubectl("delete", "hpa", "web", "--ignore-not-found")
        cp.kubectl("delete", "deployment", "web", "--ignore-not-found")


def test_v2_defaults_and_v1_conversion(cp):
    body = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "conv"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                     "maxReplicas": 5, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
                     "metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {
                         "type": "AverageValue", "averageValue": "100Mi"}}}]}}
    status, out = cp.api("POST", HPAS.format("v2"), body)
    try:
        assert status == 201, out
        assert out["spec"]["minReplicas"] == 1
        b = out["spec"]["behavior"]
        assert b["scaleDown"] == {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                                  "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
        assert b["scaleUp"]["policies"] == [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                            {"type": "Percent", "value": 100, "periodSeconds": 15}]
        status, v1 = cp.api("GET", HPAS.format("v1") + "/conv")
        assert "targetCPUUtilizationPercentage" not in v1["spec"]
        assert "autoscaling.alpha.kubernetes.io/metrics" in v1["metadata"]["annotations"]
        # a v1 update keeps what only v2 can say (carried in the annotation)
        v1["spec"]["maxReplicas"] = 6
        v1["spec"]["targetCPUUtilizationPercentage"] = 70
        status, put = cp.api("PUT", HPAS.format("v1") + "/conv", v1)
        assert status == 200, put
        status, v2 = cp.api("GET", HPAS.format("v2") + "/conv")
        assert v2["spec"]["maxReplicas"] == 6
        assert [m["resource"]["name"] for m in v2["spec"]["metrics"]] == ["cpu", "memory"]
        assert "annotations" not in v2["metadata"]
        row = cp.kubectl("get", "hpa", "conv").stdout.splitlines()[1]
        assert "cpu: <unknown>/70%, memory: <unknown>/100Mi" in row
    finally:
        cp.api("DELETE", HPAS.format("v2") + "/conv")


def test_validation_names_the_field(cp):
    body = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "bad"},
            "spec": {"scaleTargetRef": {"kind": "Deployment"}, "minReplicas": 3, "maxReplicas": 2}}
    status, out = cp.api("POST", HPAS.format("v2"), body)
    assert status == 422 and out["reason"] == "Invalid"
    assert [(c["field"], c["message"]) for c in out["details"]["causes"]] == [
        ("spec.scaleTargetRef.name", "Required value"),
        ("spec.maxReplicas", "Invalid value: 2: must be greater than or equal to `minReplicas`")]
    status, _ = cp.api("GET", HPAS.format("v2") + "/bad")
    assert status == 404
    status, out = cp.api("POST", HPAS.format("v1"), {**body, "apiVersion": "autoscaling/v1", "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "x"}, "minReplicas": 0, "maxReplicas": 2}})
    assert status == 422 and out["details"]["causes"][0]["field"] == "spec.minReplicas"
