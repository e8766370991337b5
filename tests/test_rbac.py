"""Identities and RBAC through the API server, with the real kubectl: service-account tokens
(`kubectl create token`, expiry, TokenReview, `kubectl auth whoami`), RBAC's 403s worded as
upstream's, Roles and RoleBindings, ClusterRole aggregation, the Node authorizer and
NodeRestriction for a kubelet's certificate, `kubectl auth can-i [--list] [--as]`,
impersonation, PodSecurity, and the audit log."""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request

import jwt
import pytest
import yaml

from netlab.lab import pki
from tests.apikit import ControlPlane

SA_USER = "system:serviceaccount:nlt-rb:default"


@pytest.fixture(scope="module")
def cp():
    with ControlPlane("nltrbac") as plane:
        for ns in ("nlt-rb", "nlt-rb-other"):
            assert plane.api("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})[0] == 201
            assert plane.api("POST", f"/api/v1/namespaces/{ns}/serviceaccounts",
                             {"metadata": {"name": "default"}})[0] == 201
        yield plane


def token_for(cp, sa: str = "default", ns: str = "nlt-rb", duration: str = "10m") -> str:
    return cp.kubectl("create", "token", sa, "-n", ns, "--duration", duration).stdout.strip()


def call(cp, method: str, path: str, token: str | None = None, body=None, headers: dict | None = None,
         cert: tuple[str, str] | None = None) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=str(cp.cluster.layout.ca_cert))
    if cert:
        ctx.load_cert_chain(*cert)
    h = {"Content-Type": "application/json", **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(cp.url + path, method=method, headers=h,
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=20) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def kubeconfig_with_token(cp, token: str, name: str) -> str:
    doc = yaml.safe_load(cp.kubeconfig.read_text())
    doc["users"][0]["user"] = {"token": token}
    path = cp.cluster.state_dir / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def kubectl_as(cp, kubeconfig: str, *args: str):
    return cp.kubectl("--kubeconfig", kubeconfig, *args, check=False)


def test_default_service_account_is_forbidden_to_list_pods_but_reads_discovery(cp):
    token = token_for(cp)
    status, body = call(cp, "GET", "/api/v1/pods", token)
    assert status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == (f'pods is forbidden: User "{SA_USER}" cannot list resource "pods" in API group "" '
                               'at the cluster scope')
    status, body = call(cp, "GET", "/api/v1/namespaces/nlt-rb/pods", token)
    assert status == 403 and body["message"].endswith('in the namespace "nlt-rb"')
    assert call(cp, "POST", "/api/v1/nodes", token, {"metadata": {"name": "nlt-evil"}})[0] == 403
    for path in ("/api", "/api/v1", "/apis", "/version"):
        assert call(cp, "GET", path, token)[0] == 200, path


def test_a_role_and_binding_grant_list_pods_in_their_namespace_only(cp):
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "read-pods"},
               "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "nlt-rb"}],
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"}}
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/nlt-rb"
    assert cp.api("POST", f"{rbac}/roles", role)[0] == 201
    assert cp.api("POST", f"{rbac}/rolebindings", binding)[0] == 201
    token = token_for(cp)
    try:
        assert call(cp, "GET", "/api/v1/namespaces/nlt-rb/pods", token)[0] == 200
        assert call(cp, "GET", "/api/v1/namespaces/nlt-rb-other/pods", token)[0] == 403
        assert call(cp, "GET", "/api/v1/pods", token)[0] == 403
        assert call(cp, "DELETE", "/api/v1/namespaces/nlt-rb/pods/x", token)[0] == 403
        kc = kubeconfig_with_token(cp, token, "reader")
        assert kubectl_as(cp, kc, "auth", "can-i", "list", "pods", "-n", "nlt-rb").stdout.strip() == "yes"
        assert kubectl_as(cp, kc, "auth", "can-i", "list", "pods", "-n", "nlt-rb-other").stdout.strip() == "no"
        # the kubectl a user has: a RoleBinding's columns
        out = cp.kubectl("get", "rolebindings", "-n", "nlt-rb", "-o", "wide").stdout
        assert "read-pods" in out and "Role/pod-reader" in out and "nlt-rb/default" in out
        # a roleRef never changes
        status, body = cp.api("PATCH", f"{rbac}/rolebindings/read-pods",
                              {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                           "name": "admin"}}, "application/merge-patch+json")
        assert status == 422 and "cannot change roleRef" in body["message"]
    finally:
        cp.api("DELETE", f"{rbac}/rolebindings/read-pods")
        cp.api("DELETE", f"{rbac}/roles/pod-reader")
    assert call(cp, "GET", "/api/v1/namespaces/nlt-rb/pods", token)[0] == 403  # the cache follows the delete


