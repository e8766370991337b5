"""NetworkPolicy: programming latency and first-packet cost.

1. Programming latency, in a 3-node lab: a pod's labels change (it becomes, then stops being, a
   peer of a policy that selects a pod on every node) -> the policy's peer set holds its address,
   or no longer does, on every node; polled every few milliseconds, over 100 changes. As for
   Services (bench/programming_latency.py), the target is p99 < 0.5 s.

2. First-packet cost, in namespaces of its own: a client routed through a node to a pod of that
   node; 300 new connections timed from connect() to the answer's first byte, through the node's
   forward hook. In the same run: no policy (the baseline), a policy whose one rule allows 1,000
   peer pods (one set lookup), and the same 1,000 peers as ipBlocks (1,000 rules, walked in order:
   what sets avoid). The ratio to the baseline is printed.

    sudo .venv/bin/python bench/netpol_latency.py [--changes 100] [--peers 1000] [--skip-lab]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("NETLAB_STATE_ROOT", tempfile.mkdtemp(prefix="nlt-bench-"))

from netlab.api.client import Client  # noqa: E402
from netlab.kit import net  # noqa: E402
from netlab.tools.testing import Lab  # noqa: E402
from netpol import render, sync  # noqa: E402

NS = "npbench"
SET = ["nft", "list", "set", "inet", render.TABLE, f"ingress-{NS}/db-from-clients/0/0"]


def on_every_node(lab: Lab, ip: str, present: bool) -> None:
    pending = {n.netns for n in lab.cluster.nodes}
    while pending:
        for ns in list(pending):
            if (f" {ip} " in net.run(ns, SET, check=False).stdout.replace("{", " ").replace("}", " ")
                    .replace(",", " ")) == present:
                pending.discard(ns)
        if pending:
            time.sleep(0.003)


def set_up(lab: Lab) -> str:
    """A pod `db-<node>` on every node, a pod `peer`, and a policy letting role=client into the
    db pods; the peer's address."""
    tolerate = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]
    lab.kubectl("create", "namespace", NS)
    docs = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"db-{node.name}", "namespace": NS,
                                                               "labels": {"app": "db"}},
             "spec": {"nodeSelector": {"kubernetes.io/hostname": node.name}, "tolerations": tolerate,
                      "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9"}]}}
            for node in lab.cluster.nodes]
    docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "peer", "namespace": NS},
                 "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9"}]}})
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "db-from-clients", "namespace": NS},
                 "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                          "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}})
    lab.kubectl("apply", "-f", "-", input="\n".join(json.dumps(d) for d in docs))
    lab.wait_ready("app=db", namespace=NS, count=len(lab.cluster.nodes), timeout=90)
    return lab.wait(lambda: (lab.get("pod", "peer", NS).get("status") or {}).get("podIP"), timeout=60,
                    what="pod peer has an address")


async def label_changes(lab: Lab, peer: str, n: int) -> list[float]:
    """Latency of `n` label changes of pod `peer`, seen on every node."""
    out = []
    async with Client.from_kubeconfig(lab.kubeconfig) as c:
        await asyncio.to_thread(on_every_node, lab, peer, False)
        for i in range(n):
            client = i % 2 == 0
            cur = await c.get("pods", "peer", NS)
            labels = dict(cur["metadata"].get("labels") or {})
            if client:
                labels["role"] = "client"
            else:
                labels.pop("role", None)
            cur["metadata"]["labels"] = labels
            t = time.monotonic()
            await c.update("pods", cur)
            await asyncio.to_thread(on_every_node, lab, peer, client)
            out.append(time.monotonic() - t)
            await asyncio.sleep(0.5)  # changes apart: each is a lone change, programmed at once
    return sorted(out)


# --- first packet ------------------------------------------------------------------------------

NODE, POD, CLIENT = "nltnpb-node", "nltnpb-pod", "nltnpb-client"
POD_IP, CLIENT_IP = "10.0.0.2", "10.0.1.2"


