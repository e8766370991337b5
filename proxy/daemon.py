"""The kube-proxy daemon: informers on Services and EndpointSlices; every change asks for a sync,
syncs are at least --iptables-min-sync-period apart (changes in between are batched into one),
a full resync every --iptables-sync-period; /healthz and /metrics as upstream names them."""

from __future__ import annotations

import asyncio
import datetime
import gc
import logging
import subprocess
import time

from aiohttp import web

from netlab.api.client import Client, Informer
from proxy import sync
from proxy.iptables import Config
from proxy.model import ServiceMap

log = logging.getLogger("netlab.proxy")
BUCKETS = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384]


class Histogram:
    def __init__(self, name: str, help_: str):
        self.name, self.help = name, help_
        self.counts = [0] * len(BUCKETS)
        self.sum, self.n = 0.0, 0

    def observe(self, v: float) -> None:
        self.sum += v
        self.n += 1
        for i, b in enumerate(BUCKETS):
            if v <= b:
                self.counts[i] += 1

    def text(self) -> str:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        out += [f'{self.name}_bucket{{le="{b}"}} {c}' for b, c in zip(BUCKETS, self.counts, strict=True)]
        out += [f'{self.name}_bucket{{le="+Inf"}} {self.n}', f"{self.name}_sum {self.sum}", f"{self.name}_count {self.n}"]
        return "\n".join(out)


