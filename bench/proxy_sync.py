"""kube-proxy sync cost: a full sync of 1k, 5k and 10k Services (3 endpoints each) against the
raw restore of the same rules (`iptables-restore` / `nft -f` alone, in the same run): the first
full sync, which renders everything, and the periodic full resync (--iptables-sync-period), which
rewrites everything but renders only what changed; and a change to one Service (a partial sync).
Runs in a namespace of its own.

Targets: full sync <= 1.3x the raw restore of the same rules; one Service changed in a
10k-Service cluster programmed in < 100 ms.

    sudo .venv/bin/python bench/proxy_sync.py [--sizes 1000 5000 10000] [--modes iptables nftables]
                                              [--backend legacy|nft] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netlab.kit import net  # noqa: E402
from proxy import iptables_render as iptables  # noqa: E402
from proxy import nftables_render as nftables  # noqa: E402
from proxy.config import Config  # noqa: E402
from proxy.iptables_sync import IptablesSyncer  # noqa: E402
from proxy.nftables_sync import NftablesSyncer  # noqa: E402
from proxy.syncer import Runner  # noqa: E402
from proxy.model import ServiceMap, service_ports  # noqa: E402

CFG = Config(node_name="n1", cluster_cidr="10.0.0.0/8", service_cidrs=["172.16.0.0/12"],
             node_ips=["192.168.0.2"])


def cluster(n: int, changed: int | None = None) -> tuple[list, list]:
    """Services and EndpointSlices as the informers hold them (resourceVersions included)."""
    svcs, slices = [], []
    for i in range(n):
        ip = f"172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}"
        svcs.append({"metadata": {"name": f"s{i}", "namespace": "bench", "resourceVersion": str(i + 1)},
                     "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}})
        eps = [f"10.{i // 65536 + 1}.{i // 256 % 256}.{i % 256 // 64 * 64 + k}" for k in range(3)]
        if i == changed:
            eps[0] = "10.255.255.254"
        slices.append({"metadata": {"name": f"s{i}-1", "namespace": "bench",
                                    "resourceVersion": str(n + i + 1 + (n if i == changed else 0)),
                                    "labels": {"kubernetes.io/service-name": f"s{i}"}},
                       "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
                       "endpoints": [{"addresses": [a]} for a in eps]})
    return svcs, slices


def settle(limit: float = 30.0) -> None:
    """Wait until the CPUs are idle: the kernel frees a deleted nftables table in the background,
    and a measurement started meanwhile would pay for it."""
    def busy_idle() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v) - v[3] - v[4], v[3] + v[4]
    end = time.monotonic() + limit
    while time.monotonic() < end:
        b0, i0 = busy_idle()
        time.sleep(0.5)
        b1, i1 = busy_idle()
        if (b1 - b0) <= 0.1 * max(1, (b1 - b0) + (i1 - i0)):
            return


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def informed(n: int) -> tuple[ServiceMap, dict]:
    """The model as the daemon's informers fill it, and the one EndpointSlice that then changes
    (an endpoint replaced)."""
    model = ServiceMap()
    svcs, slices = cluster(n)
    for o in svcs:
        model.set_service(o)
    for o in slices:
        model.set_slice(o)
    gc.freeze()  # as the daemon does once its informers have synced
    return model, cluster(n, changed=n // 2)[1][n // 2]


def run_iptables(n: int, backend: str) -> tuple[float, ...]:
    model, change = informed(n)
    s = IptablesSyncer(CFG, backend)
    rs = iptables.render(service_ports(*cluster(n)), CFG)
    text = iptables.restore_text(rs, "filter") + iptables.restore_text(rs, "nat")
    raw = timed(lambda: Runner().run([s.tool("iptables-restore"), "-w", "5", "--noflush"], text))
    s.cleanup()
    # what the daemon does on each sync: the model updated from the informers' events, then the sync
    full = timed(lambda: s.sync(model.take(), full=True))
    partial = timed(lambda: (model.set_slice(change), s.sync(model.take())))
    resync = timed(lambda: s.sync(model.take(), full=True))
    # a resync's floor: the same whole text restored onto the tables as they are, full
    raw_onto = timed(lambda: Runner().run([s.tool("iptables-restore"), "-w", "5", "--noflush"], s.last_text))
    # the floor of a partial sync: the tool alone applying the change back (text made beforehand)
    new, old = iptables.render(service_ports(*cluster(n)), CFG), s.applied
    texts = []
    for table in ("filter", "nat"):
        o, n_ = old.tables()[table], new.tables()[table]
        changed = {c for c, rules in n_.chains.items() if o.chains.get(c) != rules}
        texts.append(iptables.restore_text(new, table, changed, set(o.chains) - set(n_.chains)))
    raw_partial = timed(lambda: Runner().run([s.tool("iptables-restore"), "-w", "5", "--noflush"], "".join(texts)))
    s.cleanup()
    return raw, full, raw_onto, resync, partial, raw_partial, None


def run_nftables(n: int) -> tuple[float, ...]:
    model, change = informed(n)
    text = nftables.transaction(nftables.render(service_ports(*cluster(n)), CFG), None).text
    settle()
    raw = timed(lambda: Runner().run(["nft", "-f", "-"], text))
    subprocess.run(["nft", "delete", "table", "ip", nftables.TABLE], capture_output=True)
    s = NftablesSyncer(CFG)
    settle()
    full = timed(lambda: s.sync(model.take(), full=True))
    settle()
    partial = timed(lambda: (model.set_slice(change), s.sync(model.take())))
    time.sleep(s.STALE_DELAY)
    later = timed(s.delete_stale)  # the chain the change left, deleted a second later (as upstream)
    settle()
    resync = timed(lambda: s.sync(model.take(), full=True))
    settle()
    raw_onto = timed(lambda: Runner().run(["nft", "-f", "-"], s.last_text))  # a resync's floor
    # the floor of a partial sync: nft alone applying the change back (text made beforehand)
    text = nftables.transaction(nftables.render(service_ports(*cluster(n)), CFG), s.applied).text
    settle()
    raw_partial = timed(lambda: Runner().run(["nft", "-f", "-"], text))
    s.cleanup()
    return raw, full, raw_onto, resync, partial, raw_partial, later


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    p.add_argument("--modes", nargs="+", default=["iptables", "nftables"])
    p.add_argument("--backend", default="legacy", choices=["legacy", "nft"],
                   help="iptables backend (iptables-nft takes minutes at 10k Services)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each size, medians printed (nftables mode "
                                                         "at 10k Services takes ~8 minutes a run)")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("the benchmark programs netfilter in a namespace of its own: run it with sudo")
    ns = "nltbench-proxy"
    net.ns_create(ns)
    try:
        print(f"{'':<27}{'--- first full sync ---':>31}{'--- periodic resync ---':>31}{'--- one change ---':>32}")
        print(f"{'mode':<18}{'services':>9}{'raw restore':>13}{'sync':>10}{'ratio':>8}{'raw onto full':>15}{'sync':>9}"
              f"{'ratio':>7}{'sync':>10}{'tool alone':>12}{'later':>10}")
        for mode in args.modes:
            for n in args.sizes:
                label = f"iptables-{args.backend}" if mode == "iptables" else "nftables"
                runs = [net.call_in(ns, run_iptables, n, args.backend) if mode == "iptables"
                        else net.call_in(ns, run_nftables, n) for _ in range(args.repeat)]
                raw, full, onto, resync, partial, floor, later = (
                    statistics.median(col) if None not in col else None for col in zip(*runs, strict=True))
                # each ratio is the median of the runs' own ratios (the machine's speed drifts between runs)
                ratio = statistics.median(r[1] / r[0] for r in runs)
                reratio = statistics.median(r[3] / r[2] for r in runs)
                print(f"{label:<18}{n:>9}{raw:>12.2f}s{full:>9.2f}s{ratio:>7.2f}x{onto:>14.2f}s{resync:>8.2f}s"
                      f"{reratio:>6.2f}x{partial * 1000:>8.0f}ms{floor * 1000:>10.0f}ms"
                      + (f"{later * 1000:>8.0f}ms" if later is not None else f"{'-':>10}"))
    finally:
        net.ns_delete(ns)
    print("targets: full sync <= 1.3x the raw restore of the same rules (a resync: onto the full tables, as it "
          "finds them); one change < 100 ms ('tool alone': iptables-restore or nft applying a one-change update by "
          "itself, the floor any sync pays; 'later': nftables mode deletes the chains a change left a second later, "
          "in a transaction of its own, as upstream does)")


if __name__ == "__main__":
    main()
