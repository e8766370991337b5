"""API server load: 1,000 pod creates (20 at a time) with 50 watchers on pods, then a full list,
on SQLite and on etcd (Debian's etcd-server, started on loopback): creates per second, p50/p99
create latency, list time, and how long after the last create every watcher had every event.

Baseline, in the same run: the same 1,000 objects written straight into the same store (no HTTP,
no validation), so the ratio is what the API server adds.

Targets: 1,000 creates in < 5 s on SQLite; a mutating call's p99 < 100 ms (the SLO is 1 s).

    .venv/bin/python bench/api_load.py [--pods 1000] [--watchers 50] [--stores sqlite etcd]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("NETLAB_STATE_ROOT", tempfile.mkdtemp(prefix="nlt-bench-"))

from netlab.control.apiserver.store import open_store  # noqa: E402
from netlab.api.client import Client  # noqa: E402
from tests.apikit import ControlPlane, etcd  # noqa: E402


def pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}


async def load(cp: ControlPlane, n: int, watchers: int) -> dict:
    client = Client(cp.url, cp.token, str(cp.cluster.layout.ca_cert))
    seen = [0] * watchers
    done = [asyncio.Event() for _ in range(watchers)]
    rv = (await client.list("pods", "default"))["metadata"]["resourceVersion"]

    async def watch(i: int) -> None:
        async for ev in client.watch("pods", "default", rv, allow_bookmarks=False):
            if ev["type"] == "ADDED":
                seen[i] += 1
                if seen[i] == n:
                    done[i].set()
                    return
    tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
    await asyncio.sleep(0.5)
    sem, lat = asyncio.Semaphore(20), []

    async def create(i: int) -> None:
        async with sem:
            t = time.perf_counter()
            await client.create("pods", pod(i), "default")
            lat.append(time.perf_counter() - t)
    t0 = time.perf_counter()
    await asyncio.gather(*(create(i) for i in range(n)))
    t_created = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in done)), 120)
    t_fanout = time.perf_counter() - t_created
    t = time.perf_counter()
    items = (await client.list("pods", "default"))["items"]
    t_list = time.perf_counter() - t
    for task in tasks:
        task.cancel()
    await client.close()
    lat.sort()
    assert len(items) == n
    return {"total": t_created - t0, "p50": statistics.median(lat), "p99": lat[int(len(lat) * 0.99)],
            "list": t_list, "fanout": t_fanout}


def baseline(store_url: str, n: int) -> float:
    d = tempfile.mkdtemp(prefix="nlt-bench-store-")
    store = open_store(store_url, d)
    t = time.perf_counter()
    for i in range(n):
        store.create(f"/registry/pods/bench/p{i}", pod(i))
    took = time.perf_counter() - t
    store.close()
    return took


def run(store: str, args: argparse.Namespace) -> None:
    with ControlPlane("nltbench-" + store.split(":")[0], store=store) as cp:
        r = asyncio.run(load(cp, args.pods, args.watchers))
    base = baseline(store, args.pods)
    kind = store.split(":")[0]
    print(f"{kind:<7} {args.pods} creates in {r['total']:.2f} s ({args.pods / r['total']:.0f}/s; store alone "
          f"{base:.2f} s, ratio {r['total'] / base:.1f}x); create p50 {r['p50'] * 1000:.1f} ms, "
          f"p99 {r['p99'] * 1000:.1f} ms; list {r['list'] * 1000:.0f} ms; {args.watchers} watchers had every "
          f"event {r['fanout'] * 1000:.0f} ms after the last create")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--watchers", type=int, default=50)
    p.add_argument("--stores", nargs="+", default=["sqlite", "etcd"])
    args = p.parse_args()
    for store in args.stores:
        if store == "etcd":
            with etcd() as url:
                run(url, args)
        else:
            run(store, args)
    print("targets: 1,000 creates < 5 s on SQLite; create p99 < 100 ms")


if __name__ == "__main__":
    main()
