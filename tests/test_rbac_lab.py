"""Identities in a running lab: a pod's mounted token is its own, bound to the pod (not the
admin's), and its default service account may read discovery and nothing else until a Role and
RoleBinding grant it more; the components run on their own certificates."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import jwt
import pytest
import yaml
from cryptography import x509

pytestmark = pytest.mark.lab

NS = "nlt-rbac"
SA = "/var/run/secrets/kubernetes.io/serviceaccount"
POD = """
apiVersion: v1
kind: Pod
metadata: {name: asker}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
"""
GRANT = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: pod-reader, namespace: {NS}}}
rules: [{{apiGroups: [""], resources: [pods], verbs: [get, list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: read-pods, namespace: {NS}}}
subjects: [{{kind: ServiceAccount, name: default, namespace: {NS}}}]
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}}
"""


def test_a_pod_with_the_default_service_account(netlab_lab):
    lab = netlab_lab
    lab.kubectl("create", "namespace", NS)
    try:
        lab.wait(lambda: lab.kubectl("get", "sa", "default", "-n", NS, check=False).returncode == 0, 30,
                 "the default service account")
        lab.apply(POD, NS)
        lab.wait_ready("", NS, count=1)

        def code(path: str) -> str:  # as a client in the pod does it: the kubernetes Service, the mounted files
            sh = (f'curl -s -o /dev/null -w "%{{http_code}}" --cacert {SA}/ca.crt -H "Authorization: Bearer '
                  f'$(cat {SA}/token)" https://{lab.cluster.api_service_ip}:443{path}')
            return lab.exec("asker", ["sh", "-c", sh], namespace=NS).stdout

        token = lab.exec("asker", ["cat", f"{SA}/token"], namespace=NS).stdout.strip()
        assert token != lab.cluster.layout.token.read_text().strip()  # not the admin's any more
        claims = jwt.decode(token, options={"verify_signature": False})
        pod = lab.get("pods", "asker", NS)
        assert claims["sub"] == f"system:serviceaccount:{NS}:default" and claims["exp"] - claims["iat"] == 3607
        assert claims["kubernetes.io"]["pod"] == {"name": "asker", "uid": pod["metadata"]["uid"]}
        assert claims["kubernetes.io"]["node"]["name"] == pod["spec"]["nodeName"]
        assert lab.exec("asker", ["cat", f"{SA}/namespace"], namespace=NS).stdout == NS
        assert code("/api/v1/pods") == "403"
        assert code(f"/api/v1/namespaces/{NS}/pods") == "403"
        assert code("/api/v1/namespaces/kube-system/secrets") == "403"
        assert code("/api/v1") == "200" and code("/apis") == "200"
        lab.apply(GRANT)
        assert code(f"/api/v1/namespaces/{NS}/pods") == "200"
        assert code("/api/v1/namespaces/default/pods") == "403"
        # each of those requests is in the audit log, read with `netlab logs audit`
        out = subprocess.run([sys.executable, "-m", "netlab.tools.cli", "logs", "audit", "--tail", "400", "--name",
                              lab.name], capture_output=True, text=True, check=True).stdout
        events = [json.loads(line) for line in out.splitlines()]
        mine = [e for e in events if e["user"]["username"] == f"system:serviceaccount:{NS}:default"]
        assert {(e["verb"], e.get("objectRef", {}).get("namespace"), e["responseStatus"]["code"]) for e in mine} >= {
            ("list", NS, 200), ("list", "default", 403)}
        assert all(e["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["asker"] for e in mine)
    finally:
        lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def test_components_run_on_their_own_identities(netlab_lab):
    lab = netlab_lab
    layout = lab.cluster.layout
    users = {}
    for comp in ("kube-controller-manager", "kube-scheduler", "kube-proxy", "netpol-agent",
                 f"kubelet-{lab.cluster.nodes[1].name}"):
        doc = yaml.safe_load(layout.component_kubeconfig(comp).read_text())
        assert "client-certificate-data" in doc["users"][0]["user"], comp
        cert = x509.load_pem_x509_certificate(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))
        users[comp] = cert.subject.rfc4514_string()
    assert users["kube-proxy"] == "CN=system:kube-proxy"
    assert users[f"kubelet-{lab.cluster.nodes[1].name}"] == f"CN=system:node:{lab.cluster.nodes[1].name},O=system:nodes"
    # kube-proxy's identity reads Services, not Secrets
    assert lab.kubectl("auth", "can-i", "list", "secrets", "--as", "system:kube-proxy", check=False).stdout.strip() \
        == "no"
    # every node is Ready and DNS answers: the kubelets and CoreDNS work on their own identities
    nodes = lab.items("nodes", None)
    assert all(any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]) for n in nodes)
