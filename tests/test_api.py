"""The API server driven by the real kubectl and the official Python client, on SQLite and on a
real etcd."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
import yaml

from tests.apikit import ControlPlane, etcd

NGINX = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app: nginx
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
"""

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "labels": {"app": "web"}},
       "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/e2e-test-images/agnhost:2.39",
                                "args": ["netexec"]}]}}


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cp(request):
    if request.param == "etcd":
        with etcd() as url, ControlPlane(f"nltapi-{request.param}", store=url) as plane:
            yield plane
    else:
        with ControlPlane(f"nltapi-{request.param}") as plane:
            yield plane


def test_discovery_and_version(cp):
    out = cp.kubectl("version", "-o", "json").stdout
    assert json.loads(out)["serverVersion"]["gitVersion"] == "v1.31.0+netlab"
    res = cp.kubectl("api-resources", "--no-headers").stdout
    for line in ("deployments", "deploy", "apps/v1", "endpointslices", "discovery.k8s.io/v1", "svc"):
        assert line in res


def test_apply_twice_get_describe_delete(cp):
    out = cp.kubectl("apply", "-f", "-", input=NGINX).stdout
    assert "deployment.apps/nginx-deployment created" in out and "service/my-service created" in out
    out = cp.kubectl("apply", "-f", "-", input=NGINX).stdout
    assert "deployment.apps/nginx-deployment unchanged" in out and "service/my-service unchanged" in out
    wide = cp.kubectl("get", "deploy,svc", "-o", "wide").stdout
    assert "CONTAINERS   IMAGES         SELECTOR" in wide and "nginx:1.14.2" in wide
    svc = json.loads(cp.kubectl("get", "svc", "my-service", "-o", "json").stdout)
    ip = svc["spec"]["clusterIP"]
    assert ip.startswith("10.") and svc["spec"]["sessionAffinity"] == "None" and svc["spec"]["ports"][0]["protocol"] == "TCP"
    line = next(ln for ln in wide.splitlines() if ln.startswith("service/my-service"))
    assert line.split()[1:5] == ["ClusterIP", ip, "<none>", "80/TCP"]
    assert cp.kubectl("get", "svc", "my-service", "-o", "jsonpath={.spec.ports[0].targetPort}").stdout == "9376"
    dep = yaml.safe_load(cp.kubectl("get", "deploy", "nginx-deployment", "-o", "yaml").stdout)
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%",
                                                                                  "maxUnavailable": "25%"}}
    assert dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    desc = cp.kubectl("describe", "svc", "my-service").stdout
    assert "Selector:" in desc and "app=nginx" in desc and f"IP:                       {ip}" in desc
    cp.kubectl("scale", "deploy", "nginx-deployment", "--replicas=5")
    assert cp.kubectl("get", "deploy", "nginx-deployment", "-o", "jsonpath={.spec.replicas}").stdout == "5"
    cp.kubectl("label", "svc", "my-service", "tier=web")
    cp.kubectl("patch", "svc", "my-service", "-p", '{"metadata":{"labels":{"a":"b"}}}')
    cp.kubectl("patch", "svc", "my-service", "--type", "merge", "-p", '{"metadata":{"labels":{"c":"d"}}}')
    cp.kubectl("patch", "svc", "my-service", "--type", "json", "-p", '[{"op":"remove","path":"/metadata/labels/a"}]')
    labels = json.loads(cp.kubectl("get", "svc", "my-service", "-o", "jsonpath={.metadata.labels}").stdout)
    assert labels == {"tier": "web", "c": "d"}
    out = cp.kubectl("delete", "-f", "-", input=NGINX, timeout=60).stdout
    assert 'deployment.apps "nginx-deployment" deleted' in out
    assert cp.kubectl("get", "svc", "my-service", check=False).returncode == 1


def test_bad_manifests_name_the_field(cp):
    bad_type = NGINX.replace("replicas: 3", "replicas: three").split("---")[0]
    err = cp.kubectl("apply", "-f", "-", input=bad_type, check=False).stderr
    assert "spec.replicas" in err and "cannot be handled as a Deployment" in err
    unknown = NGINX.replace("containerPort: 80", "containerPortt: 80").split("---")[0]
    err = cp.kubectl("apply", "-f", "-", input=unknown, check=False).stderr
    assert 'unknown field "spec.template.spec.containers[0].ports[0].containerPortt"' in err
    mismatch = NGINX.replace("      labels:\n        app: nginx\n    spec:", "      labels:\n        app: other\n    spec:")
    err = cp.kubectl("apply", "-f", "-", input=mismatch.split("---")[0], check=False).stderr
    assert "spec.template.metadata.labels" in err and "`selector` does not match template `labels`" in err
    err = cp.kubectl("create", "namespace", "Bad_Name", check=False).stderr
    assert 'metadata.name: Invalid value: "Bad_Name"' in err
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "p"},
           "spec": {"ports": [{"port": 70000}], "selector": {"a": "b"}}}
    err = cp.kubectl("create", "-f", "-", input=json.dumps(svc), check=False).stderr
    assert "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive" in err


