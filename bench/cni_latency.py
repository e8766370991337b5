"""CNI ADD and DEL latency, p50 and p99 over N runs: netlab-bridge + netlab-ipam (with the node's
CNI agent running, as in a lab, and without it) against the reference bridge + host-local,
measured in the same run on the same machine. Target: ours <= 2x the reference's p50.

    sudo .venv/bin/python bench/cni_latency.py [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netlab.kit import net  # noqa: E402
from netlab.kit.layout import SYSTEM_CNI_BIN  # noqa: E402
from netlab.lab import build as lab  # noqa: E402

NODE = "nltbc-node"


def conf(kind: str, data_dir: str, agent: str | None) -> dict:
    if kind == "reference":
        return {"cniVersion": "1.0.0", "name": "ref", "type": "bridge", "bridge": "cni1", "isDefaultGateway": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.251.0.0/24"}]], "dataDir": data_dir}}
    c = {"cniVersion": "1.1.0", "name": "ours", "type": "netlab-bridge", "bridge": "cni0", "isDefaultGateway": True,
         "ipam": {"type": "netlab-ipam", "ranges": [[{"subnet": "10.250.0.0/24"}]], "dataDir": data_dir}}
    if agent:
        c["agent"] = agent
    return c


def call(exe: str, command: str, config: dict, cid: str, netns: str, path: str) -> float:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": f"/run/netns/{netns}", "CNI_IFNAME": "eth0",
           "CNI_PATH": path, "PATH": os.environ["PATH"]}
    t = time.perf_counter()
    p = net.popen(NODE, [exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    out, _ = p.communicate(json.dumps(config).encode())
    took = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{exe} {command} failed: {out.decode()}")
    return took


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nltbc-"))
    bin_dir = tmp / "bin"
    lab.write_cni_launchers(bin_dir)
    path = f"{bin_dir}:{SYSTEM_CNI_BIN}"
    sock = str(tmp / "agent.sock")
    net.ns_create(NODE, net.NODE_SYSCTLS)
    agent = net.popen(NODE, [sys.executable, "-m", "cni.agent", "--socket", sock])
    pods = [f"nltbc-p{i}" for i in range(args.runs)]
    try:
        for ns in pods:
            net.ns_create(ns, net.POD_SYSCTLS)
        while not os.path.exists(sock):
            time.sleep(0.05)
        cases = [("netlab + agent", str(bin_dir / "netlab-bridge"), conf("ours", str(tmp / "ipam"), sock)),
                 ("netlab, no agent", str(bin_dir / "netlab-bridge"), conf("ours", str(tmp / "ipam"), None)),
                 ("reference", "/usr/lib/cni/bridge", conf("reference", str(tmp / "ipam"), None))]
        results = {}
        for name, exe, c in cases:
            runs = args.runs if "no agent" not in name else min(args.runs, 30)
            adds = [call(exe, "ADD", c, f"c{i}", pods[i], path) for i in range(runs)]
            dels = [call(exe, "DEL", c, f"c{i}", pods[i], path) for i in range(runs)]
            results[name] = (adds, dels)
        ref_add, ref_del = (pct(x, 0.5) for x in results["reference"])
        print(f"{'plugin':<18} {'ADD p50':>8} {'ADD p99':>8} {'DEL p50':>8} {'DEL p99':>8} "
              f"{'ADD/ref':>8} {'DEL/ref':>8}   (ms, {args.runs} runs)")
        for name, (adds, dels) in results.items():
            print(f"{name:<18} {pct(adds, .5):>8.1f} {pct(adds, .99):>8.1f} {pct(dels, .5):>8.1f} "
                  f"{pct(dels, .99):>8.1f} {pct(adds, .5) / ref_add:>8.2f} {pct(dels, .5) / ref_del:>8.2f}")
    finally:
        agent.kill()
        agent.wait()
        for ns in pods + [NODE]:
            net.ns_delete(ns)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
