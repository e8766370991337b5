"""Lab up and down time for 3 and 50 nodes (targets: 3 nodes < 1 s each way; 50 nodes < 10 s).

Baseline, measured in the same run: the same namespaces and node veths made and removed by a
shell script of `ip` commands (what a hand-written lab script does), so the ratio says what
netlab's extra work (bridges, routes, sysctls, supervisor) costs.

    sudo .venv/bin/python bench/up_down.py [--nodes 3 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("NETLAB_STATE_ROOT", tempfile.mkdtemp(prefix="nlt-bench-"))

from netlab.lab import build as lab  # noqa: E402
from netlab.kit.cluster import Cluster  # noqa: E402


def shell_baseline(n: int) -> tuple[float, float]:
    up = ["ip netns add nltb-lab", "ip -n nltb-lab link add br0 type bridge", "ip -n nltb-lab link set br0 up"]
    for i in range(n):
        up += [f"ip netns add nltb-n{i}",
               f"ip -n nltb-lab link add n{i} type veth peer name eth0 netns nltb-n{i}",
               f"ip -n nltb-lab link set n{i} master br0 up",
               f"ip -n nltb-n{i} addr add 172.30.{i // 250}.{i % 250 + 2}/16 dev eth0",
               f"ip -n nltb-n{i} link set eth0 up"]
    down = [f"ip netns del nltb-n{i}" for i in range(n)] + ["ip netns del nltb-lab"]
    t0 = time.perf_counter()
    subprocess.run(["sh", "-ec", "\n".join(up)], check=True)
    t1 = time.perf_counter()
    subprocess.run(["sh", "-ec", "\n".join(down)], check=True)
    return t1 - t0, time.perf_counter() - t1


def netlab_run(n: int) -> tuple[float, float]:
    c = Cluster.default(name="nltbench", nodes=n)
    t0 = time.perf_counter()
    try:
        lab.up(c)
        t1 = time.perf_counter()
    finally:
        t2 = time.perf_counter()
        lab.down(c.name)
    return t1 - t0, time.perf_counter() - t2


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, nargs="+", default=[3, 50])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    targets = {3: 1.0, 50: 10.0}
    print(f"{'nodes':>5} {'what':<8} {'netlab s':>9} {'ip-script s':>12} {'ratio':>6} {'target s':>9}")
    for n in args.nodes:
        ours = [netlab_run(n) for _ in range(args.runs)]
        base = [shell_baseline(n) for _ in range(args.runs)]
        for k, what in enumerate(("up", "down")):
            o = statistics.median(r[k] for r in ours)
            b = statistics.median(r[k] for r in base)
            t = targets.get(n)
            print(f"{n:>5} {what:<8} {o:>9.3f} {b:>12.3f} {o / b:>6.2f} {t if t else '-':>9}"
                  f"{'' if t is None else ('  ok' if o < t else '  MISSED')}")


if __name__ == "__main__":
    main()
