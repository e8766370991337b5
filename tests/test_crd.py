"""CustomResourceDefinitions and custom resources, driven by the real kubectl and the official
Python client, on SQLite and on a real etcd: the CronTab CRDs of the Kubernetes documentation
(tests/data/crontab/) and the Gateway API v1.4.1 standard CRDs (tests/data/gateway-api/), applied
unchanged."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.apikit import ControlPlane, etcd

DATA = Path(__file__).parent / "data"
CRONTAB = DATA / "crontab"
GATEWAY_API = DATA / "gateway-api"
CRD_NAME = "crontabs.stable.example.com"
MY_CRONTAB = """apiVersion: "stable.example.com/v1"
kind: CronTab
metadata:
  name: my-new-cron-object
spec:
  cronSpec: "* * * * */5"
  image: my-awesome-cron-image
"""


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cp(request):
    if request.param == "etcd":
        with etcd() as url, ControlPlane(f"nltcrd-{request.param}", store=url) as plane:
            yield plane
    else:
        with ControlPlane(f"nltcrd-{request.param}") as plane:
            yield plane


def install(cp, name: str) -> None:
    """Apply one of the documentation's CRDs (over the one before) and wait for it to be served."""
    cp.kubectl("apply", "-f", str(CRONTAB / name))
    cp.kubectl("wait", "--for", "condition=established", f"crd/{CRD_NAME}", "--timeout=20s")


def uninstall(cp, name: str = CRD_NAME) -> None:
    cp.kubectl("delete", "crd", name, "--ignore-not-found", timeout=60)


