"""What real clients send that the API server must refuse as upstream does: numbers out of their
field's range, malformed selectors and query parameters, bad names, oversized annotations and
objects; and Status bodies byte for byte as upstream writes them. Against SQLite and etcd."""

from __future__ import annotations

import json

import pytest

from tests.apikit import ControlPlane, etcd

DEPLOY = ('{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"big"},"spec":{"replicas":REPLICAS,'
          '"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},'
          '"spec":{"containers":[{"name":"c","image":"i"}]}}}}')


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cp(request):
    if request.param == "etcd":
        with etcd() as url, ControlPlane("nltval-etcd", store=url) as plane:
            yield plane
    else:
        with ControlPlane("nltval-sqlite") as plane:
            yield plane


@pytest.mark.parametrize("number", ["2147483648", "1e30", "-2147483649", "2.5"])
def test_numbers_out_of_an_int32_field(cp, number):
    status, raw = cp.raw("POST", "/apis/apps/v1/namespaces/default/deployments", DEPLOY.replace("REPLICAS", number).encode())
    assert status == 400
    assert json.loads(raw)["message"] == (f'Deployment in version "v1" cannot be handled as a Deployment: json: cannot '
                                          f"unmarshal number {number} into Go struct field DeploymentSpec.spec.replicas "
                                          "of type int32")


def test_int64_fields_take_int64_numbers(cp):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "long-grace"},
           "spec": {"terminationGracePeriodSeconds": 2 ** 40, "containers": [{"name": "c", "image": "i"}]}}
    status, body = cp.api("POST", "/api/v1/namespaces/default/pods", pod)
    assert status == 201 and body["spec"]["terminationGracePeriodSeconds"] == 2 ** 40
    pod["metadata"]["name"], pod["spec"]["terminationGracePeriodSeconds"] = "longer", 2 ** 63
    status, body = cp.api("POST", "/api/v1/namespaces/default/pods", pod)
    assert status == 400 and body["message"].endswith(f"cannot unmarshal number {2 ** 63} into Go struct field "
                                                      "PodSpec.spec.terminationGracePeriodSeconds of type int64")
    cp.api("DELETE", "/api/v1/namespaces/default/pods/long-grace")


@pytest.mark.parametrize("query, message", [
    ("labelSelector=a+in+(", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
    ("labelSelector=a+b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("labelSelector=a,", "found '', expected: identifier after ','"),
    ("fieldSelector=metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
    ("fieldSelector=spec.foo%3Dbar", '"spec.foo" is not a known field selector: only "metadata.name", '
                                     '"metadata.namespace"'),
    ("limit=abc", 'strconv.ParseInt: parsing "abc": invalid syntax'),
    ("watch=1&timeoutSeconds=abc", 'strconv.ParseInt: parsing "abc": invalid syntax'),
])
def test_bad_list_and_watch_queries_are_400(cp, query, message):
    status, body = cp.api("GET", f"/api/v1/namespaces/default/configmaps?{query}")
    assert (status, body["reason"], body["message"]) == (400, "BadRequest", message)


def test_field_selectors_by_kind(cp):
    status, body = cp.api("GET", "/api/v1/pods?fieldSelector=spec.foo%3Dbar")
    assert (status, body["message"]) == (400, "field label not supported: spec.foo")
    assert cp.api("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3D,status.phase!%3DFailed")[0] == 200
    assert cp.api("GET", "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dx")[0] == 200
    out = cp.kubectl("get", "configmaps", "-A", "-l", "a notin (x),b>2", "--no-headers").stdout
    assert out == ""


def test_external_name_is_a_dns_name(cp):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
           "spec": {"type": "ExternalName", "externalName": "bad name!"}}
    status, body = cp.api("POST", "/api/v1/namespaces/default/services", svc)
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.externalName"
    assert body["message"].startswith('Service "ext" is invalid: spec.externalName: Invalid value: "bad name!": a '
                                      "lowercase RFC 1123 subdomain")
    svc["spec"]["externalName"] = "db.example.org."
    assert cp.api("POST", "/api/v1/namespaces/default/services", svc)[0] == 201
    cp.api("DELETE", "/api/v1/namespaces/default/services/ext")


def test_annotations_over_256_kib(cp):
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "noted", "annotations": {"a": "x" * (256 * 1024)}}}
    status, body = cp.api("POST", "/api/v1/namespaces/default/configmaps", cm)
    assert status == 422 and body["message"] == ('ConfigMap "noted" is invalid: metadata.annotations: Too long: must '
                                                 "have at most 262144 bytes")