class Proxy:
    def __init__(self, args, cfg: Config):
        self.args, self.cfg = args, cfg
        self.client = Client.from_kubeconfig(args.kubeconfig)
        self.svcs = Informer(self.client, "services")
        self.slices = Informer(self.client, "endpointslices")
        mode = args.proxy_mode
        cfg.node_ips = cfg.node_ips or sync.node_ips(cfg)
        if mode == "ipvs":
            from proxy import ipvs

            ipvs.require_kernel()
            self.syncer = ipvs.IpvsSyncer(cfg)
        elif mode == "nftables":
            self.syncer = sync.NftablesSyncer(cfg)
        else:
            backend = sync.detect_backend() if args.iptables_backend == "auto" else args.iptables_backend
            log.info("iptables mode, %s backend", backend)
            self.syncer = sync.IptablesSyncer(cfg, backend)
        self.dirty = asyncio.Event()
        self.pending_since: float | None = None  # when the oldest unsynced change arrived
        # upstream's BoundedFrequencyRunner: syncs at most one per min-sync-period on average,
        # with a burst of 2, so a lone change is programmed at once
        self.tokens, self.tokens_at = 2.0, time.monotonic()
        self.last_ok: float | None = None
        self.last_ports: list = []
        self.model = ServiceMap()
        self.sync_hist = Histogram("kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds")
        self.prog_hist = Histogram("kubeproxy_network_programming_duration_seconds",
                                   "In Cluster Network Programming Latency in seconds")
        for inf, note in ((self.svcs, self.model.set_service), (self.slices, self.model.set_slice)):
            inf.add_handler(lambda obj, note=note: self.changed(note, obj),
                            lambda old, new, note=note: self.changed(note, new),
                            lambda obj, note=note: self.changed(note, obj, deleted=True))

    def changed(self, note, obj: dict, deleted: bool = False) -> None:
        note(obj, deleted)
        if self.pending_since is None:
            self.pending_since = time.time()
        self.dirty.set()

    async def run(self) -> None:
        self.prepare_node()
        tasks = [asyncio.create_task(self.svcs.run()), asyncio.create_task(self.slices.run())]
        await self.svcs.wait_synced()
        await self.slices.wait_synced()
        gc.freeze()  # what the informers hold lives on: the collector need not sweep it in every sync
        await self.serve_http()
        log.info("synced informers: %d services, %d endpointslices", len(self.svcs.list()), len(self.slices.list()))
        self.dirty.set()
        next_full = 0.0
        while True:
            # nftables mode deletes the chains it flushed once they are a second old
            wake = min(next_full, self.syncer.stale_due() or next_full)
            try:
                await asyncio.wait_for(self.dirty.wait(), max(0.05, wake - time.monotonic()))
            except asyncio.TimeoutError:
                if time.monotonic() < next_full:
                    await asyncio.to_thread(self.syncer.delete_stale)
                    continue
            # only changes take sync tokens: the periodic resync must not make the next change wait
            wait = self.sync_token_wait() if self.dirty.is_set() else 0.0
            if wait > 0:
                await asyncio.sleep(wait)  # batch what arrives meanwhile
            full = time.monotonic() >= next_full
            self.dirty.clear()
            started = self.pending_since
            self.pending_since = None
            await self.sync(full)
            if full:
                next_full = time.monotonic() + self.args.iptables_sync_period
            if started is not None:
                self.prog_hist.observe(time.time() - started)
            for t in tasks:
                if t.done():
                    t.result()

    def sync_token_wait(self) -> float:
        """Seconds to wait before the next sync may run; takes its token."""
        period = self.args.iptables_min_sync_period
        now = time.monotonic()
        if period <= 0:
            return 0.0
        self.tokens = min(2.0, self.tokens + (now - self.tokens_at) / period)
        self.tokens_at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        wait = (1 - self.tokens) * period
        self.tokens, self.tokens_at = 0.0, now + wait
        return wait

    async def sync(self, full: bool) -> None:
        ports = self.model.take()
        t = time.perf_counter()
        try:
            kind = await asyncio.to_thread(self.syncer.sync, ports, full)
            self.last_ok = time.time()
            log.debug("%s sync of %d service ports", kind, len(ports))
        except sync.SyncError as e:
            log.error("sync failed (retrying with a full sync): %s", e)
            self.dirty.set()
            await asyncio.sleep(1)
            return
        finally:
            self.sync_hist.observe(time.perf_counter() - t)
        await asyncio.to_thread(sync.conntrack_cleanup, self.last_ports, ports)
        self.last_ports = ports

    def prepare_node(self) -> None:
        """What upstream sets on start: route_localnet for NodePorts on 127.0.0.1, and bridged
        traffic through iptables."""
        for key, val in (("net/ipv4/conf/all/route_localnet", "1"), ("net/bridge/bridge-nf-call-iptables", "1")):
            try:
                with open(f"/proc/sys/{key}", "w") as f:
                    f.write(val)
            except OSError as e:
                log.warning("cannot set %s: %s", key, e)
        subprocess.run(["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_tcp_be_liberal=1"], capture_output=True)

    async def serve_http(self) -> None:
        async def healthz(_):
            now = time.time()
            body = {"lastUpdated": _ts(self.last_ok), "currentTime": _ts(now), "nodeEligible": True}
            healthy = self.last_ok is not None and now - self.last_ok < 2 * self.args.iptables_sync_period + 60
            return web.json_response(body, status=200 if healthy else 503)

        async def metrics(_):
            lines = [self.sync_hist.text(), self.prog_hist.text(),
                     "# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds The last time proxy rules were "
                     "successfully synced", "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge",
                     f"kubeproxy_sync_proxy_rules_last_timestamp_seconds {self.last_ok or 0}",
                     "# HELP kubeproxy_sync_proxy_rules_iptables_restore_failures_total Cumulative proxy "
                     "iptables restore failures", "# TYPE kubeproxy_sync_proxy_rules_iptables_restore_failures_total "
                     "counter", f"kubeproxy_sync_proxy_rules_iptables_restore_failures_total "
                     f"{self.syncer.stats['failures']}"]
            return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

        for addr, routes in ((self.args.healthz_bind_address, [("/healthz", healthz), ("/livez", healthz)]),
                             (self.args.metrics_bind_address, [("/metrics", metrics), ("/healthz", healthz)])):
            if not addr:
                continue
            app = web.Application()
            for path, fn in routes:
                app.router.add_get(path, fn)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            host, port = addr.rsplit(":", 1)
            try:
                await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
            except OSError as e:
                log.warning("cannot serve on %s: %s", addr, e)


def _ts(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