def test_crd_is_established_and_discovered(cp):
    out = cp.kubectl("apply", "-f", str(CRONTAB / "resourcedefinition.yaml")).stdout
    assert out.strip() == f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME} created"
    cp.kubectl("wait", "--for", "condition=established", f"crd/{CRD_NAME}", "--timeout=20s")
    try:
        got = cp.kubectl("get", "crd").stdout.splitlines()
        assert got[0].split() == ["NAME", "CREATED", "AT"] and got[1].split()[0] == CRD_NAME
        crd = json.loads(cp.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
        conds = {c["type"]: (c["status"], c["reason"], c["message"]) for c in crd["status"]["conditions"]}
        assert conds["NamesAccepted"] == ("True", "NoConflicts", "no conflicts found")
        assert conds["Established"] == ("True", "InitialNamesAccepted", "the initial names have been accepted")
        assert crd["status"]["acceptedNames"] == {"plural": "crontabs", "singular": "crontab", "shortNames": ["ct"],
                                                  "kind": "CronTab", "listKind": "CronTabList"}
        assert crd["status"]["storedVersions"] == ["v1"] and crd["spec"]["conversion"] == {"strategy": "None"}
        res = cp.kubectl("api-resources", "--api-group=stable.example.com", "--no-headers").stdout.split()
        assert res == ["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"]
        status, group = cp.api("GET", "/apis/stable.example.com")
        assert status == 200 and group["preferredVersion"] == {"groupVersion": "stable.example.com/v1", "version": "v1"}
        status, lst = cp.api("GET", "/apis/stable.example.com/v1")
        assert lst["resources"] == [{"name": "crontabs", "singularName": "crontab", "namespaced": True,
                                     "kind": "CronTab", "verbs": ["delete", "deletecollection", "get", "list",
                                                                  "patch", "create", "update", "watch"],
                                     "shortNames": ["ct"]}]
        assert "crontab.stable.example.com/my-new-cron-object created" in cp.kubectl(
            "apply", "-f", "-", input=MY_CRONTAB).stdout
        assert "unchanged" in cp.kubectl("apply", "-f", "-", input=MY_CRONTAB).stdout
        lines = cp.kubectl("get", "crontab").stdout.splitlines()
        assert lines[0].split() == ["NAME", "AGE"] and lines[1].split()[0] == "my-new-cron-object"
        got = yaml.safe_load(cp.kubectl("get", "ct", "-o", "yaml").stdout)["items"][0]
        assert got["spec"] == {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image"}
        assert got["metadata"]["generation"] == 1 and got["kind"] == "CronTab"
        # a second CRD may not take names the first holds
        clash = yaml.safe_load((CRONTAB / "resourcedefinition.yaml").read_text())
        clash["metadata"]["name"] = "crontabz.stable.example.com"
        clash["spec"]["names"].update(plural="crontabz", singular="crontabz", shortNames=["ct"], kind="CronTabZ",
                                      listKind="CronTabZList")
        cp.kubectl("create", "-f", "-", input=json.dumps(clash))
        other = json.loads(cp.kubectl("get", "crd", "crontabz.stable.example.com", "-o", "json").stdout)
        conds = {c["type"]: (c["status"], c["reason"], c["message"]) for c in other["status"]["conditions"]}
        assert conds["NamesAccepted"] == ("False", "ShortNamesConflict", '"ct" is already in use')
        assert conds["Established"] == ("False", "NotAccepted", "not all names are accepted")
        uninstall(cp, "crontabz.stable.example.com")
    finally:
        uninstall(cp)


def test_openapi_and_explain(cp):
    install(cp, "validation.yaml")
    try:
        status, root = cp.api("GET", "/openapi/v3")
        url = root["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"]
        status, doc = cp.api("GET", url)
        s = doc["components"]["schemas"]["com.example.stable.v1.CronTab"]
        assert s["x-kubernetes-group-version-kind"] == [{"group": "stable.example.com", "version": "v1",
                                                         "kind": "CronTab"}]
        assert s["properties"]["spec"]["properties"]["replicas"] == {"type": "integer", "minimum": 1, "maximum": 10}
        patch = doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"]
        assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
        assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
        out = cp.kubectl("explain", "crontab.spec").stdout
        assert "KIND:       CronTab" in out and "cronSpec\t<string>" in out and "replicas\t<integer>" in out
        assert "ObjectMeta" in cp.kubectl("explain", "crontab.metadata").stdout
    finally:
        uninstall(cp)
    status, root = cp.api("GET", "/openapi/v3")
    assert "apis/stable.example.com/v1" not in root["paths"]


def test_schema_is_enforced_naming_the_field(cp):
    install(cp, "validation.yaml")
    try:
        bad = MY_CRONTAB.replace('"* * * * */5"', '"* * * *"') + "  replicas: 15\n"
        err = cp.kubectl("apply", "-f", "-", input=bad, check=False).stderr
        assert err.splitlines() == [
            'The CronTab "my-new-cron-object" is invalid: ',
            '* spec.cronSpec: Invalid value: "* * * *": spec.cronSpec in body should match '
            "'^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
            "* spec.replicas: Invalid value: 15: spec.replicas in body should be less than or equal to 10"]
        err = cp.kubectl("apply", "-f", "-", input=MY_CRONTAB + '  replicas: "string"\n', check=False).stderr
        assert ('spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"'
                in err)
        status, body = cp.api("POST", "/apis/stable.example.com/v1/namespaces/default/crontabs", {
            "apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "x"},
            "spec": {"replicas": 0}})
        assert status == 422 and body["reason"] == "Invalid" and body["details"]["causes"] == [
            {"reason": "FieldValueInvalid", "field": "spec.replicas",
             "message": "Invalid value: 0: spec.replicas in body should be greater than or equal to 1"}]
        assert body["details"]["group"] == "stable.example.com" and body["details"]["kind"] == "CronTab"
        out = cp.kubectl("apply", "-f", "-", input=MY_CRONTAB + "  replicas: 5\n").stdout
        assert "created" in out
        # an update is validated too
        err = cp.kubectl("patch", "ct", "my-new-cron-object", "--type=merge", "-p", '{"spec":{"replicas":11}}',
                         check=False).stderr
        assert "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10" in err
    finally:
        uninstall(cp)


def test_defaulting_and_pruning(cp):
    install(cp, "defaulting.yaml")
    try:
        only_image = MY_CRONTAB.replace('  cronSpec: "* * * * */5"\n', "")
        got = json.loads(cp.kubectl("create", "-f", "-", "-o", "json", input=only_image).stdout)
        assert got["spec"] == {"cronSpec": "5 0 * * *", "image": "my-awesome-cron-image", "replicas": 1}
        # unknown fields: kubectl's default (fieldValidation=Strict) refuses them, naming the field
        extra = MY_CRONTAB.replace("my-new-cron-object", "pruned") + "  someRandomField: 42\n"
        err = cp.kubectl("create", "-f", "-", input=extra, check=False).stderr
        assert ('CronTab in version "v1" cannot be handled as a CronTab: strict decoding error: unknown field '
                '"spec.someRandomField"') in err
        # without it, they are pruned: silently (Ignore), or with a warning (Warn, the server's default)
        got = json.loads(cp.kubectl("create", "--validate=false", "-f", "-", "-o", "json", input=extra).stdout)
        assert got["spec"] == {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image", "replicas": 1}
        warned = cp.kubectl("create", "--validate=warn", "-f", "-", input=extra.replace("pruned", "warned"))
        assert warned.stderr == 'Warning: unknown field "spec.someRandomField"\n'
        status, got = cp.api("POST", "/apis/stable.example.com/v1/namespaces/default/crontabs", {
            "apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "raw", "bogus": 1},
            "spec": {"image": "x", "other": 1}})
        assert status == 201 and "other" not in got["spec"] and "bogus" not in got["metadata"]
        # null is pruned and defaulted, as upstream's non-nullable fields are
        status, got = cp.api("POST", "/apis/stable.example.com/v1/namespaces/default/crontabs", {
            "apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "nulls"},
            "spec": {"replicas": None, "image": None}})
        assert status == 201 and got["spec"] == {"cronSpec": "5 0 * * *", "replicas": 1}
    finally:
        uninstall(cp)


def test_printer_columns(cp):
    install(cp, "printer-columns.yaml")
    try:
        cp.kubectl("apply", "-f", "-", input=MY_CRONTAB + "  replicas: 1\n")
        lines = cp.kubectl("get", "crontab", "my-new-cron-object").stdout.splitlines()
        assert lines[0].split() == ["NAME", "SPEC", "REPLICAS", "AGE"]
        assert lines[1].split()[:7] == ["my-new-cron-object", "*", "*", "*", "*", "*/5", "1"]
        req = urllib.request.Request(cp.url + "/apis/stable.example.com/v1/namespaces/default/crontabs", headers={
            "Authorization": f"Bearer {cp.token}", "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
        ctx = ssl.create_default_context(cafile=str(cp.cluster.state_dir / "pki" / "ca.crt"))
        table = json.loads(urllib.request.urlopen(req, context=ctx, timeout=10).read())
        cols = [(c["name"], c["type"], c["description"]) for c in table["columnDefinitions"]]
        assert cols[1:] == [("Spec", "string", "The cron spec defining the interval a CronJob is run"),
                            ("Replicas", "integer", "The number of jobs launched by the CronJob"),
                            ("Age", "date", "Custom resource definition column (in JSONPath format): "
                                            ".metadata.creationTimestamp")]
        assert table["rows"][0]["cells"][:3] == ["my-new-cron-object", "* * * * */5", 1]
    finally:
        uninstall(cp)


def test_python_client_and_watch(cp):
    from kubernetes import client, config, watch

    install(cp, "resourcedefinition.yaml")
    try:
        api = client.CustomObjectsApi(config.new_client_from_config(str(cp.kubeconfig)))
        args = ("stable.example.com", "v1", "default", "crontabs")
        events: list[tuple[str, str, dict]] = []
        ready = threading.Event()

        def watcher():
            w = watch.Watch()
            ready.set()
            for ev in w.stream(api.list_namespaced_custom_object, *args, timeout_seconds=15):
                events.append((ev["type"], ev["object"]["metadata"]["name"], ev["object"].get("spec") or {}))
                if ev["type"] == "DELETED":
                    w.stop()

        t = threading.Thread(target=watcher, daemon=True)
        t.start()
        ready.wait()
        time.sleep(0.5)
        body = yaml.safe_load(MY_CRONTAB)
        api.create_namespaced_custom_object(*args, body)
        api.create_namespaced_custom_object(*args, dict(body, metadata={"name": "second", "labels": {"tier": "x"}}))
        got = api.get_namespaced_custom_object(*args, "my-new-cron-object")
        assert got["spec"]["image"] == "my-awesome-cron-image"
        api.patch_namespaced_custom_object(*args, "my-new-cron-object", {"spec": {"replicas": 2}})
        lst = api.list_namespaced_custom_object(*args, label_selector="tier=x")
        assert [o["metadata"]["name"] for o in lst["items"]] == ["second"] and lst["kind"] == "CronTabList"
        lst = api.list_namespaced_custom_object(*args, field_selector="metadata.name=my-new-cron-object")
        assert [o["metadata"]["name"] for o in lst["items"]] == ["my-new-cron-object"]
        assert len(api.list_cluster_custom_object("stable.example.com", "v1", "crontabs")["items"]) == 2
        api.delete_namespaced_custom_object(*args, "my-new-cron-object")
        t.join(15)
        assert [(k, n) for k, n, _ in events] == [("ADDED", "my-new-cron-object"), ("ADDED", "second"),
                                                  ("MODIFIED", "my-new-cron-object"), ("DELETED", "my-new-cron-object")]
        assert events[2][2]["replicas"] == 2
        with pytest.raises(client.ApiException) as e:
            api.list_namespaced_custom_object(*args, field_selector="spec.image=x")
        assert e.value.status == 400 and json.loads(e.value.body)["message"] == (
            '"spec.image" is not a known field selector: only "metadata.name", "metadata.namespace"')
        api.delete_collection_namespaced_custom_object(*args)
        assert api.list_namespaced_custom_object(*args)["items"] == []
    finally:
        uninstall(cp)


def test_netlab_client_addresses_custom_resources(cp):
    import asyncio

    from netlab.api.client import Client, Informer, apply

    install(cp, "resourcedefinition.yaml")

    async def main():
        async with Client.from_kubeconfig(cp.kubeconfig) as c:
            assert (await c.list("stable.example.com/v1/crontabs", namespace="default"))["items"] == []
            inf = Informer(c, "stable.example.com/v1/crontabs", namespace="default")
            seen = []
            inf.add_handler(on_add=lambda o: seen.append(o["metadata"]["name"]))
            task = asyncio.create_task(inf.run())
            await inf.wait_synced(10)
            assert await apply(c, yaml.safe_load(MY_CRONTAB)) == \
                "crontab.stable.example.com/my-new-cron-object created"
            await c.discover()
            got = await c.get("ct", "my-new-cron-object", namespace="default")
            assert got["spec"]["image"] == "my-awesome-cron-image"
            await c.patch("crontabs.stable.example.com", "my-new-cron-object", {"spec": {"replicas": 2}}, "default")
            assert (await c.get("crontab", "my-new-cron-object", "default"))["spec"]["replicas"] == 2
            for _ in range(50):
                if seen:
                    break
                await asyncio.sleep(0.1)
            task.cancel()
            assert seen == ["my-new-cron-object"]
            await c.delete("crontabs.stable.example.com", "my-new-cron-object", "default")
    try:
        asyncio.run(main())
    finally:
        uninstall(cp)


def test_patch_types(cp):
    install(cp, "resourcedefinition.yaml")
    try:
        cp.kubectl("apply", "-f", "-", input=MY_CRONTAB)
        err = cp.kubectl("patch", "ct", "my-new-cron-object", "-p", '{"spec":{"replicas":3}}', check=False).stderr
        assert ("the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml") in err
        cp.kubectl("patch", "ct", "my-new-cron-object", "--type=json", "-p",
                   '[{"op":"add","path":"/spec/replicas","value":4}]')
        cp.kubectl("patch", "ct", "my-new-cron-object", "--type=merge", "-p", '{"spec":{"image":"other"}}')
        cp.kubectl("label", "ct", "my-new-cron-object", "team=a")
        got = json.loads(cp.kubectl("get", "ct", "my-new-cron-object", "-o", "json").stdout)
        assert got["spec"] == {"cronSpec": "* * * * */5", "image": "other", "replicas": 4}
        assert got["metadata"]["labels"] == {"team": "a"} and got["metadata"]["generation"] == 3
        assert cp.kubectl("get", "ct", "-l", "team=a", "-o", "name").stdout.strip() == \
            "crontab.stable.example.com/my-new-cron-object"
    finally:
        uninstall(cp)


def test_status_and_scale_subresources(cp):
    from kubernetes import client, config

    install(cp, "subresources.yaml")
    try:
        api = client.CustomObjectsApi(config.new_client_from_config(str(cp.kubeconfig)))
        args = ("stable.example.com", "v1", "default", "crontabs", "my-new-cron-object")
        body = yaml.safe_load(MY_CRONTAB + "  replicas: 3\n")
        body["status"] = {"replicas": 9}
        got = api.create_namespaced_custom_object(*args[:4], body)
        assert "status" not in got and got["metadata"]["generation"] == 1  # only /status sets it
        got = api.patch_namespaced_custom_object_status(*args, {"status": {"replicas": 3,
                                                                           "labelSelector": "app=cron"}})
        assert got["status"] == {"replicas": 3, "labelSelector": "app=cron"} and got["metadata"]["generation"] == 1
        # a main update keeps the status; /status changes only the status
        got = api.patch_namespaced_custom_object(*args, {"spec": {"image": "b"}, "status": {"replicas": 0}})
        assert got["status"]["replicas"] == 3 and got["metadata"]["generation"] == 2
        got = api.patch_namespaced_custom_object_status(*args, {"spec": {"image": "c"}, "status": {"replicas": 4}})
        assert got["spec"]["image"] == "b" and got["status"]["replicas"] == 4 and got["metadata"]["generation"] == 2
        with pytest.raises(client.ApiException) as e:
            api.patch_namespaced_custom_object_status(*args, {"status": {"replicas": "many"}})
        assert e.value.status == 422 and json.loads(e.value.body)["message"] == (
            'CronTab.stable.example.com "my-new-cron-object" is invalid: [status.replicas: Invalid value: "string": '
            'replicas in body must be of type integer: "string", .status.replicas: Invalid value: 0: .status.replicas '
            "accessor error: many is of the type string, expected int64]")  # the status's own schema, and the scale's
        out = cp.kubectl("scale", "--replicas=5", "crontabs/my-new-cron-object").stdout
        assert "crontab.stable.example.com/my-new-cron-object scaled" in out
        assert cp.kubectl("get", "crontabs", "my-new-cron-object", "-o", "jsonpath={.spec.replicas}").stdout == "5"
        scale = api.get_namespaced_custom_object_scale(*args)
        assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 5}
        assert scale["status"] == {"replicas": 4, "selector": "app=cron"}
        status, lst = cp.api("GET", "/apis/stable.example.com/v1")
        assert [(r["name"], r.get("group"), r["kind"]) for r in lst["resources"]] == [
            ("crontabs", None, "CronTab"), ("crontabs/status", None, "CronTab"),
            ("crontabs/scale", "autoscaling", "Scale")]
        status, body = cp.api("PATCH", "/apis/stable.example.com/v1/namespaces/default/crontabs/my-new-cron-object/"
                              "scale", {"spec": {"replicas": -1}}, "application/merge-patch+json")
        assert status == 422 and "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in body["message"]
    finally:
        uninstall(cp)


def test_categories(cp):
    install(cp, "categories.yaml")
    try:
        cp.kubectl("apply", "-f", "-", input=MY_CRONTAB)
        # a fresh discovery cache: kubectl keeps the one of the tests before for hours
        out = cp.kubectl("get", "all", f"--cache-dir={cp.home / 'categories-cache'}").stdout
        assert "crontab.stable.example.com/my-new-cron-object" in out
    finally:
        uninstall(cp)


def test_crd_validation_names_the_field(cp):
    crd = yaml.safe_load((CRONTAB / "resourcedefinition.yaml").read_text())

    def create(mutate) -> str:
        c = json.loads(json.dumps(crd))
        mutate(c)
        return cp.kubectl("create", "-f", "-", input=json.dumps(c), check=False).stderr

    err = create(lambda c: c["metadata"].update(name="crontab.stable.example.com"))
    assert 'metadata.name: Invalid value: "crontab.stable.example.com": must be spec.names.plural+"."+spec.group' \
        in err
    err = create(lambda c: c["spec"].update(scope="Everywhere"))
    assert 'spec.scope: Unsupported value: "Everywhere": supported values: "Cluster", "Namespaced"' in err
    err = create(lambda c: c["spec"]["versions"][0].update(storage=False))
    assert "spec.versions: Invalid value:" in err and "must have exactly one version marked as storage version" in err
    err = create(lambda c: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].pop("type"))
    assert ("spec.validation.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified "
            "object fields") in err
    err = create(lambda c: c["spec"]["versions"][0].pop("schema"))
    assert "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required" in err
    err = create(lambda c: c["spec"]["names"].update(kind="Cron_Tab"))
    assert 'spec.names.kind: Invalid value: "Cron_Tab": may have mixed case, but should otherwise match' in err
    err = create(lambda c: (c["spec"].update(group="stable.k8s.io"),
                            c["metadata"].update(name="crontabs.stable.k8s.io")))
    assert ('metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval '
            'annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111') in err
    assert "crontabs" not in cp.kubectl("get", "crd", "-o", "name").stdout


VERSIONED = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Cluster
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, default: 1}
              port: {x-kubernetes-int-or-string: true}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties: {name: {type: string}, port: {type: integer}}
              template:
                type: object
                x-kubernetes-embedded-resource: true
                x-kubernetes-preserve-unknown-fields: true
"""


def test_cluster_scoped_multiple_versions(cp):
    cp.kubectl("apply", "-f", "-", input=VERSIONED)
    cp.kubectl("wait", "--for", "condition=established", "crd/widgets.example.com", "--timeout=20s")
    try:
        status, group = cp.api("GET", "/apis/example.com")
        assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
        assert group["preferredVersion"]["version"] == "v1"
        status, got = cp.api("POST", "/apis/example.com/v1beta1/widgets", {
            "apiVersion": "example.com/v1beta1", "kind": "Widget", "metadata": {"name": "w1"},
            "spec": {"anything": True, "port": "http"}})
        assert status == 201 and got["apiVersion"] == "example.com/v1beta1" and got["spec"]["anything"] is True
        status, got = cp.api("GET", "/apis/example.com/v1/widgets/w1")
        assert got["apiVersion"] == "example.com/v1" and got["spec"] == {"port": "http", "size": 1}
        status, _ = cp.api("GET", "/apis/example.com/v1/namespaces/default/widgets/w1")
        assert status == 404
        status, body = cp.api("POST", "/apis/example.com/v1/widgets", {
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w2"},
            "spec": {"port": True, "ports": [{"name": "a"}, {"name": "a", "port": 2}], "template": {"kind": "Pod"}}})
        assert status == 422
        assert [c["field"] + ": " + c["message"] for c in body["details"]["causes"]] == [
            'spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"',
            "spec.template.apiVersion: Required value: must not be empty",
            'spec.ports[1]: Duplicate value: map[string]interface {}{"name":"a"}']
        out = cp.kubectl("get", "widgets").stdout.splitlines()
        assert out[0].split() == ["NAME", "AGE"] and out[1].split()[0] == "w1"
        cp.kubectl("delete", "widgets", "--all")
        assert cp.kubectl("get", "widgets", "-o", "name").stdout == ""
    finally:
        uninstall(cp, "widgets.example.com")


def test_deleting_the_crd_deletes_its_resources(cp):
    install(cp, "resourcedefinition.yaml")
    cp.kubectl("apply", "-f", "-", input=MY_CRONTAB)
    cp.kubectl("create", "namespace", "crons")
    try:
        cp.kubectl("apply", "-n", "crons", "-f", "-", input=MY_CRONTAB)
        out = cp.kubectl("delete", "-f", str(CRONTAB / "resourcedefinition.yaml"), timeout=60).stdout
        assert f'customresourcedefinition.apiextensions.k8s.io "{CRD_NAME}" deleted' in out
        status, _ = cp.api("GET", "/apis/stable.example.com/v1/namespaces/default/crontabs")
        assert status == 404
        status, _ = cp.api("GET", "/apis/stable.example.com")
        assert status == 404
        install(cp, "resourcedefinition.yaml")
        assert cp.kubectl("get", "crontabs", "-A", "-o", "name").stdout == ""  # it starts out empty
    finally:
        uninstall(cp)
        cp.kubectl("delete", "namespace", "crons", "--wait=false")


def test_gateway_api_standard_install(cp):
    out = cp.kubectl("apply", "-f", str(GATEWAY_API), timeout=120).stdout
    for kind in ("gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants", "backendtlspolicies"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{kind}.gateway.networking.k8s.io created" in out
    try:
        for crd in GATEWAY_API.glob("*.yaml"):
            name = yaml.safe_load(crd.read_text())["metadata"]["name"]
            cp.kubectl("wait", "--for", "condition=established", f"crd/{name}", "--timeout=20s")
        crd = json.loads(cp.kubectl("get", "crd", "gateways.gateway.networking.k8s.io", "-o", "json").stdout)
        conds = {c["type"]: (c["status"], c["reason"]) for c in crd["status"]["conditions"]}
        assert conds["KubernetesAPIApprovalPolicyConformant"] == ("True", "ApprovedAnnotation")
        # the files carry an empty status, which kubectl's patch sends and the server ignores (as upstream's
        # status subresource has it): "configured", and nothing written
        again = cp.kubectl("apply", "-f", str(GATEWAY_API / "gateway.networking.k8s.io_gateways.yaml"), timeout=60)
        assert "gateways.gateway.networking.k8s.io configured" in again.stdout
        after = json.loads(cp.kubectl("get", "crd", "gateways.gateway.networking.k8s.io", "-o", "json").stdout)
        assert after["metadata"]["resourceVersion"] == crd["metadata"]["resourceVersion"]
        assert after["status"] == crd["status"]
        manifests = """apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: example
spec:
  controllerName: example.com/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: example-gateway
spec:
  gatewayClassName: example
  listeners:
  - name: http
    protocol: HTTP
    port: 80
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: example-route
spec:
  parentRefs:
  - name: example-gateway
  hostnames:
  - "www.example.com"
  rules:
  - backendRefs:
    - name: example-svc
      port: 80
"""
        out = cp.kubectl("apply", "-f", "-", input=manifests).stdout
        assert "gatewayclass.gateway.networking.k8s.io/example created" in out
        assert "gateway.gateway.networking.k8s.io/example-gateway created" in out
        assert "httproute.gateway.networking.k8s.io/example-route created" in out
        lines = cp.kubectl("get", "gc").stdout.splitlines()
        assert lines[0].split() == ["NAME", "CONTROLLER", "ACCEPTED", "AGE"]
        assert lines[1].split()[:3] == ["example", "example.com/gateway-controller", "Unknown"]
        lines = cp.kubectl("get", "gateway").stdout.splitlines()
        assert lines[0].split() == ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"]
        assert lines[1].split()[:3] == ["example-gateway", "example", "Unknown"]
        lines = cp.kubectl("get", "httproute").stdout.splitlines()
        assert lines[0].split() == ["NAME", "HOSTNAMES", "AGE"]
        assert lines[1].split()[:2] == ["example-route", '["www.example.com"]']
        route = json.loads(cp.kubectl("get", "httproute", "example-route", "-o", "json").stdout)
        assert route["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]  # defaulted
        assert route["spec"]["parentRefs"][0] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                                  "name": "example-gateway"}
        names = cp.kubectl("get", "gateway-api", "-o", "name").stdout.split()
        assert "gateway.gateway.networking.k8s.io/example-gateway" in names
        bad = manifests.split("---")[1].replace("port: 80", "port: 70000").replace("example-gateway", "bad")
        err = cp.kubectl("apply", "-f", "-", input=bad, check=False).stderr
        assert "spec.listeners[0].port: Invalid value: 70000: spec.listeners[0].port in body should be less than or " \
               "equal to 65535" in err
        # the schemas' CEL rules (x-kubernetes-validations) are evaluated: the rule's message at its node
        dup = manifests.split("---")[1].replace("example-gateway", "dup") + "  - {name: http, protocol: HTTP, port: 8080}\n"
        err = cp.kubectl("apply", "-f", "-", input=dup, check=False).stderr
        assert 'The Gateway "dup" is invalid' in err  # (and the list-map key's Duplicate value)
        assert '* spec.listeners: Invalid value: "array": Listener name must be unique within the Gateway' in err
        tls = manifests.split("---")[1].replace("example-gateway", "tls").replace("protocol: HTTP", "protocol: HTTPS") \
            + "    tls: {mode: Passthrough, certificateRefs: [{name: x}]}\n"
        err = cp.kubectl("apply", "-f", "-", input=tls, check=False).stderr
        assert 'spec.listeners: Invalid value: "array": tls mode must be Terminate for protocol HTTPS' in err
        assert cp.kubectl("get", "gateway", "dup", "tls", "--ignore-not-found", "-o", "name").stdout == ""
    finally:
        cp.kubectl("delete", "-f", str(GATEWAY_API), "--ignore-not-found", timeout=120)
    assert "gateway.networking.k8s.io" not in cp.kubectl("api-resources").stdout


def test_deleting_a_namespace_deletes_its_custom_resources():
    """The namespace controller finds the custom resources by discovery, as upstream's does."""
    with ControlPlane("nltcrd-ns", components=("controllers",)) as plane:
        install(plane, "resourcedefinition.yaml")
        plane.kubectl("create", "namespace", "crons")
        plane.kubectl("apply", "-n", "crons", "-f", "-", input=MY_CRONTAB)
        plane.kubectl("apply", "-f", "-", input=MY_CRONTAB)
        plane.kubectl("delete", "namespace", "crons", timeout=60)
        assert plane.kubectl("get", "crontabs", "-A", "-o", "name").stdout.split() == [
            "crontab.stable.example.com/my-new-cron-object"]
        assert plane.kubectl("get", "crontabs", "-n", "default", "-o", "name").stdout.strip() == \
            "crontab.stable.example.com/my-new-cron-object"