def test_service_allocations(cp):
    def svc(name, **spec):
        return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                           "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}})
    cp.kubectl("create", "-f", "-", input=svc("fixed", clusterIP="10.96.100.100", type="NodePort",
                                              ports=[{"port": 80, "nodePort": 30080}]))
    got = json.loads(cp.kubectl("get", "svc", "fixed", "-o", "json").stdout)["spec"]
    assert got["clusterIP"] == "10.96.100.100" and got["ports"][0]["nodePort"] == 30080
    assert got["externalTrafficPolicy"] == "Cluster"
    err = cp.kubectl("create", "-f", "-", input=svc("clash", clusterIP="10.96.100.100"), check=False).stderr
    assert "provided IP is already allocated" in err
    err = cp.kubectl("create", "-f", "-", input=svc("outside", clusterIP="192.168.1.1"), check=False).stderr
    assert "The range of valid IPs is 10.96.0.0/12" in err
    err = cp.kubectl("create", "-f", "-", input=svc("portclash", type="NodePort",
                                                   ports=[{"port": 80, "nodePort": 30080}]), check=False).stderr
    assert "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated" in err
    cp.kubectl("create", "-f", "-", input=svc("auto", type="LoadBalancer"))
    got = json.loads(cp.kubectl("get", "svc", "auto", "-o", "json").stdout)["spec"]
    assert 30000 <= got["ports"][0]["nodePort"] <= 32767
    assert "<pending>" in cp.kubectl("get", "svc", "auto").stdout
    cp.kubectl("create", "-f", "-", input=svc("headless", clusterIP="None"))
    assert json.loads(cp.kubectl("get", "svc", "headless", "-o", "json").stdout)["spec"]["clusterIP"] == "None"
    ext = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
           "spec": {"type": "ExternalName", "externalName": "example.org"}}
    cp.kubectl("create", "-f", "-", input=json.dumps(ext))
    assert "example.org" in cp.kubectl("get", "svc", "ext").stdout
    cp.kubectl("delete", "svc", "fixed", "auto", "headless", "ext")
    # the IP is free again
    cp.kubectl("create", "-f", "-", input=svc("again", clusterIP="10.96.100.100"))
    cp.kubectl("delete", "svc", "again")


def test_get_watch_prints_changes(cp):
    cp.kubectl("create", "namespace", "nlt-watch")
    env_kc = cp.kubectl  # noqa: F841 - the helper below runs kubectl the same way
    import os

    p = subprocess.Popen(["kubectl", "get", "pods", "-n", "nlt-watch", "-w", "--request-timeout=0"],
                         stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, KUBECONFIG=str(cp.kubeconfig), HOME=str(cp.home)))
    try:
        time.sleep(1.5)
        cp.kubectl("create", "-n", "nlt-watch", "-f", "-", input=json.dumps(POD))
        time.sleep(1.5)
    finally:
        p.terminate()
        out = p.communicate(timeout=5)[0]
    assert "NAME" in out and "web-0" in out and "Pending" in out
    cp.kubectl("delete", "namespace", "nlt-watch", "--wait=false")


def test_python_client_crud_and_watch_in_order(cp):
    from kubernetes import client, config, watch

    api = client.CoreV1Api(config.new_client_from_config(str(cp.kubeconfig)))
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="nlt-py")))
    rv = api.list_namespaced_config_map("nlt-py").metadata.resource_version
    events: list[tuple[str, str]] = []

    def watcher():
        w = watch.Watch()
        for ev in w.stream(api.list_namespaced_config_map, "nlt-py", resource_version=rv, timeout_seconds=10):
            events.append((ev["type"], ev["object"].metadata.name))
            if len(events) == 4:
                w.stop()

    t = threading.Thread(target=watcher)
    t.start()
    time.sleep(0.5)
    for n in ("a", "b"):
        api.create_namespaced_config_map("nlt-py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=n),
                                                                      data={"k": n}))
    api.patch_namespaced_config_map("a", "nlt-py", {"data": {"k": "patched"}})
    api.delete_namespaced_config_map("b", "nlt-py")
    t.join(15)
    assert events == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    cms = api.list_namespaced_config_map("nlt-py").items
    assert [(c.metadata.name, c.data) for c in cms] == [("a", {"k": "patched"})]
    with pytest.raises(client.ApiException) as e:
        api.read_namespaced_config_map("b", "nlt-py")
    assert e.value.status == 404
    with pytest.raises(client.ApiException) as e:
        api.create_namespaced_config_map("nlt-py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a")))
    assert e.value.status == 409 and "already exists" in e.value.body
    stale = api.read_namespaced_config_map("a", "nlt-py")
    api.patch_namespaced_config_map("a", "nlt-py", {"data": {"k": "newer"}})
    stale.data = {"k": "stale"}
    with pytest.raises(client.ApiException) as e:
        api.replace_namespaced_config_map("a", "nlt-py", stale)
    assert e.value.status == 409 and "the object has been modified" in e.value.body
    api.delete_namespace("nlt-py")