def test_create_token_works_expires_and_dies_with_its_service_account(cp):
    token = token_for(cp, duration="10m")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["sub"] == SA_USER and claims["exp"] - claims["iat"] == 600
    assert claims["kubernetes.io"]["namespace"] == "nlt-rb"
    kc = kubeconfig_with_token(cp, token, "whoami")
    who = kubectl_as(cp, kc, "auth", "whoami", "-o", "json")
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == SA_USER
    # TokenReview says the same
    status, review = cp.api("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                             "spec": {"token": token}})
    assert status == 201 and review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == SA_USER
    # the same claims, expired: a token signed by the lab's key a minute after its exp is refused
    key = (cp.cluster.layout.pki / "sa.key").read_bytes()
    expired = jwt.encode(dict(claims, exp=int(time.time()) - 60, iat=int(time.time()) - 700,
                              nbf=int(time.time()) - 700), key, algorithm="RS256")
    status, body = call(cp, "GET", "/api", expired)
    assert status == 401 and body["reason"] == "Unauthorized"
    # too short a duration: upstream's 422
    p = cp.kubectl("create", "token", "default", "-n", "nlt-rb", "--duration", "1m", check=False)
    assert p.returncode != 0 and "may not specify a duration less than 10 minutes" in p.stderr
    # a service account deleted and made again has a new uid: the old token is dead
    cp.api("POST", "/api/v1/namespaces/nlt-rb/serviceaccounts", {"metadata": {"name": "short"}})
    short = token_for(cp, "short")
    assert call(cp, "GET", "/api", short)[0] == 200
    cp.api("DELETE", "/api/v1/namespaces/nlt-rb/serviceaccounts/short")
    cp.api("POST", "/api/v1/namespaces/nlt-rb/serviceaccounts", {"metadata": {"name": "short"}})
    assert call(cp, "GET", "/api", short)[0] == 401
    cp.api("DELETE", "/api/v1/namespaces/nlt-rb/serviceaccounts/short")


def node_cert(cp, node: str) -> tuple[str, str]:
    crt, key = pki.client_cert(cp.cluster.layout.pki, f"test-kubelet-{node}", f"system:node:{node}",
                               ("system:nodes",))
    return str(crt), str(key)


def test_a_kubelet_reads_only_its_pods_secrets_and_writes_only_its_node(cp):
    for n in ("nlt-node-a", "nlt-node-b"):
        assert cp.api("POST", "/api/v1/nodes", {"metadata": {"name": n}})[0] == 201
    for s in ("mine", "theirs"):
        cp.api("POST", "/api/v1/namespaces/nlt-rb/secrets", {"metadata": {"name": s}, "stringData": {"k": "v"}})
    for pod, node, secret in (("pa", "nlt-node-a", "mine"), ("pb", "nlt-node-b", "theirs")):
        cp.api("POST", "/api/v1/namespaces/nlt-rb/pods", {"metadata": {"name": pod}, "spec": {
            "nodeName": node, "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "s", "secret": {"secretName": secret}}]}})
    a = node_cert(cp, "nlt-node-a")
    try:
        assert call(cp, "GET", "/api/v1/namespaces/nlt-rb/secrets/mine", cert=a)[0] == 200
        status, body = call(cp, "GET", "/api/v1/namespaces/nlt-rb/secrets/theirs", cert=a)
        assert status == 403 and body["message"] == (
            'secrets "theirs" is forbidden: User "system:node:nlt-node-a" cannot get resource "secrets" in API group '
            '"" in the namespace "nlt-rb": no relationship found between node \'nlt-node-a\' and this object')
        assert call(cp, "GET", "/api/v1/secrets", cert=a)[0] == 403
        merge = {"Content-Type": "application/merge-patch+json"}
        status, body = call(cp, "PATCH", "/api/v1/nodes/nlt-node-b/status", body={"status": {"phase": "x"}},
                            headers=merge, cert=a)
        assert status == 403 and 'node "nlt-node-a" is not allowed to modify node "nlt-node-b"' in body["message"]
        assert call(cp, "PATCH", "/api/v1/nodes/nlt-node-a/status", body={"metadata": {"labels": {"x": "y"}}},
                    headers=merge, cert=a)[0] == 200
        status, body = call(cp, "PATCH", "/api/v1/nodes/nlt-node-a", headers=merge, cert=a, body={
            "metadata": {"labels": {"node-restriction.kubernetes.io/role": "db"}}})
        assert status == 403 and "node-restriction.kubernetes.io/role" in body["message"]
        # only its own pods and lease
        status, body = call(cp, "DELETE", "/api/v1/namespaces/nlt-rb/pods/pb", cert=a)
        assert status == 403 and 'node "nlt-node-a" can only modify pods bound to it' in body["message"]
        status, body = call(cp, "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", cert=a,
                            body={"metadata": {"name": "nlt-node-b"}, "spec": {"holderIdentity": "nlt-node-b"}})
        assert status == 403 and "can only access node lease with the same name" in body["message"]
        # a token only for its own pods
        tr = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "pb"}}}
        assert call(cp, "POST", "/api/v1/namespaces/nlt-rb/serviceaccounts/default/token", body=tr, cert=a)[0] == 403
        tr["spec"]["boundObjectRef"]["name"] = "pa"
        status, out = call(cp, "POST", "/api/v1/namespaces/nlt-rb/serviceaccounts/default/token", body=tr, cert=a)
        assert status == 201
        # the bound token names its pod and node, and dies with the pod
        who = call(cp, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", out["status"]["token"],
                   {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})[1]
        extra = who["status"]["userInfo"]["extra"]
        assert extra["authentication.kubernetes.io/pod-name"] == ["pa"]
        assert extra["authentication.kubernetes.io/node-name"] == ["nlt-node-a"]
        cp.api("DELETE", "/api/v1/namespaces/nlt-rb/pods/pa?gracePeriodSeconds=0")
        assert call(cp, "GET", "/api", out["status"]["token"])[0] == 401
    finally:
        for p in ("pa", "pb"):
            cp.api("DELETE", f"/api/v1/namespaces/nlt-rb/pods/{p}?gracePeriodSeconds=0")
        for n in ("nlt-node-a", "nlt-node-b"):
            cp.api("DELETE", f"/api/v1/nodes/{n}")


def test_can_i_list_as_several_identities(cp):
    def rules(*args: str) -> str:
        return cp.kubectl("auth", "can-i", "--list", *args).stdout

    admin = rules()
    assert "*.*" in admin and "[*]" in admin
    sa = rules("--as", SA_USER, "-n", "nlt-rb")
    assert "selfsubjectaccessreviews.authorization.k8s.io" in sa and "pods " not in sa and "*.*" not in sa
    proxy = rules("--as", "system:kube-proxy")
    assert "endpointslices.discovery.k8s.io" in proxy and "secrets" not in proxy
    assert cp.kubectl("auth", "can-i", "list", "secrets", "--as", "system:kube-proxy", check=False).stdout.strip() == "no"
    assert cp.kubectl("auth", "can-i", "list", "services", "--as", "system:kube-proxy").stdout.strip() == "yes"
    view = cp.kubectl("auth", "can-i", "get", "pods", "--as", "someone", "--as-group", "system:masters").stdout
    assert view.strip() == "yes"


def test_impersonation_needs_the_impersonate_verb(cp):
    token = token_for(cp)
    status, body = call(cp, "GET", "/api/v1/pods", token, headers={"Impersonate-User": "bob"})
    assert status == 403
    assert body["message"] == (f'users "bob" is forbidden: User "{SA_USER}" cannot impersonate resource "users" in '
                               'API group "" at the cluster scope')
    kc = kubeconfig_with_token(cp, token, "imp")
    p = kubectl_as(cp, kc, "get", "pods", "--as", "bob")
    assert p.returncode != 0 and "cannot impersonate" in p.stderr
    # the admin may, and is then who it impersonates
    p = cp.kubectl("get", "pods", "-n", "nlt-rb", "--as", SA_USER, check=False)
    assert p.returncode != 0 and f'User "{SA_USER}" cannot list resource "pods"' in p.stderr


def test_clusterrole_aggregation_and_default_roles(cp):
    names = set(cp.kubectl("get", "clusterroles", "-o", "name").stdout.split())
    for n in ("cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery",
              "system:public-info-viewer", "system:node", "system:node-proxier", "system:kube-controller-manager",
              "system:kube-scheduler", "system:coredns"):
        assert f"clusterrole.rbac.authorization.k8s.io/{n}" in names
    croles = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
    extra = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "nlt-widgets", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
             "rules": [{"apiGroups": ["nlt.example"], "resources": ["widgets"], "verbs": ["get"]}]}
    assert cp.api("POST", croles, extra)[0] == 201
    try:
        for role in ("view", "edit", "admin"):
            rules = cp.api("GET", f"{croles}/{role}")[1]["rules"]
            assert {"apiGroups": ["nlt.example"], "resources": ["widgets"], "verbs": ["get"]} in rules, role
    finally:
        cp.api("DELETE", f"{croles}/nlt-widgets")
    assert not any("nlt.example" in r.get("apiGroups", []) for r in cp.api("GET", f"{croles}/view")[1]["rules"])
    status, body = cp.api("POST", croles, {"metadata": {"name": "nlt-bad"}, "rules": [{"resources": ["pods"]}]})
    assert status == 422 and "rules[0].verbs: Required value" in body["message"]


