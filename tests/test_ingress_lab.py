"""Ingress from the outside: ingress-nginx (examples/ingress-nginx.yaml, a Deployment behind a
LoadBalancer Service driving Debian's nginx) routes the kubernetes.io Ingress examples (simple
fanout, name-based virtual hosting, hostname wildcards, TLS, a default backend) as the docs say,
asked with `curl --resolve` from the outside; its Ingresses' status and kubectl's columns; a
backend pod scaled away is no longer routed to within a second."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from netlab.api.client import manifest_objects
from netlab.tools.testing import Lab

pytestmark = [pytest.mark.lab, pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx (apt-get install nginx)")]
NS = "ingtest"
ROOT = Path(__file__).resolve().parent.parent
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"


def echo(name: str, port: int) -> str:
    """A Deployment answering its own name, behind a Service on `port`."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
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
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: {port}, targetPort: 5678}}]
"""


BACKENDS = echo("service1", 4200) + "---" + echo("service2", 8080) + "---" + echo("service3", 80) + "---" + \
    echo("test", 80) + f"""
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: scaled}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: scaled}}}}
  template:
    metadata: {{labels: {{app: scaled}}}}
    spec:
      # it goes on answering 5 s after SIGTERM, as a graceful server does: an answer from it after
      # the scale-down is the Ingress still routing to it
      containers: [{{name: agnhost, image: {AGNHOST}, args: [netexec, --http-port=8080, --delay-shutdown=5]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: scaled}}
spec:
  selector: {{app: scaled}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


@pytest.fixture(scope="module")
def lab(netlab_lab: Lab):
    lab = netlab_lab
    lab.kubectl("create", "namespace", NS)
    try:
        lab.apply(ROOT / "examples" / "ingress-nginx.yaml")
        lab.apply(BACKENDS, namespace=NS)
        lab.wait_ready("app.kubernetes.io/component=controller", namespace="ingress-nginx", count=1)
        for app in ("service1", "service2", "service3", "test"):
            lab.wait_ready(f"app={app}", namespace=NS, count=1)
        lab.wait_ready("app=scaled", namespace=NS, count=2)
        lab.wait(lambda: address(lab), what="the controller's LoadBalancer address")
        yield lab
    finally:
        lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        lab.kubectl("delete", "-f", str(ROOT / "examples" / "ingress-nginx.yaml"), "--wait=false", "--ignore-not-found",
                    check=False)


def address(lab: Lab) -> str | None:
    svc = lab.get("service", "ingress-nginx-controller", "ingress-nginx")
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ingress[0]["ip"] if ingress else None


def curl(lab: Lab, url: str, host: str | None = None, *extra: str) -> tuple[str, str]:
    """(status code, body) of one request from the outside, to the controller's address."""
    ip = address(lab)
    args = ["curl", "-s", "-m", "3", "-w", "\n%{http_code}"]
    if host:
        port = 443 if url.startswith("https") else 80
        args += ["--resolve", f"{host}:{port}:{ip}"]
        url = url.replace("HOST", host)
    else:
        url = url.replace("HOST", ip)
    r = lab.outside_exec([*args, *extra, url])
    body, _, code = r.stdout.rpartition("\n")
    return code, body.strip()


def with_ingress(lab: Lab, manifest: str, check, timeout: float = 10) -> None:
    """Apply an Ingress, wait until `check()` holds (the controller reloads), then delete it."""
    lab.apply(manifest, namespace=NS)
    try:
        lab.wait(check, timeout=timeout, what="the Ingress routed", interval=0.2)
    finally:
        for o in manifest_objects(manifest):
            lab.kubectl("delete", "ingress", o["metadata"]["name"], "-n", NS, check=False)


SIMPLE_FANOUT = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: simple-fanout-example
spec:
  ingressClassName: nginx
  rules:
  - host: foo.bar.com
    http:
      paths:
      - path: /foo
        pathType: Prefix
        backend:
          service:
            name: service1
            port:
              number: 4200
      - path: /bar
        pathType: Prefix
        backend:
          service:
            name: service2
            port:
              number: 8080
"""


def test_simple_fanout(lab):
    def routed():
        return (curl(lab, "http://HOST/foo", "foo.bar.com") == ("200", "service1")
                and curl(lab, "http://HOST/foo/x", "foo.bar.com") == ("200", "service1")
                and curl(lab, "http://HOST/bar", "foo.bar.com") == ("200", "service2"))
    with_ingress(lab, SIMPLE_FANOUT, routed)


def test_name_based_virtual_hosting(lab):
    manifest = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: name-virtual-host-ingress-no-third-host
spec:
  ingressClassName: nginx
  rules:
  - host: first.bar.com
    http:
      paths:
      - pathType: Prefix
        path: "/"
        backend:
          service:
            name: service1
            port:
              number: 4200
  - host: second.bar.com
    http:
      paths:
      - pathType: Prefix
        path: "/"
        backend:
          service:
            name: service2
            port:
              number: 8080
  - http:
      paths:
      - pathType: Prefix
        path: "/"
        backend:
          service:
            name: service3
            port:
              number: 80
"""

    def routed():
        return (curl(lab, "http://HOST/", "first.bar.com") == ("200", "service1")
                and curl(lab, "http://HOST/", "second.bar.com") == ("200", "service2")
                and curl(lab, "http://HOST/", "third.bar.com") == ("200", "service3")
                and curl(lab, "http://HOST/")[1] == "service3")  # no host at all
    with_ingress(lab, manifest, routed)


def test_hostname_wildcards_match_one_label(lab):
    manifest = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ingress-wildcard-host
spec:
  ingressClassName: nginx
  rules:
  - host: "foo.bar.com"
    http:
      paths:
      - pathType: Prefix
        path: "/bar"
        backend:
          service:
            name: service1
            port:
              number: 4200
  - host: "*.foo.com"
    http:
      paths:
      - pathType: Prefix
        path: "/foo"
        backend:
          service:
            name: service2
            port:
              number: 8080
"""

    def routed():
        return (curl(lab, "http://HOST/bar", "foo.bar.com") == ("200", "service1")
                and curl(lab, "http://HOST/foo", "bar.foo.com") == ("200", "service2")
                and curl(lab, "http://HOST/foo", "baz.bar.foo.com")[0] == "404"
                and curl(lab, "http://HOST/foo", "foo.com")[0] == "404")
    with_ingress(lab, manifest, routed)


def test_tls_terminates_with_the_hosts_certificate(lab):
    tmp = Path(tempfile.mkdtemp(prefix="nlt-tls-"))
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=https-example.foo.com", "-addext", "subjectAltName=DNS:https-example.foo.com",
                        "-keyout", str(tmp / "tls.key"), "-out", str(tmp / "tls.crt")], check=True, capture_output=True)
        lab.kubectl("create", "secret", "tls", "testsecret-tls", "-n", NS, "--cert", str(tmp / "tls.crt"),
                    "--key", str(tmp / "tls.key"))
        ca = f"/tmp/nlt-ca-{time.monotonic_ns()}.crt"  # the outside shares the host's filesystem
        shutil.copy(tmp / "tls.crt", ca)
        manifest = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: tls-example-ingress
spec:
  ingressClassName: nginx
  tls:
  - hosts:
      - https-example.foo.com
    secretName: testsecret-tls
  rules:
  - host: https-example.foo.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: service1
            port:
              number: 4200
"""

        def routed():
            # verified against the Secret's certificate: nginx picked it by SNI
            return (curl(lab, "https://HOST/", "https-example.foo.com", "--cacert", ca) == ("200", "service1")
                    and curl(lab, "http://HOST/", "https-example.foo.com")[0] == "308")
        try:
            with_ingress(lab, manifest, routed)
        finally:
            Path(ca).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        lab.kubectl("delete", "secret", "testsecret-tls", "-n", NS, check=False)


def test_default_backend_takes_what_matches_no_rule(lab):
    manifest = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: test-ingress
spec:
  ingressClassName: nginx
  defaultBackend:
    service:
      name: test
      port:
        number: 80
"""

    def routed():
        return curl(lab, "http://HOST/anything", "whatever.example") == ("200", "test")
    with_ingress(lab, manifest, routed)
    lab.wait(lambda: curl(lab, "http://HOST/anything", "whatever.example")[0] == "404", timeout=5,
             what="the controller's own 404 again")


def test_status_columns_and_the_rendered_configuration(lab):
    lab.apply(SIMPLE_FANOUT, namespace=NS)
    try:
        ip = address(lab)
        ing = lab.wait(lambda: (i := lab.get("ingress", "simple-fanout-example", NS))["status"]["loadBalancer"]
                       .get("ingress") and i, what="the Ingress's status")
        assert ing["status"]["loadBalancer"]["ingress"] == [{"ip": ip}]
        out = lab.kubectl("get", "ingress", "-n", NS).stdout.splitlines()
        assert out[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
        assert out[1].split()[:5] == ["simple-fanout-example", "nginx", "foo.bar.com", ip, "80"]
        out = lab.kubectl("get", "ingressclass").stdout.splitlines()
        assert out[0].split() == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
        assert out[1].split()[:3] == ["nginx", "k8s.io/ingress-nginx", "<none>"]
        conf = lab.kubectl("exec", "-n", "ingress-nginx", "deploy/ingress-nginx-controller", "--",
                           "cat", "/etc/nginx/nginx.conf").stdout
        assert "server_name foo.bar.com;" in conf and "location = /foo {" in conf and "location /foo/ {" in conf
        # netlab trace outside HOST: ARP, the rules to the controller's pod, and nginx's backend
        from netlab.tools import trace

        lab.wait(lambda: curl(lab, "http://HOST/foo", "foo.bar.com") == ("200", "service1"), what="routed")
        t = trace.run_outside(lab, "foo.bar.com", path="/foo")
        assert t.answer == "connected; answer: service1", t
        assert t.receiver and t.receiver.startswith("pod ingress-nginx/ingress-nginx-controller-"), t
        assert t.proxied and f"pod {NS}/service1-" in t.proxied, t
    finally:
        lab.kubectl("delete", "ingress", "simple-fanout-example", "-n", NS, check=False)


def test_a_scaled_away_pod_is_no_longer_routed_to_within_a_second(lab):
    manifest = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: scaled}
spec:
  ingressClassName: nginx
  rules:
  - host: scaled.example
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: scaled, port: {number: 80}}}}]
"""
    lab.apply(manifest, namespace=NS)
    try:
        pods = {p["metadata"]["name"] for p in lab.items("pods", NS, "app=scaled")}
        lab.wait(lambda: {curl(lab, "http://HOST/hostname", "scaled.example")[1] for _ in range(8)} == pods,
                 timeout=10, what="both pods answering through the Ingress")
        lab.kubectl("scale", "deployment", "scaled", "-n", NS, "--replicas=1")
        t0 = time.monotonic()
        gone = lab.wait(lambda: pods - {p["metadata"]["name"] for p in lab.items("pods", NS, "app=scaled")
                                        if not p["metadata"].get("deletionTimestamp")}, what="a pod scaled away")
        last_seen = 0.0  # when the scaled-away pod last answered
        while time.monotonic() - t0 < 3:
            code, body = curl(lab, "http://HOST/hostname", "scaled.example")
            assert code == "200", (code, body)  # it is still serving: no request fails meanwhile
            if body in gone:
                last_seen = time.monotonic() - t0
        assert last_seen < 1.0, f"the scaled-away pod was routed to {last_seen:.2f} s after the scale-down"
    finally:
        lab.kubectl("delete", "ingress", "scaled", "-n", NS, check=False)
