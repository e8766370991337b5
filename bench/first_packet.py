"""First-packet latency to a ClusterIP with many Services: iptables mode walks KUBE-SERVICES, a
list with a rule per Service port, for every new connection; nftables mode looks the destination
up in a verdict map. This is why nftables mode exists; here it is measured.

In namespaces of its own: a node with N Services programmed by netlab's kube-proxy syncers (the
one under test is the last in KUBE-SERVICES), a pod behind a veth serving TCP; from the node, 300
new connections to the Service's ClusterIP, timed from connect() to the answer's first byte.
Baseline, in the same run: the same connections straight to the pod's IP, before any rule.

    sudo .venv/bin/python bench/first_packet.py [--services 1000 10000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netlab.kit import net  # noqa: E402
from proxy.config import Config  # noqa: E402
from proxy.iptables_sync import IptablesSyncer, detect_backend  # noqa: E402
from proxy.nftables_sync import NftablesSyncer  # noqa: E402
from proxy.model import service_ports  # noqa: E402

NODE, POD = "nltfp-node", "nltfp-pod"
POD_IP = "10.0.0.2"
CFG = Config(node_name="n1", cluster_cidr="10.0.0.0/8")


def services(n: int) -> list:
    svcs, slices = [], []
    for i in range(n):
        name = f"s{i:05d}"  # the last one sorts last: the end of KUBE-SERVICES
        ip = f"172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}"
        ep = POD_IP if i == n - 1 else f"10.1.{i // 256 % 256}.{i % 256}"
        svcs.append({"metadata": {"name": name, "namespace": "bench"},
                     "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}})
        slices.append({"metadata": {"name": f"{name}-1", "namespace": "bench",
                                    "labels": {"kubernetes.io/service-name": name}},
                       "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
                       "endpoints": [{"addresses": [ep]}]})
    return service_ports(svcs, slices)


def connect_times(ip: str, port: int, n: int = 300) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        with socket.create_connection((ip, port), timeout=2) as s:
            s.recv(1)
        out.append(time.perf_counter() - t)
    return sorted(out)


def measure(mode: str, n: int) -> tuple[float, float, float]:
    ports = services(n)
    target = ports[-1].cluster_ip
    syncer = NftablesSyncer(CFG) if mode == "nftables" else IptablesSyncer(CFG, detect_backend())
    direct = connect_times(POD_IP, 8080)  # before any rule: the baseline
    syncer.sync(ports, full=True)
    try:
        lat = connect_times(target, 80)
    finally:
        syncer.cleanup()
    return statistics.median(direct), statistics.median(lat), lat[int(len(lat) * 0.99)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, nargs="+", default=[1000, 10000])
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("the benchmark makes namespaces and netfilter rules: run it with sudo")
    net.ns_create(NODE)
    net.ns_create(POD)
    server = None
    try:
        net.veth(NODE, "vpod", POD, "eth0")
        net.addr_add(NODE, "vpod", "10.0.0.1/24")
        net.addr_add(POD, "eth0", f"{POD_IP}/24")
        net.route_add(POD, "default", via="10.0.0.1")
        net.route_add(NODE, "default", via=POD_IP)  # a route to look up before nat OUTPUT rewrites it
        server = net.popen(POD, [sys.executable, "-c", (
            "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            "s.bind(('0.0.0.0',8080));s.listen(512)\nwhile True:\n c,_=s.accept();c.sendall(b'x');c.close()")])
        time.sleep(0.3)
        print(f"{'mode':<10}{'services':>9}{'direct p50':>12}{'via ClusterIP p50':>19}{'p99':>9}{'added':>9}")
        for mode in ("iptables", "nftables"):
            for n in args.services:
                direct, p50, p99 = net.call_in(NODE, measure, mode, n)
                print(f"{mode:<10}{n:>9}{direct * 1e6:>10.0f}us{p50 * 1e6:>17.0f}us{p99 * 1e6:>7.0f}us"
                      f"{(p50 - direct) * 1e6:>7.0f}us")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        net.ns_delete(POD)
        net.ns_delete(NODE)


if __name__ == "__main__":
    main()
