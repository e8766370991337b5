"""Ingress throughput, latency and programming latency in a 3-node lab, through ingress-nginx
(examples/ingress-nginx.yaml) to 3 agnhost pods.

1. Requests per second and p99 latency (ApacheBench, keep-alive, --concurrency clients):
   - "controller": the controller's nginx, with the configuration it rendered from an Ingress;
   - "by hand": the same Debian nginx started beside it in the same pod's network namespace with a
     configuration a user would write by hand (one upstream of the same 3 pod addresses, proxy_pass,
     an access log), in the same run; the ratio controller / by hand is the number (target: >= 0.9).
   Both are asked from inside the controller pod's network namespace, so the client and the path to
   the pods are the same and only the proxy's configuration differs; the controller is also asked
   from the outside through its LoadBalancer address (the whole path: ARP, kube-proxy, nginx).
2. Programming latency, p50/p99 (target p99 < 1 s), polled from the outside with curl:
   - Ingress change -> routed: a new Ingress for a new host is created, until the host answers;
   - endpoint change -> routed: the EndpointSlice of a selectorless Service behind an Ingress is
     switched to another pod, until the answers come from that pod.

    sudo .venv/bin/python bench/ingress.py [--requests 20000] [--concurrency 16] [--changes 30]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("NETLAB_STATE_ROOT", tempfile.mkdtemp(prefix="nlt-bench-"))

from netlab.kit import net  # noqa: E402
from netlab.tools.testing import Lab  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NS = "bench"
HOST = "bench.example"
BACKENDS = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: agnhost, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec, --http-port=8080]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: manual, namespace: {NS}}}
spec:
  ports: [{{name: http, port: 80}}]
"""


def ingress(name: str, host: str, service: str) -> str:
    return f"""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: {NS}}}
spec:
  ingressClassName: nginx
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}
"""


HAND = """daemon on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log {tmp}/access.log;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp};
  scgi_temp_path {tmp};
  upstream web {{ {servers} }}
  server {{
    listen 8081;
    server_name {host};
    location / {{ proxy_pass http://web; proxy_set_header Host $host; proxy_http_version 1.1; }}
  }}
}}
"""


def ab(ns: str, url: str, n: int, c: int) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) of ApacheBench against url, from netns ns."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as pct:
        r = net.run(ns, ["ab", "-q", "-k", "-n", str(n), "-c", str(c), "-H", f"Host: {HOST}", "-e", pct.name, url],
                    check=True, timeout=600)
        rps = float(re.search(r"Requests per second:\s+([\d.]+)", r.stdout).group(1))
        failed = int(re.search(r"Failed requests:\s+(\d+)", r.stdout).group(1))
        non2xx = re.search(r"Non-2xx responses:\s+(\d+)", r.stdout)
        if failed or non2xx:
            sys.exit(f"ab against {url}: {failed} failed, {non2xx.group(1) if non2xx else 0} non-2xx\n{r.stdout}")
        rows = {int(float(a)): float(b) for a, b in list(csv.reader(io.StringIO(Path(pct.name).read_text())))[1:]}
    return rps, rows[99]


def outside_get(lab: Lab, ip: str, host: str, path: str = "/hostname") -> str:
    r = lab.outside_exec(["curl", "-s", "-m", "1", "--resolve", f"{host}:80:{ip}", f"http://{host}{path}"])
    return r.stdout.strip()