def objects(peers: int, blocks: bool) -> tuple[list, list, list]:
    """A pod db on node n1, `peers` client pods elsewhere (the last one is the real client), and a
    policy letting them in: by a label (one set) or by `peers` ipBlocks (one rule each)."""
    def pod(name, ip, node, labels):
        return {"metadata": {"namespace": "bench", "name": name, "labels": labels},
                "spec": {"nodeName": node}, "status": {"phase": "Running", "podIP": ip}}
    ips = [f"10.2.{i // 250}.{1 + i % 250}" for i in range(peers - 1)] + [CLIENT_IP]
    pods = [pod("db", POD_IP, "n1", {"app": "db"})] + [pod(f"c{i}", ip, "n2", {"role": "client"})
                                                      for i, ip in enumerate(ips)]
    peer_list = ([{"ipBlock": {"cidr": f"{ip}/32"}} for ip in ips] if blocks
                 else [{"podSelector": {"matchLabels": {"role": "client"}}}])
    pol = {"metadata": {"namespace": "bench", "name": "db"},
           "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": peer_list}]}}
    return [pol], pods, [{"metadata": {"name": "bench"}}]


def connect_times(n: int = 300) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        with socket.create_connection((POD_IP, 8080), timeout=2) as s:
            s.recv(1)
        out.append(time.perf_counter() - t)
    return sorted(out)


def first_packet(peers: int) -> None:
    for ns in (NODE, POD, CLIENT):
        net.ns_create(ns)
    server = None
    try:
        net.sysctl(NODE, {"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0})
        net.veth(NODE, "vpod", POD, "eth0")
        net.veth(NODE, "vcli", CLIENT, "eth0")
        net.addr_add(NODE, "vpod", "10.0.0.1/24")
        net.addr_add(NODE, "vcli", "10.0.1.1/24")
        net.addr_add(POD, "eth0", f"{POD_IP}/24")
        net.addr_add(CLIENT, "eth0", f"{CLIENT_IP}/24")
        net.route_add(POD, "default", via="10.0.0.1")
        net.route_add(CLIENT, "default", via="10.0.1.1")
        server = net.popen(POD, [sys.executable, "-c", (
            "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            "s.bind(('0.0.0.0',8080));s.listen(512)\nwhile True:\n c,_=s.accept();c.sendall(b'x');c.close()")])
        time.sleep(0.3)
        net.call_in(CLIENT, connect_times, 50)  # warm up
        rows = [("no policy", net.call_in(CLIENT, connect_times))]
        for label, blocks in ((f"{peers} peers, one set", False), (f"{peers} peers as ipBlocks", True)):
            text = render.render(*objects(peers, blocks), "n1", "10.0.0.0/24")
            net.call_in(NODE, sync.Syncer().sync, text)
            try:
                rows.append((label, net.call_in(CLIENT, connect_times)))
            finally:
                net.call_in(NODE, sync.Syncer().cleanup)
        base = statistics.median(rows[0][1])
        print("\nfirst packet, client -> node (forward) -> pod, 300 new connections each:")
        print(f"{'':<26}{'p50':>9}{'p99':>9}{'ratio p50':>11}")
        for label, lat in rows:
            p50 = statistics.median(lat)
            print(f"{label:<26}{p50 * 1e6:>7.0f}us{lat[int(len(lat) * 0.99)] * 1e6:>7.0f}us{p50 / base:>10.2f}x")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        for ns in (CLIENT, POD, NODE):
            net.ns_delete(ns)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--changes", type=int, default=100)
    p.add_argument("--peers", type=int, default=1000)
    p.add_argument("--skip-lab", action="store_true", help="only the first-packet part (no lab)")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("the benchmark makes a lab and namespaces: run it with sudo")
    if not args.skip_lab:
        with Lab("nltnpbench", nodes=3) as lab:
            lat = asyncio.run(label_changes(lab, set_up(lab), args.changes))
        p50, p95, p99 = statistics.median(lat), lat[int(len(lat) * 0.95)], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"{args.changes} pod label changes -> the policy's peer set on all 3 nodes: p50 {p50 * 1000:.0f} ms, "
              f"p95 {p95 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms (target p99 < 500 ms)")
    first_packet(args.peers)


if __name__ == "__main__":
    main()
