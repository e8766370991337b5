"""Gateway API from the outside: the upstream standard-install CRDs (tests/data/gateway-api, applied
unchanged with kubectl), netlab's Gateway controller (examples/gateway-controller.yaml: a Deployment
behind a LoadBalancer Service driving Debian's nginx), and a Gateway with HTTPRoutes asked with curl
from the outside: an 80/20 weighted split, a header match with a header modifier, a redirect, a
URL rewrite; the statuses the spec defines, and bad references with the spec's reasons."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from netlab.tools.testing import Lab

pytestmark = [pytest.mark.lab, pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx (apt-get install nginx)")]
NS = "gwtest"
ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "tests" / "data" / "gateway-api"
CONTROLLER = ROOT / "examples" / "gateway-controller.yaml"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"


def backend(name: str) -> str:
    """A Deployment of agnhost netexec (its /echo and /header answers) and /hostname, behind a Service."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: echo, image: hashicorp/http-echo, args: [-text={name}, -listen=:5678]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NS}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 5678}}]
"""


GATEWAY = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: {NS}}}
spec:
  gatewayClassName: netlab
  listeners:
  - name: http
    protocol: HTTP
    port: 80
    allowedRoutes: {{namespaces: {{from: Same}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: headers, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: headers}}}}
  template:
    metadata: {{labels: {{app: headers}}}}
    spec:
      containers: [{{name: agnhost, image: {AGNHOST}, args: [netexec, --http-port=8080]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: headers, namespace: {NS}}}
spec:
  selector: {{app: headers}}
  ports: [{{port: 80, targetPort: 8080}}]
"""

ROUTE = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: {NS}}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: [shop.example.com]
  rules:
  - backendRefs:                       # 80/20 between two Services
    - {{name: v1, port: 80, weight: 80}}
    - {{name: v2, port: 80, weight: 20}}
  - matches:                           # the canary header goes to v2 alone
    - headers: [{{name: env, value: canary}}]
    backendRefs: [{{name: v2, port: 80}}]
  - matches:
    - path: {{type: PathPrefix, value: /debug}}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{{name: X-Gateway, value: netlab}}]
        remove: [X-Secret]
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}
    backendRefs: [{{name: headers, port: 80}}]
  - matches:
    - path: {{type: Exact, value: /old}}
    filters:
    - type: RequestRedirect
      requestRedirect: {{scheme: https, hostname: new.example.com, statusCode: 301}}
"""


@pytest.fixture(scope="module")
def lab(netlab_lab: Lab):
    lab = netlab_lab
    lab.kubectl("apply", "-f", str(CRDS), timeout=120)
    try:
        lab.kubectl("wait", "--for", "condition=established", "crd", "--all", "--timeout=30s")
        lab.kubectl("create", "namespace", NS)
        lab.kubectl("apply", "-f", str(CONTROLLER))
        lab.kubectl("apply", "-f", "-", input=backend("v1") + "---" + backend("v2") + "---" + GATEWAY)
        lab.wait_ready("app.kubernetes.io/name=netlab-gateway", namespace="netlab-gateway", count=1, timeout=90)
        for app in ("v1", "v2", "headers"):
            lab.wait_ready(f"app={app}", namespace=NS, count=1)
        lab.wait(lambda: address(lab), what="the controller's LoadBalancer address")
        yield lab
    finally:
        lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        lab.kubectl("delete", "-f", str(CONTROLLER), "--wait=false", "--ignore-not-found", check=False)
        lab.kubectl("delete", "-f", str(CRDS), "--ignore-not-found", check=False, timeout=120)


def address(lab: Lab) -> str | None:
    svc = lab.get("service", "netlab-gateway", "netlab-gateway")
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ingress[0]["ip"] if ingress else None


def get(lab: Lab, kind: str, name: str, ns: str | None = NS) -> dict:
    return json.loads(lab.kubectl("get", kind, name, *(["-n", ns] if ns else []), "-o", "json").stdout)


def curl(lab: Lab, path: str, *extra: str, n: int = 1, host: str = "shop.example.com") -> list[tuple[str, str]]:
    """(status code, body) of `n` requests from the outside to the Gateway's address (one curl)."""
    ip = address(lab)
    url = f"http://{host}{path}"
    args = ["curl", "-s", "-m", "5", "--resolve", f"{host}:80:{ip}", "-w", "\n@@%{http_code}@@\n"]
    out = lab.outside_exec([*args, *extra, *([url] * n)], timeout=60).stdout
    answers = []
    for chunk in out.split("@@\n"):
        if "@@" in chunk:
            body, _, code = chunk.rpartition("\n@@")
            answers.append((code, body.strip()))
    return answers


def conditions(obj: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in obj.get("conditions") or []}


@pytest.fixture(scope="module")
def shop(lab):
    lab.kubectl("apply", "-f", "-", input=ROUTE)
    lab.wait(lambda: curl(lab, "/", "-H", "env: canary") == [("200", "v2")], what="the route programmed", timeout=20)
    return lab


