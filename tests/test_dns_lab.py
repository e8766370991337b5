"""Cluster DNS in a running lab: the kube-dns Deployment answers pods through their resolv.conf;
short names, headless Services, SRV and PTR; new and deleted Services within a second; and the
conformance table against the server running as a pod."""

from __future__ import annotations

import json
import sys
import time

import pytest

from tests.test_dns import CONFORMANCE, DATA

pytestmark = pytest.mark.lab
NS = "dnstest"


PODS = """
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec, --http-port=5432]}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, labels: {app: db}}
spec:
  containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec, --http-port=5432]}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: db}
  ports: [{name: http, port: 80, targetPort: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
"""


@pytest.fixture(scope="module")
def lab(netlab_lab):
    lab = netlab_lab
    lab.kubectl("create", "namespace", NS)
    try:
        lab.apply(PODS, namespace=NS)
        lab.wait_ready("app=db", namespace=NS, count=2)
        lab.wait(lambda: lab.get("pod", "client", NS)["status"].get("phase") == "Running", what="client running")
        yield lab
    finally:
        lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def in_client(lab, *argv: str) -> str:
    r = lab.exec("client", list(argv), namespace=NS, timeout=20)
    assert r.returncode == 0, f"{argv}: {r.stdout} {r.stderr}"
    return r.stdout


def test_resolv_conf_points_at_kube_dns(lab):
    conf = in_client(lab, "cat", "/etc/resolv.conf")
    assert "nameserver 10.96.0.10" in conf
    assert f"search {NS}.svc.cluster.local svc.cluster.local cluster.local" in conf and "options ndots:5" in conf


def test_short_names_through_the_search_path(lab):
    ip = lab.get("service", "web", NS)["spec"]["clusterIP"]
    assert in_client(lab, "getent", "hosts", "web").split()[:2] == [ip, f"web.{NS}.svc.cluster.local"]
    out = in_client(lab, "nslookup", f"web.{NS}")
    assert f"Name:\tweb.{NS}.svc.cluster.local" in out and f"Address: {ip}" in out
    assert in_client(lab, "getent", "hosts", "kubernetes.default").split()[0] == "10.96.0.1"


def test_headless_srv_and_ptr(lab):
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in lab.items("pods", NS, "app=db")}
    zone = f"db.{NS}.svc.cluster.local"
    a = sorted(in_client(lab, "dig", "+short", zone).split())
    assert a == sorted(pods.values())
    assert in_client(lab, "dig", "+short", f"db-0.{zone}").split() == [pods["db-0"]]
    srv = sorted(in_client(lab, "dig", "+short", "SRV", f"_pg._tcp.{zone}").splitlines())
    db1_name = pods["db-1"].replace(".", "-")
    assert srv == sorted([f"0 50 5432 db-0.{zone}.", f"0 50 5432 {db1_name}.{zone}."])
    ip = lab.get("service", "web", NS)["spec"]["clusterIP"]
    assert in_client(lab, "dig", "+short", "-x", ip).strip() == f"web.{NS}.svc.cluster.local."
    assert in_client(lab, "dig", "+short", "-x", pods["db-0"]).strip() == f"db-0.{zone}."


def test_new_service_resolves_and_deleted_one_stops_within_a_second(lab):
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: fresh}\nspec: {ports: [{port: 80}]}\n"
    lab.apply(svc, namespace=NS)
    t0 = time.monotonic()
    name = f"fresh.{NS}.svc.cluster.local"
    ip = lab.get("service", "fresh", NS)["spec"]["clusterIP"]
    while in_client(lab, "dig", "+short", "+tries=1", "+time=1", name).strip() != ip:
        assert time.monotonic() - t0 < 1.0, "a new Service took more than a second to resolve"
    lab.kubectl("delete", "service", "fresh", "-n", NS)
    t0 = time.monotonic()
    while "NXDOMAIN" not in in_client(lab, "dig", "+tries=1", "+time=1", name):
        assert time.monotonic() - t0 < 1.0, "a deleted Service kept resolving for more than a second"