def test_a_privileged_pod_in_a_restricted_namespace_is_rejected(cp):
    ns = {"metadata": {"name": "nlt-rb-restricted", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    assert cp.api("POST", "/api/v1/namespaces", ns)[0] == 201
    try:
        pod = {"metadata": {"name": "priv"}, "spec": {"containers": [
            {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}}
        status, body = cp.api("POST", "/api/v1/namespaces/nlt-rb-restricted/pods", pod)
        assert status == 403
        assert body["message"].startswith('pods "priv" is forbidden: violates PodSecurity "restricted:latest": '
                                          'privileged (container "c" must not set securityContext.privileged=true), '
                                          'allowPrivilegeEscalation != false (container "c" must set '
                                          'securityContext.allowPrivilegeEscalation=false), unrestricted capabilities '
                                          '(container "c" must set securityContext.capabilities.drop=["ALL"])')
        good = {"metadata": {"name": "ok"}, "spec": {"securityContext": {
            "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}, "containers": [
            {"name": "c", "image": "busybox", "securityContext": {
                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}
        assert cp.api("POST", "/api/v1/namespaces/nlt-rb-restricted/pods", good)[0] == 201
        # warn: created, with upstream's warning
        cp.kubectl("label", "namespace", "nlt-rb-restricted", "pod-security.kubernetes.io/enforce=privileged",
                   "pod-security.kubernetes.io/warn=baseline", "--overwrite")
        manifest = json.dumps(dict(pod, apiVersion="v1", kind="Pod"))
        p = cp.kubectl("create", "-n", "nlt-rb-restricted", "-f", "-", input=manifest)
        assert 'Warning: would violate PodSecurity "baseline:latest": privileged (container "c" must not set ' \
               'securityContext.privileged=true)' in p.stderr
    finally:
        cp.api("DELETE", "/api/v1/namespaces/nlt-rb-restricted")


def test_audit_log_has_an_event_per_request(cp):
    token = token_for(cp)
    call(cp, "GET", "/api/v1/namespaces/nlt-rb/configmaps", token)
    lines = [json.loads(x) for x in cp.cluster.layout.log("audit").read_text().splitlines()]
    ev = [e for e in lines if e["user"]["username"] == SA_USER and e.get("objectRef", {}).get("resource") ==
          "configmaps"][-1]
    assert ev["kind"] == "Event" and ev["apiVersion"] == "audit.k8s.io/v1" and ev["level"] == "Metadata"
    assert ev["verb"] == "list" and ev["objectRef"]["namespace"] == "nlt-rb"
    assert ev["responseStatus"]["code"] == 403
    assert ev["annotations"]["authorization.k8s.io/decision"] == "forbid"


def test_the_admin_kubeconfig_is_kubeadms_client_certificate(cp):
    doc = yaml.safe_load(cp.kubeconfig.read_text())
    user = doc["users"][0]["user"]
    assert "token" not in user and "client-certificate-data" in user
    out = json.loads(cp.kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert out["username"] == "kubernetes-admin" and "kubeadm:cluster-admins" in out["groups"]
    assert base64.b64decode(user["client-key-data"]).startswith(b"-----BEGIN PRIVATE KEY")


def test_a_namespace_admin_grants_only_what_it_holds(cp):
    cp.kubectl("create", "rolebinding", "alice-admin", "--clusterrole=admin", "--user=alice", "-n", "nlt-rb")
    try:
        ok = cp.kubectl("create", "role", "lister", "--verb=list", "--resource=pods", "-n", "nlt-rb", "--as", "alice",
                        check=False)
        assert ok.returncode == 0, ok.stderr
        p = cp.kubectl("create", "role", "node-lister", "--verb=list", "--resource=nodes", "-n", "nlt-rb", "--as",
                       "alice", check=False)
        assert p.returncode != 0 and ('roles.rbac.authorization.k8s.io "node-lister" is forbidden: user "alice" '
                                      '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not '
                                      'currently held') in p.stderr and 'Resources:["nodes"]' in p.stderr
        p = cp.kubectl("create", "rolebinding", "alice-root", "--clusterrole=cluster-admin", "--user=alice", "-n",
                       "nlt-rb", "--as", "alice", check=False)
        assert p.returncode != 0 and "attempting to grant RBAC permissions not currently held" in p.stderr
        assert cp.kubectl("create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob", "-n", "nlt-rb",
                          "--as", "alice", check=False).returncode == 0
    finally:
        for kind, name in (("rolebinding", "alice-admin"), ("role", "lister"), ("rolebinding", "bob-view")):
            cp.kubectl("delete", kind, name, "-n", "nlt-rb", "--ignore-not-found", check=False)


def test_the_kubelets_token_manager_asks_again_at_80_percent(cp, monkeypatch):
    import asyncio
    import threading

    from netlab.api.client import Client
    from netlab.node.kubelet import tokens

    cp.api("POST", "/api/v1/namespaces/nlt-rb/pods", {"metadata": {"name": "rotated"}, "spec": {
        "containers": [{"name": "c", "image": "busybox"}]}})
    pod = cp.api("GET", "/api/v1/namespaces/nlt-rb/pods/rotated")[1]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    client = Client.from_kubeconfig(cp.kubeconfig)
    manager = tokens.TokenManager(client)
    manager.loop = loop
    try:
        first = manager.token(pod, "nlt-audience", 600)
        claims = jwt.decode(first, options={"verify_signature": False})
        assert claims["aud"] == ["nlt-audience"] and claims["exp"] - claims["iat"] == 600
        assert claims["kubernetes.io"]["pod"]["name"] == "rotated"
        assert manager.token(pod, "nlt-audience", 600) == first and not manager.due(pod["metadata"]["uid"])
        now = time.time()
        monkeypatch.setattr(tokens.time, "time", lambda: now + 470)  # 78% of its life: kept
        assert not manager.due(pod["metadata"]["uid"])
        monkeypatch.setattr(tokens.time, "time", lambda: now + 490)  # past 80%: asked again
        assert manager.due(pod["metadata"]["uid"])
        second = manager.token(pod, "nlt-audience", 600)
        assert second != first and jwt.decode(second, options={"verify_signature": False})["jti"] != claims["jti"]
    finally:
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        cp.api("DELETE", "/api/v1/namespaces/nlt-rb/pods/rotated?gracePeriodSeconds=0")


def test_a_bootstrap_token_is_a_bootstrapper_until_it_expires(cp):
    def secret(tid: str, expiration: str) -> dict:
        return {"metadata": {"name": f"bootstrap-token-{tid}"}, "type": "bootstrap.kubernetes.io/token",
                "stringData": {"token-id": tid, "token-secret": "0123456789abcdef", "expiration": expiration,
                               "usage-bootstrap-authentication": "true",
                               "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"}}
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    for tid, exp in (("abcdef", later), ("zyxwvu", before)):
        assert cp.api("POST", "/api/v1/namespaces/kube-system/secrets", secret(tid, exp))[0] == 201
    try:
        who = call(cp, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "abcdef.0123456789abcdef",
                   {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})[1]["status"]["userInfo"]
        assert who["username"] == "system:bootstrap:abcdef"
        assert who["groups"] == ["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token",
                                 "system:authenticated"]
        # kubeadm:get-nodes lets it read Nodes, nothing more
        assert call(cp, "GET", "/api/v1/nodes", "abcdef.0123456789abcdef")[0] == 403  # get, not list
        assert call(cp, "GET", "/api/v1/namespaces/kube-system/secrets", "abcdef.0123456789abcdef")[0] == 403
        assert call(cp, "GET", "/api", "abcdef.0123456789abcdef0")[0] == 401
        assert call(cp, "GET", "/api", "abcdef.0123456789abcdee")[0] == 401  # the wrong secret
        assert call(cp, "GET", "/api", "zyxwvu.0123456789abcdef")[0] == 401  # expired
    finally:
        for tid in ("abcdef", "zyxwvu"):
            cp.api("DELETE", f"/api/v1/namespaces/kube-system/secrets/bootstrap-token-{tid}")