def test_weighted_backends_split_80_20(shop):
    answers = curl(shop, "/", n=200)
    counts = Counter(body for code, body in answers if code == "200")
    assert sum(counts.values()) == 200, answers[:5]
    # binomial(200, 0.8): sd 5.7; 140..180 is 3.5 sd either side
    assert 140 <= counts["v1"] <= 180 and counts["v1"] + counts["v2"] == 200, counts


def test_header_match_goes_to_its_backend(shop):
    assert Counter(curl(shop, "/", "-H", "env: canary", n=20)) == {("200", "v2"): 20}
    assert {b for _, b in curl(shop, "/", "-H", "env: prod", n=30)} == {"v1", "v2"}  # no match: the split


def test_redirect_and_rewrite_with_header_modifier(shop):
    ip = address(shop)
    r = shop.outside_exec(["curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                           "--resolve", f"shop.example.com:80:{ip}", "http://shop.example.com/old?a=1"])
    assert r.stdout == "301 https://new.example.com/old?a=1"
    # /debug/header?key=X-Gateway: the rewrite strips /debug, netexec answers the header it got
    assert curl(shop, "/debug/header?key=X-Gateway") == [("200", "netlab")]
    assert curl(shop, "/debug/header?key=X-Secret", "-H", "X-Secret: s3cret") == [("200", "")]
    assert curl(shop, "/olderr")[0][0] == "200"  # Exact /old only; the rest is the split's
    assert curl(shop, "/", host="other.example.com")[0][0] == "404"  # no route for that host: 404


def test_statuses_as_the_spec_defines(shop):
    lab = shop
    gc = get(lab, "gatewayclass", "netlab", None)
    assert conditions(gc["status"])["Accepted"] == ("True", "Accepted")
    assert {"name": "HTTPRoute"} in gc["status"]["supportedFeatures"]
    def programmed():
        g = get(lab, "gateway", "web")
        return g if conditions(g.get("status") or {}).get("Programmed") == ("True", "Programmed") else None
    gw = lab.wait(programmed, what="the Gateway Programmed")
    assert conditions(gw["status"])["Accepted"] == ("True", "Accepted")
    assert gw["status"]["addresses"] == [{"type": "IPAddress", "value": address(lab)}]
    (listener,) = gw["status"]["listeners"]
    assert listener["attachedRoutes"] == 1
    assert listener["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]
    assert conditions(listener) == {"Accepted": ("True", "Accepted"), "Conflicted": ("False", "NoConflicts"),
                                    "ResolvedRefs": ("True", "ResolvedRefs"), "Programmed": ("True", "Programmed")}
    assert all(c["observedGeneration"] == gw["metadata"]["generation"] for c in gw["status"]["conditions"])
    (parent,) = get(lab, "httproute", "shop")["status"]["parents"]
    assert parent["controllerName"] == "netlab.dev/gateway-controller"
    assert parent["parentRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web"}
    assert conditions(parent) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    lines = lab.kubectl("get", "gateway", "-n", NS).stdout.splitlines()
    assert lines[1].split()[:4] == ["web", "netlab", address(lab), "True"]
    conf = lab.kubectl("exec", "-n", "netlab-gateway", "deploy/netlab-gateway", "--", "cat",
                       "/etc/nginx/nginx.conf").stdout
    assert "split_clients" in conf and "server_name shop.example.com;" in conf


BAD = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: missing, namespace: {NS}}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: [missing.example.com]
  rules: [{{backendRefs: [{{name: no-such-service, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: wrong-kind, namespace: {NS}}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: [kind.example.com]
  rules: [{{backendRefs: [{{group: "", kind: ConfigMap, name: v1, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: elsewhere, namespace: {NS}}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: [grant.example.com]
  rules: [{{backendRefs: [{{name: v1, namespace: gwtest-other, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: no-section, namespace: {NS}}}
spec:
  parentRefs: [{{name: web, sectionName: https}}]
  rules: [{{backendRefs: [{{name: v1, port: 80}}]}}]
"""

GRANT = f"""
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: from-gwtest, namespace: gwtest-other}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {NS}}}]
  to: [{{group: "", kind: Service}}]
"""


def test_bad_references_give_the_specs_reasons(shop):
    lab = shop
    lab.kubectl("create", "namespace", "gwtest-other")
    try:
        lab.kubectl("apply", "-f", "-", input=backend("v1").replace(f"namespace: {NS}", "namespace: gwtest-other"))
        lab.kubectl("apply", "-f", "-", input=BAD)

        def parent(name: str) -> dict | None:
            parents = (get(lab, "httproute", name).get("status") or {}).get("parents") or []
            return conditions(parents[0]) if parents else None
        want = {"missing": {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")},
                "wrong-kind": {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "InvalidKind")},
                "elsewhere": {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "RefNotPermitted")},
                "no-section": {"Accepted": ("False", "NoMatchingParent"), "ResolvedRefs": ("True", "ResolvedRefs")}}
        for name, conds in want.items():
            lab.wait(lambda n=name, c=conds: parent(n) == c, what=f"HTTPRoute {name}'s status", timeout=15)
        # a backendRef that does not resolve is answered 500, as the spec says
        lab.wait(lambda: curl(lab, "/", host="missing.example.com")[0][0] == "500", what="500", timeout=10)
        assert curl(lab, "/", host="grant.example.com")[0][0] == "500"
        lab.kubectl("apply", "-f", "-", input=GRANT)  # the ReferenceGrant lets it through
        lab.wait(lambda: parent("elsewhere") == {"Accepted": ("True", "Accepted"),
                                                 "ResolvedRefs": ("True", "ResolvedRefs")}, what="granted")
        lab.wait_ready("app=v1", namespace="gwtest-other", count=1)
        lab.wait(lambda: curl(lab, "/", host="grant.example.com") == [("200", "v1")], what="routed", timeout=10)
        gw = get(lab, "gateway", "web")
        assert gw["status"]["listeners"][0]["attachedRoutes"] == 4  # shop and the three accepted ones
        # a route that leaves the Gateway loses our status.parents entry, and its listener count
        lab.kubectl("patch", "httproute", "missing", "-n", NS, "--type=merge", "-p",
                    json.dumps({"spec": {"parentRefs": [{"name": "some-other-gateway"}]}}))
        lab.wait(lambda: not (get(lab, "httproute", "missing").get("status") or {}).get("parents"), what="entry gone")
        lab.wait(lambda: get(lab, "gateway", "web")["status"]["listeners"][0]["attachedRoutes"] == 3, what="3 routes")
    finally:
        lab.kubectl("delete", "-f", "-", "--ignore-not-found", input=BAD, check=False)
        lab.kubectl("delete", "namespace", "gwtest-other", "--wait=false", check=False)


def test_https_listener_terminates_with_its_certificate_ref(shop):
    lab = shop
    tmp = Path(tempfile.mkdtemp(prefix="nlt-gwtls-"))
    ca = f"/tmp/nlt-gwca-{time.monotonic_ns()}.crt"  # the outside shares the host's filesystem
    gw = get(lab, "gateway", "web")
    tls = {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": "secure.example.com",
           "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "secure-tls"}]}}
    route = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: secure, namespace: {NS}}}
spec:
  parentRefs: [{{name: web, sectionName: https}}]
  rules: [{{backendRefs: [{{name: v2, port: 80}}]}}]
"""
    try:
        patch = json.dumps([{"op": "add", "path": "/spec/listeners/-", "value": tls}])
        lab.kubectl("patch", "gateway", "web", "-n", NS, "--type=json", "-p", patch)
        lab.kubectl("apply", "-f", "-", input=route)

        def listener() -> dict | None:
            ls = {x["name"]: x for x in (get(lab, "gateway", "web").get("status") or {}).get("listeners") or []}
            return conditions(ls["https"]) if "https" in ls else None
        # no Secret yet: the spec's InvalidCertificateRef, and the listener not programmed
        lab.wait(lambda: (listener() or {}).get("ResolvedRefs") == ("False", "InvalidCertificateRef"),
                 what="InvalidCertificateRef")
        assert listener()["Programmed"] == ("False", "Invalid")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=secure.example.com", "-addext", "subjectAltName=DNS:secure.example.com",
                        "-keyout", str(tmp / "tls.key"), "-out", str(tmp / "tls.crt")], check=True, capture_output=True)
        lab.kubectl("create", "secret", "tls", "secure-tls", "-n", NS, "--cert", str(tmp / "tls.crt"),
                    "--key", str(tmp / "tls.key"))
        shutil.copy(tmp / "tls.crt", ca)
        lab.wait(lambda: (listener() or {}).get("Programmed") == ("True", "Programmed"), what="programmed")
        ip = address(lab)

        def answer() -> str:
            return lab.outside_exec(["curl", "-s", "-m", "5", "--cacert", ca, "--resolve",
                                     f"secure.example.com:443:{ip}", "https://secure.example.com/"]).stdout.strip()
        lab.wait(lambda: answer() == "v2", what="served over TLS with the Secret's certificate", timeout=10)
        # the route is attached to the https listener only (sectionName): not on port 80
        assert curl(lab, "/", host="secure.example.com")[0][0] == "404"
    finally:
        lab.kubectl("delete", "httproute", "secure", "-n", NS, "--ignore-not-found", check=False)
        lab.kubectl("delete", "secret", "secure-tls", "-n", NS, "--ignore-not-found", check=False)
        lab.kubectl("patch", "gateway", "web", "-n", NS, "--type=merge", "-p", json.dumps(
            {"spec": {"listeners": gw["spec"]["listeners"]}}), check=False)
        Path(ca).unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