def test_filtered_watch_from_an_older_version_sees_what_happened_since(cp):
    """As `kubectl delete` waits: it reads the object, the object goes, then it watches from what
    it read; the watch must still bring the deletion. Objects entering and leaving a label or field
    selection after that version come as ADDED and DELETED, as upstream's filtered watch has it."""
    from kubernetes import client, config, watch

    api = client.CoreV1Api(config.new_client_from_config(str(cp.kubeconfig)))
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="nlt-since")))
    for name in ("gone", "moves"):
        api.create_namespaced_config_map("nlt-since", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, labels={"tier": "a"})))
    rv = api.list_namespaced_config_map("nlt-since", field_selector="metadata.name=gone").metadata.resource_version
    api.delete_namespaced_config_map("gone", "nlt-since")
    api.patch_namespaced_config_map("moves", "nlt-since", {"metadata": {"labels": {"tier": "b"}}})
    api.patch_namespaced_config_map("moves", "nlt-since", {"data": {"k": "v"}})
    api.patch_namespaced_config_map("moves", "nlt-since", {"metadata": {"labels": {"tier": "a"}}})
    api.delete_namespaced_config_map("moves", "nlt-since")

    def events(**selector):
        return [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
            api.list_namespaced_config_map, "nlt-since", resource_version=rv, timeout_seconds=1, **selector)]
    assert events(field_selector="metadata.name=gone") == [("DELETED", "gone")]
    assert events(label_selector="tier=b") == [("ADDED", "moves"), ("MODIFIED", "moves"), ("DELETED", "moves")]
    assert events(label_selector="tier=a") == [("DELETED", "gone"), ("DELETED", "moves"), ("ADDED", "moves"),
                                               ("DELETED", "moves")]
    api.delete_namespace("nlt-since")


def test_anonymous_forbidden_and_a_wrong_token_unauthorized(cp):
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(cp.cluster.state_dir / "pki" / "ca.crt"))
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(cp.url + "/api/v1/namespaces", context=ctx)
    # as upstream with anonymous auth on: system:anonymous, which RBAC does not let list
    body = json.loads(e.value.read())
    assert e.value.code == 403 and body["reason"] == "Forbidden"
    assert body["message"] == ('namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" in '
                               'API group "" at the cluster scope')
    assert urllib.request.urlopen(cp.url + "/version", context=ctx).status == 200  # system:public-info-viewer
    req = urllib.request.Request(cp.url + "/api/v1/namespaces", headers={"Authorization": "Bearer wrong"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, context=ctx)
    assert e.value.code == 401


def test_objects_survive_a_restart_and_old_watches_get_410(cp):
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(str(cp.kubeconfig)))
    api.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="keep"),
                                                                   data={"x": "1"}))
    old_rv = api.read_namespaced_config_map("keep", "default").metadata.resource_version
    cp.stop("apiserver")
    cp.start_apiserver()
    assert api.read_namespaced_config_map("keep", "default").data == {"x": "1"}
    for i in range(3):
        api.patch_namespaced_config_map("keep", "default", {"data": {"x": str(i)}})
    # compact the store past old_rv, as the API server does every few minutes
    if cp.cluster.store == "sqlite":
        from netlab.control.apiserver.store import SQLiteStore

        s = SQLiteStore(cp.cluster.state_dir / "store.db")
        s.compact_to(s.revision() - 1)
        s.close()
    else:
        import etcd3gw

        port = int(cp.cluster.store.rsplit(":", 1)[1])
        c = etcd3gw.client(host="127.0.0.1", port=port)
        rev = int(c.post(c.get_url("/kv/range"), json={"key": "AA=="})["header"]["revision"])
        c.post(c.get_url("/kv/compaction"), json={"revision": rev - 1})
    resp = api.list_namespaced_config_map("default", watch=True, resource_version=old_rv, timeout_seconds=5,
                                          _preload_content=False)
    first = json.loads(resp.readline())
    assert first["type"] == "ERROR" and first["object"]["code"] == 410 and first["object"]["reason"] == "Expired"
    api.delete_namespaced_config_map("keep", "default")


def test_selector_columns_print_expressions_as_kubectl(cp):
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "sel", "namespace": "default"},
          "spec": {"replicas": 0, "selector": {"matchLabels": {"tier": "web"}, "matchExpressions": [
              {"key": "app", "operator": "In", "values": ["b", "a"]}, {"key": "canary", "operator": "DoesNotExist"}]},
              "template": {"metadata": {"labels": {"tier": "web", "app": "a"}},
                           "spec": {"containers": [{"name": "c", "image": "agnhost"}]}}}}
    cp.kubectl("apply", "-f", "-", input=json.dumps(rs))
    wide = cp.kubectl("get", "rs", "sel", "-o", "wide", "--no-headers").stdout
    assert wide.rstrip().endswith("   app in (a,b),!canary,tier=web")  # sorted by key, as metav1 formats it
    cp.kubectl("delete", "rs", "sel")