def test_an_object_over_the_store_limit_is_refused_and_not_stored(cp):
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "huge"},
             "spec": {"holderIdentity": "x" * (1600 * 1024)}}
    status, body = cp.api("POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", lease)
    assert status == 413 and body["reason"] == "RequestEntityTooLarge" and "request is too large" in body["message"]
    assert cp.api("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/huge")[0] == 404
    lease["spec"]["holderIdentity"] = "me"
    assert cp.api("POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", lease)[0] == 201
    status, body = cp.api("PATCH", "/apis/coordination.k8s.io/v1/namespaces/default/leases/huge",
                          {"spec": {"holderIdentity": "y" * (1600 * 1024)}}, "application/merge-patch+json")
    assert status == 413
    got = cp.api("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/huge")[1]
    assert got["spec"]["holderIdentity"] == "me"


def test_status_bodies_are_upstreams_bytes(cp):
    status, raw = cp.raw("GET", "/api/v1/namespaces/default/configmaps/nope")
    assert status == 404 and raw == (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                                     b'"message":"configmaps \\"nope\\" not found","reason":"NotFound",'
                                     b'"details":{"name":"nope","kind":"configmaps"},"code":404}\n')
    status, raw = cp.raw("GET", "/apis/apps/v1/namespaces/default/deployments/nope")
    assert raw.endswith(b'"details":{"name":"nope","group":"apps","kind":"deployments"},"code":404}\n')
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "p"},
           "spec": {"ports": [{"port": 70000, "targetPort": 80}]}}
    status, raw = cp.raw("POST", "/api/v1/namespaces/default/services", json.dumps(svc).encode())
    assert status == 422 and raw == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Service \\"p\\" is invalid: '
        b'spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive","reason":"Invalid",'
        b'"details":{"name":"p","kind":"Service","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: '
        b'70000: must be between 1 and 65535, inclusive","field":"spec.ports[0].port"}]},"code":422}\n')


SNAPSHOT = """apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: example-snapshot}
spec: {source: {persistentVolumeClaimName: example-pvc}}
"""
KUBECTLS = ["/usr/lib/google-cloud-sdk/bin/kubectl.1.27", "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"]


@pytest.mark.parametrize("kubectl", KUBECTLS, ids=lambda k: k.rsplit("/", 1)[-1])
def test_a_kind_not_served_is_no_match_for_kubectl_with_validation(cp, kubectl, tmp_path):
    """As a real cluster answers a missing API, with validation on (server-side, strict): kubectl
    finds no v3 document for the group-version, reads /openapi/v2 (protobuf), finds no model for
    the kind, and then no mapping. (Needs the /openapi/v2 that main serves.)"""
    import os
    import subprocess
    if not os.path.exists(kubectl):
        pytest.skip(f"{kubectl} is not installed")
    f = tmp_path / "snap.yaml"
    f.write_text(SNAPSHOT)
    for validate in ("--validate=strict", "--validate=true"):
        p = subprocess.run([kubectl, "--kubeconfig", str(cp.kubeconfig), "apply", validate, "-f", str(f)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1
        assert 'no matches for kind "VolumeSnapshot" in version "snapshot.storage.k8s.io/v1"' in p.stderr, p.stderr
    # a served kind is still validated by the server: an unknown field is refused
    bad = tmp_path / "cm.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: strict-cm}\nbogus: 1\n")
    p = subprocess.run([kubectl, "--kubeconfig", str(cp.kubeconfig), "apply", "--validate=strict", "-f", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and 'unknown field "bogus"' in p.stderr, p.stderr


def test_an_immutable_selector_is_printed_as_upstream_prints_it(cp):
    d = json.loads(DEPLOY.replace("REPLICAS", "1"))
    d["metadata"]["name"] = "sel-fixed"
    status, body = cp.api("POST", "/apis/apps/v1/namespaces/default/deployments", d)
    assert status == 201, body
    body["spec"]["selector"] = {"matchLabels": {"a": "b", "z": "y"}}
    body["spec"]["template"]["metadata"]["labels"] = {"a": "b", "z": "y"}
    status, out = cp.api("PUT", "/apis/apps/v1/namespaces/default/deployments/sel-fixed", body)
    assert status == 422
    assert out["message"] == ('Deployment.apps "sel-fixed" is invalid: spec.selector: Invalid value: v1.LabelSelector{'
                              'MatchLabels:map[string]string{"a":"b", "z":"y"}, MatchExpressions:'
                              '[]v1.LabelSelectorRequirement(nil)}: field is immutable')
    cp.api("DELETE", "/apis/apps/v1/namespaces/default/deployments/sel-fixed")
