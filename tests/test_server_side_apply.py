"""Server-side apply through kubectl (1.27 and 1.33) and the API, on both stores: create by
apply, managedFields, conflicts as 409 naming fields and managers, --force-conflicts, managers
from fieldManager and the User-Agent, and the migration from client-side apply."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.apikit import ControlPlane, etcd

KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.{}"
VERSIONS = ["1.27", "1.33"]
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME, labels: {app: web}}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx
        ports: [{containerPort: 80}]
"""
PATH = "/apis/apps/v1/namespaces/default/deployments/"


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cp(request):
    if request.param == "etcd":
        with etcd() as url, ControlPlane(f"nltssa-{request.param}", store=url) as plane:
            yield plane
    else:
        with ControlPlane(f"nltssa-{request.param}") as plane:
            yield plane


def kubectl(cp, version, *args, input=None):
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig), HOME=str(cp.home))
    return subprocess.run([KUBECTL.format(version), *args], input=input, capture_output=True, text=True, env=env,
                          timeout=60)


def manifest(name, replicas=2):
    return DEPLOYMENT.replace("NAME", name).replace("REPLICAS", str(replicas))


def managers(cp, name):
    obj = json.loads(cp.kubectl("get", "deploy", name, "-o", "json", "--show-managed-fields").stdout)
    return {(e["manager"], e["operation"], e.get("subresource", "")): e for e in obj["metadata"]["managedFields"]}, obj