def test_conformance_against_the_server_in_the_lab(lab, tmp_path):
    """The conformance table, answered by netlab-dns running as a pod of the lab (kube-dns's image,
    the same Corefile) over a ConfigMap holding the sample state."""
    lab.kubectl("create", "configmap", "dns-state", "-n", NS, f"--from-file=state.yaml={DATA}")
    lab.apply("""
apiVersion: v1
kind: Pod
metadata: {name: dns-sample, labels: {app: dns-sample}}
spec:
  containers:
  - name: coredns
    image: registry.k8s.io/coredns/coredns:v1.11.3
    args: [--state, /etc/sample/state.yaml, --listen, "0.0.0.0:53", --no-http]
    volumeMounts: [{name: state, mountPath: /etc/sample}]
  volumes: [{name: state, configMap: {name: dns-state}}]
""", namespace=NS)
    lab.wait(lambda: lab.get("pod", "dns-sample", NS)["status"].get("phase") == "Running", what="dns-sample")
    server = lab.get("pod", "dns-sample", NS)["status"]["podIP"]
    lab.wait(lambda: "1.1.0" in lab.exec("client", ["dig", f"@{server}", "+short", "TXT", "dns-version.cluster.local"],
                                          namespace=NS).stdout, what="the sample server answering")
    for name, qtype, rcode, want in CONFORMANCE:
        out = in_client(lab, "dig", f"@{server}", name, qtype, "+noall", "+comments", "+answer")
        assert f"status: {rcode}" in out, (name, qtype, out)
        if want is not None:
            got = sorted(" ".join(ln.split()[4:]) for ln in out.splitlines() if ln and not ln.startswith(";"))
            assert got == sorted(want), (name, qtype)
    # and with dnspython, from inside the client pod
    script = (
        "import json, sys, dns.message, dns.query, dns.rcode\n"
        "table, server = json.loads(sys.argv[1]), sys.argv[2]\n"
        "for name, qtype, rcode, want in table:\n"
        "    r = dns.query.udp(dns.message.make_query(name, qtype), server, timeout=2)\n"
        "    got = sorted(x.to_text() for rr in r.answer for x in rr)\n"
        "    if dns.rcode.to_text(r.rcode()) != rcode or (want is not None and got != sorted(want)):\n"
        "        print('MISMATCH', name, qtype, dns.rcode.to_text(r.rcode()), got)\n"
        "print('done')\n")
    out = in_client(lab, sys.executable, "-c", script, json.dumps(CONFORMANCE), server)
    assert out.strip() == "done", out


def test_configmap_change_reaches_the_running_server(lab):
    """The kubelet brings a running pod's configMap volume up to date, and the server's `reload`
    applies the new Corefile (kube-dns's own path when its ConfigMap is edited)."""
    corefile = ".:53 {{\n    kubernetes cluster.local {{\n        ttl {ttl}\n    }}\n    reload 500ms\n}}\n"
    lab.kubectl("create", "configmap", "dns-state-reload", "-n", NS, f"--from-file=state.yaml={DATA}")
    lab.apply(f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: dns-reload}}
data:
  Corefile: {json.dumps(corefile.format(ttl=5))}
---
apiVersion: v1
kind: Pod
metadata: {{name: dns-reload, labels: {{app: dns-reload}}}}
spec:
  containers:
  - name: coredns
    image: registry.k8s.io/coredns/coredns:v1.11.3
    args: [-conf, /etc/coredns/Corefile, --state, /etc/sample/state.yaml, --no-http]
    volumeMounts:
    - {{name: conf, mountPath: /etc/coredns}}
    - {{name: state, mountPath: /etc/sample}}
  volumes:
  - {{name: conf, configMap: {{name: dns-reload}}}}
  - {{name: state, configMap: {{name: dns-state-reload}}}}
""", namespace=NS)
    lab.wait(lambda: lab.get("pod", "dns-reload", NS)["status"].get("phase") == "Running", what="dns-reload")
    server = lab.get("pod", "dns-reload", NS)["status"]["podIP"]

    def ttl() -> str:
        out = lab.exec("client", ["dig", f"@{server}", "+noall", "+answer", "+tries=1", "+time=1",
                                  "web.default.svc.cluster.local"], namespace=NS).stdout.split()
        return out[1] if len(out) > 1 else ""
    lab.wait(lambda: ttl() == "5", what="the first Corefile's ttl")
    lab.kubectl("patch", "configmap", "dns-reload", "-n", NS, "--type=merge",
                "-p", json.dumps({"data": {"Corefile": corefile.format(ttl=23)}}))
    lab.wait(lambda: ttl() == "23", timeout=15, what="the edited Corefile's ttl")