def until(pred, timeout: float = 10) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("not routed within 10 s")
        time.sleep(0.005)
    return time.monotonic() - t0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--changes", type=int, default=30)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("the benchmark makes a lab: run it with sudo")
    with Lab("nltbenchi", nodes=3, nodeSubnet="172.31.11.0/24", podSubnet="10.211.0.0/16") as lab:
        lab.kubectl("create", "namespace", NS)
        lab.apply(ROOT / "examples" / "ingress-nginx.yaml")
        lab.kubectl("apply", "-f", "-", input=BACKENDS)
        ctl = lab.wait_ready("app.kubernetes.io/component=controller", namespace="ingress-nginx", count=1)[0]
        pods = lab.wait_ready("app=web", namespace=NS, count=3)
        svc = lab.wait(lambda: (lab.get("service", "ingress-nginx-controller", "ingress-nginx").get("status") or {})
                       .get("loadBalancer", {}).get("ingress"), what="the LoadBalancer address")
        ip = svc[0]["ip"]
        lab.kubectl("apply", "-f", "-", input=ingress("web", HOST, "web"))
        until(lambda: outside_get(lab, ip, HOST) in {q["metadata"]["name"] for q in pods}, 30)
        ns = lab.pod_netns(ctl, "ingress-nginx")
        pod_ip = ctl["status"]["podIP"]

        # 1. throughput and p99: the controller's nginx vs the same nginx configured by hand
        with tempfile.TemporaryDirectory(prefix="nlt-hand-") as tmp:
            servers = " ".join(f"server {q['status']['podIP']}:8080;" for q in pods)
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(HAND.format(tmp=tmp, servers=servers, host=HOST))
            net.run(ns, ["nginx", "-c", str(conf)], check=True)
            try:
                ab(ns, f"http://{pod_ip}:80/echo?msg=warm", 2000, args.concurrency)  # warm both up
                ab(ns, f"http://{pod_ip}:8081/echo?msg=warm", 2000, args.concurrency)
                results = {"controller": [], "by hand": []}
                for _ in range(3):  # interleaved, so that the machine's load hits both alike
                    results["controller"].append(ab(ns, f"http://{pod_ip}:80/echo?msg=x", args.requests,
                                                    args.concurrency))
                    results["by hand"].append(ab(ns, f"http://{pod_ip}:8081/echo?msg=x", args.requests,
                                                 args.concurrency))
                outside = ab(lab.outside_netns, f"http://{ip}/echo?msg=x", args.requests, args.concurrency)
            finally:
                net.run(ns, ["nginx", "-c", str(conf), "-s", "quit"], check=False)
        best = {k: (max(r for r, _ in v), statistics.median(p for _, p in v)) for k, v in results.items()}
        for k, (rps, p99) in best.items():
            print(f"{k:>10}: {rps:8.0f} req/s, p99 {p99:5.1f} ms (best of 3 runs of {args.requests}, "
                  f"{args.concurrency} clients, keep-alive; from the controller pod's netns)")
        print(f"   outside: {outside[0]:8.0f} req/s, p99 {outside[1]:5.1f} ms (the controller through its "
              "LoadBalancer address)")
        ratio = best["controller"][0] / best["by hand"][0]
        print(f"ratio controller / by hand: {ratio:.2f} req/s, p99 {best['controller'][1] / best['by hand'][1]:.2f}x "
              f"(target: within 10%)")

        # 2. programming latency, Ingress change -> routed
        ing = []
        for i in range(args.changes):
            host = f"new{i}.example"
            t0 = time.monotonic()
            lab.apply(ingress(f"new{i}", host, "web"))
            until(lambda h=host: outside_get(lab, ip, h) in {q["metadata"]["name"] for q in pods})
            ing.append(time.monotonic() - t0)
            lab.kubectl("delete", "ingress", f"new{i}", "-n", NS)
        # endpoint change -> routed
        lab.kubectl("apply", "-f", "-", input=ingress("manual", "manual.example", "manual"))
        eps = []
        for i in range(args.changes + 1):
            target = pods[i % 3]
            slice_ = f"""
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: manual-1, namespace: {NS}, labels: {{kubernetes.io/service-name: manual}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints: [{{addresses: ["{target['status']['podIP']}"], conditions: {{ready: true}}}}]
"""
            t0 = time.monotonic()
            lab.apply(slice_)
            until(lambda t=target: outside_get(lab, ip, "manual.example") == t["metadata"]["name"])
            if i:  # the first one makes the route
                eps.append(time.monotonic() - t0)
            time.sleep(0.2)
        for what, xs in (("Ingress created -> routed", ing), ("EndpointSlice changed -> routed", eps)):
            print(f"{what}: p50 {statistics.median(xs) * 1000:.0f} ms, p99 {pct(xs, 0.99) * 1000:.0f} ms, "
                  f"max {max(xs) * 1000:.0f} ms over {len(xs)} (target p99 < 1 s; from before the API write)")
        lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)


if __name__ == "__main__":
    main()
