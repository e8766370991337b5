"""Pod startup latency and memory over a 3-node lab: 100 agnhost pods created at once (a burst:
throughput-bound on a small machine), then 100 more at a steady rate (10 pods/s by default, the
pod creation throughput of clusterloader2's load test, with which Kubernetes measures its pod
startup SLO). Each pod is timed from just before its create call to the kubelet reporting it
Ready, its container started, as seen through a watch (the Kubernetes pod startup SLI). Then the
memory of a running pod (PSS of its container and pause processes).

Baseline, in the same run: the same work done by hand for one pod at a time, with no control
plane: a network namespace, the reference CNI plugins (bridge + host-local), the same program
started inside, and its port answering.

Targets: p99 < 1 s (the Kubernetes SLO is 5 s); < 15 MB per pod.

    sudo .venv/bin/python bench/pod_startup.py [--pods 100] [--nodes 3] [--rate 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("NETLAB_STATE_ROOT", tempfile.mkdtemp(prefix="nlt-bench-"))

from netlab.kit import net  # noqa: E402
from netlab.kit.layout import SYSTEM_CNI_BIN  # noqa: E402
from netlab.api.client import Client  # noqa: E402
from netlab.tools.testing import Lab  # noqa: E402
from netlab.node.workloads import argv_for  # noqa: E402

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"
REF = SYSTEM_CNI_BIN


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]}]}}


def ready(p: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])


async def startup(lab: Lab, n: int, prefix: str, rate: float | None = None) -> list[float]:
    """Create n pods, all at once or `rate` per second; their create -> Ready latencies, sorted."""
    created: dict[str, float] = {}
    latency: dict[str, float] = {}
    async with Client.from_kubeconfig(lab.kubeconfig) as client:
        listed = await client.list("pods", "default")
        watch = client.watch("pods", "default", listed["metadata"]["resourceVersion"], label_selector="app=bench")

        async def observe():
            async for ev in watch:
                kind, obj = ev["type"], ev["object"]
                name = obj["metadata"]["name"]
                if kind != "DELETED" and ready(obj) and name in created and name not in latency:
                    latency[name] = time.monotonic() - created[name]
                    if len(latency) == n:
                        return

        watcher = asyncio.create_task(observe())
        start = time.monotonic()

        async def make(i: int):
            if rate:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            created[f"{prefix}-{i}"] = time.monotonic()
            await client.create("pods", pod(f"{prefix}-{i}"), "default")
        await asyncio.gather(*(make(i) for i in range(n)))
        await asyncio.wait_for(watcher, 120)
    return sorted(latency.values())


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def pod_memory(lab: Lab) -> float:
    """Mean PSS (MB) of a pod: its container process and its pause process."""
    total, pods = 0, lab.items("pods", selector="app=bench")
    for p in pods:
        state = json.loads(lab.cluster.layout.node(p["spec"]["nodeName"]).pod(p["metadata"]["uid"]).state.read_text())
        pids = [c["proc"]["pid"] for c in state["containers"].values() if c.get("proc")]
        if state.get("pause"):
            pids.append(state["pause"]["pid"])
        total += sum(pss_kb(pid) for pid in pids)
    return total / len(pods) / 1024


def baseline(runs: int) -> list[float]:
    """One pod at a time by hand: netns, reference bridge + host-local ADD, program, port open."""
    data = tempfile.mkdtemp(prefix="nlt-bench-ipam-")
    conf = json.dumps({"cniVersion": "1.0.0", "name": "nltbench", "type": "bridge", "bridge": "nltbr0",
                       "isGateway": True, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.254.0.0/24"}]],
                                                   "dataDir": data}})
    out = []
    host = "nltbench-host"
    net.ns_create(host)
    try:
        for i in range(runs):
            ns = f"nltbench-p{i}"
            t = time.monotonic()
            net.ns_create(ns)
            env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"c{i}", "CNI_NETNS": f"/run/netns/{ns}",
                   "CNI_IFNAME": "eth0", "CNI_PATH": REF, "PATH": os.environ["PATH"]}
            r = net.run(host, [f"{REF}/bridge"], input=conf, env=env, check=True)
            ip = json.loads(r.stdout)["ips"][0]["address"].split("/")[0]
            proc = net.popen(ns, argv_for(AGNHOST, None, ["netexec", "--http-port=8080"]),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not net.call_in(host, _port_open, ip, 8080):
                time.sleep(0.005)
            out.append(time.monotonic() - t)
            proc.kill()
            proc.wait()
            net.run(host, [f"{REF}/bridge"], input=conf, env={**env, "CNI_COMMAND": "DEL"}, check=False)
            net.ns_delete(ns)
    finally:
        net.ns_delete(host)
    return sorted(out)


def _port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.2):
            return True
    except OSError:
        return False


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=100)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--rate", type=float, default=10, help="pods per second for the steady run")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("the benchmark makes network namespaces: run it with sudo")
    base = baseline(10)
    with Lab("nltbench", nodes=args.nodes, nodeSubnet="172.31.9.0/24", podSubnet="10.209.0.0/16") as lab:
        burst = asyncio.run(startup(lab, args.pods, "burst"))
        time.sleep(5)  # the burst's pods settle
        steady = asyncio.run(startup(lab, args.pods, "steady", args.rate))
        mem = pod_memory(lab)
    b50 = statistics.median(base)
    print(f"baseline (by hand, one pod, no control plane): p50 {b50 * 1000:.0f} ms; "
          f"{args.pods} such pods one after another: {b50 * args.pods:.1f} s")
    for what, lat in ((f"{args.pods} pods at once", burst), (f"{args.pods} pods at {args.rate:g}/s", steady)):
        p50, p99 = statistics.median(lat), pct(lat, 0.99)
        print(f"netlab, {what} over {args.nodes} nodes: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
              f"(p50 ratio {p50 / b50:.1f}x; target p99 < 1 s)")
    print(f"memory per pod (PSS of container + pause): {mem:.1f} MB (target < 15 MB)")


if __name__ == "__main__":
    main()