@pytest.mark.parametrize("version", VERSIONS)
def test_apply_conflict_and_force(cp, version):
    name = f"ssa-{version.replace('.', '')}"
    try:
        r = kubectl(cp, version, "apply", "--server-side", "-f", "-", input=manifest(name))
        assert r.returncode == 0 and r.stdout.strip() == f"deployment.apps/{name} serverside-applied", r.stderr
        by, obj = managers(cp, name)
        apply = by[("kubectl", "Apply", "")]
        assert apply["fieldsType"] == "FieldsV1" and apply["apiVersion"] == "apps/v1" and apply["time"]
        assert apply["fieldsV1"]["f:spec"]["f:replicas"] == {}
        containers = apply["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
        assert containers['k:{"name":"nginx"}']["f:ports"] == {
            'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}
        # another manager changes replicas: applying the old value conflicts
        kubectl(cp, version, "patch", "deploy", name, "-p", '{"spec":{"replicas":3}}')
        r = kubectl(cp, version, "apply", "--server-side", "-f", "-", input=manifest(name))
        assert r.returncode != 0
        assert r.stderr.startswith('error: Apply failed with 1 conflict: conflict with "kubectl-patch" using apps/v1: '
                                   ".spec.replicas\n"), r.stderr
        assert json.loads(cp.kubectl("get", "deploy", name, "-o", "json").stdout)["spec"]["replicas"] == 3
        r = kubectl(cp, version, "apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest(name))
        assert r.returncode == 0, r.stderr
        by, obj = managers(cp, name)
        assert obj["spec"]["replicas"] == 2
        assert ("kubectl-patch", "Update", "") not in by  # it owned only replicas, now the applier's
        # a field dropped from the configuration goes; the conflict is gone with the shared value
        r = kubectl(cp, version, "apply", "--server-side", "-f", "-",
                    input=manifest(name).replace("  replicas: 2\n", "  replicas: 2\n  minReadySeconds: 7\n"))
        assert r.returncode == 0 and json.loads(cp.kubectl("get", "deploy", name, "-o", "json").stdout)[
            "spec"]["minReadySeconds"] == 7
        kubectl(cp, version, "apply", "--server-side", "-f", "-", input=manifest(name))
        assert "minReadySeconds" not in json.loads(cp.kubectl("get", "deploy", name, "-o", "json").stdout)["spec"]
    finally:
        cp.kubectl("delete", "deploy", name, "--ignore-not-found")


@pytest.mark.parametrize("version", VERSIONS)
def test_client_side_apply_migrates_to_server_side(cp, version):
    name = f"csa-{version.replace('.', '')}"
    try:
        assert kubectl(cp, version, "apply", "-f", "-", input=manifest(name)).returncode == 0
        by, _ = managers(cp, name)
        assert ("kubectl-client-side-apply", "Update", "") in by
        r = kubectl(cp, version, "apply", "--server-side", "-f", "-", input=manifest(name, 4))
        assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr
        by, obj = managers(cp, name)
        assert obj["spec"]["replicas"] == 4 and ("kubectl", "Apply", "") in by
        last = json.loads(obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
        assert last["spec"]["replicas"] == 4  # client-side apply still sees what was applied
    finally:
        cp.kubectl("delete", "deploy", name, "--ignore-not-found")


def test_api_conflict_body_and_required_field_manager(cp):
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa-cm"},
                       "data": {"a": "1"}}).encode()
    path = "/api/v1/namespaces/default/configmaps/ssa-cm"
    try:
        status, raw = cp.raw("PATCH", path, body, "application/apply-patch+yaml")
        out = json.loads(raw)
        assert status == 422 and out["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                                                    "Required value: is required for apply patch")
        status, raw = cp.raw("PATCH", path + "?fieldManager=one", b"apiVersion: v1\nkind: ConfigMap\n"
                             b"metadata: {name: ssa-cm}\ndata: {a: '1'}\n", "application/apply-patch+yaml")
        assert status == 201, raw  # created by the apply
        status, raw = cp.raw("PATCH", path + "?fieldManager=two", body.replace(b'"1"', b'"2"'),
                             "application/apply-patch+yaml")
        out = json.loads(raw)
        assert status == 409 and out["reason"] == "Conflict"
        assert out["message"] == 'Apply failed with 1 conflict: conflict with "one": .data.a'
        assert out["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "one"',
                                             "field": ".data.a"}]
        status, raw = cp.raw("PATCH", path + "?fieldManager=two&force=true", body.replace(b'"1"', b'"2"'),
                             "application/apply-patch+yaml")
        assert status == 200 and json.loads(raw)["data"] == {"a": "2"}
        status, raw = cp.raw("PATCH", path + "?force=true", b'{"data":{"b":"3"}}', "application/merge-patch+json")
        assert status == 422 and b"force: Forbidden: may not be specified for non-apply patch" in raw
        # an update by the Python client is recorded under its User-Agent
        from kubernetes import client, config
        api = client.CoreV1Api(config.new_client_from_config(str(cp.kubeconfig)))
        api.patch_namespaced_config_map("ssa-cm", "default", {"data": {"c": "4"}})
        cm = api.read_namespaced_config_map("ssa-cm", "default")
        ops = {(m.manager, m.operation) for m in cm.metadata.managed_fields}
        assert ops == {("two", "Apply"), ("OpenAPI-Generator", "Update")}
    finally:
        cp.kubectl("delete", "configmap", "ssa-cm", "--ignore-not-found")


@pytest.mark.parametrize("version", VERSIONS)
def test_server_dry_run_writes_nothing(cp, version):
    name = f"dry-{version.replace('.', '')}"
    try:
        r = kubectl(cp, version, "apply", "--server-side", "--dry-run=server", "-f", "-", input=manifest(name))
        assert r.returncode == 0 and "serverside-applied (server dry run)" in r.stdout, r.stderr
        assert cp.kubectl("get", "deploy", name, check=False).returncode != 0
        kubectl(cp, version, "apply", "--server-side", "-f", "-", input=manifest(name))
        r = kubectl(cp, version, "apply", "--server-side", "--dry-run=server", "-f", "-", input=manifest(name, 5))
        assert r.returncode == 0, r.stderr
        r = kubectl(cp, version, "scale", "deploy", name, "--replicas=4", "--dry-run=server")
        assert r.returncode == 0, r.stderr
        assert json.loads(cp.kubectl("get", "deploy", name, "-o", "json").stdout)["spec"]["replicas"] == 2
    finally:
        cp.kubectl("delete", "deploy", name, "--ignore-not-found")


def test_custom_resources_apply_with_their_schema(cp):
    crd = "crontabs.stable.example.com"
    cronjob = ('apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: my-cron}\n'
               'spec:\n  cronSpec: "* * * * */5"\n  image: IMAGE\n')
    cp.kubectl("apply", "-f", str(Path(__file__).parent / "data" / "crontab" / "validation.yaml"))
    try:
        cp.kubectl("wait", "--for", "condition=established", f"crd/{crd}", "--timeout=20s")
        assert kubectl(cp, "1.33", "apply", "--server-side", "-f", "-", input=cronjob.replace("IMAGE", "a")
                       ).returncode == 0
        kubectl(cp, "1.33", "patch", "crontab", "my-cron", "--type=merge", "-p", '{"spec":{"image":"b"}}')
        r = kubectl(cp, "1.33", "apply", "--server-side", "-f", "-", input=cronjob.replace("IMAGE", "a"))
        assert r.stderr.startswith('error: Apply failed with 1 conflict: conflict with "kubectl-patch" using '
                                   "stable.example.com/v1: .spec.image\n"), r.stderr
        obj = json.loads(cp.kubectl("get", "crontab", "my-cron", "-o", "json", "--show-managed-fields").stdout)
        assert {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"]["managedFields"]} == {
            ("kubectl", "Apply"): {"f:spec": {"f:cronSpec": {}}},
            ("kubectl-patch", "Update"): {"f:spec": {"f:image": {}}}}
    finally:
        cp.kubectl("delete", "crd", crd, "--ignore-not-found", timeout=60)
