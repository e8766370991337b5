"""The kube-proxy daemon: informers on Services and EndpointSlices; every change asks the sync
runner for a sync, as upstream's proxier does (a BoundedFrequencyRunner: syncs at least
--iptables-min-sync-period apart on average with a burst of 2, so a lone change is programmed at
once and a burst is batched; a full resync every --iptables-sync-period); /healthz and /metrics
as upstream names them, and the Services' health-check node ports (proxy/healthcheck.py)."""

from __future__ import annotations

import asyncio
import datetime
import gc
import logging
import time

from aiohttp import web

from netlab.api.client import Client, Informer
from netlab.kit import serving
from netlab.kit.metrics import Registry, exponential_buckets
from netlab.kit.runner import BoundedFrequencyRunner
from proxy import conntrack, modes, node
from proxy.config import Config
from proxy.healthcheck import ServiceHealthServer
from proxy.model import ServiceMap
from proxy.syncer import SyncError

log = logging.getLogger("netlab.proxy")
BUCKETS = exponential_buckets(0.001, 2, 15)
BURST_SYNCS = 2  # upstream's burstSyncs
RETRY_AFTER_FAILURE = 1.0


class Metrics:
    """kube-proxy's metric names (pkg/proxy/metrics)."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.sync = self.registry.histogram("kubeproxy_sync_proxy_rules_duration_seconds",
                                            "SyncProxyRules latency in seconds", BUCKETS)
        self.programming = self.registry.histogram("kubeproxy_network_programming_duration_seconds",
                                                   "In Cluster Network Programming Latency in seconds", BUCKETS)
        self.last = self.registry.gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                                        "The last time proxy rules were successfully synced")
        self.failures = self.registry.counter("kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
                                              "Cumulative proxy iptables restore failures")


class Proxy:
    def __init__(self, args, cfg: Config):
        self.args, self.cfg = args, cfg
        self.client = Client.from_kubeconfig(args.kubeconfig)
        self.svcs = Informer(self.client, "services")
        self.slices = Informer(self.client, "endpointslices")
        cfg.node_ips = cfg.node_ips or node.node_ips(cfg)
        self.syncer = modes.syncer(args.proxy_mode, cfg, args.iptables_backend)
        self.runner = BoundedFrequencyRunner("sync-runner", self.sync_proxy_rules, args.iptables_min_sync_period,
                                             max(args.iptables_sync_period, args.iptables_min_sync_period),
                                             BURST_SYNCS)
        self.pending_since: float | None = None  # when the oldest unsynced change arrived
        self.next_full = 0.0                     # when the next sync is a full one (time.monotonic)
        self.last_ok: float | None = None
        self.last_ports: list = []
        self.model = ServiceMap()
        self.metrics = Metrics()
        self.health = ServiceHealthServer(cfg.node_name, self.healthy)  # the healthCheckNodePorts
        for inf, note in ((self.svcs, self.model.set_service), (self.slices, self.model.set_slice)):
            inf.add_handler(lambda obj, note=note: self.changed(note, obj),
                            lambda old, new, note=note: self.changed(note, new),
                            lambda obj, note=note: self.changed(note, obj, deleted=True))

    def changed(self, note, obj: dict, deleted: bool = False) -> None:
        note(obj, deleted)
        if self.pending_since is None:
            self.pending_since = time.time()
        self.runner.run()

    async def run(self) -> None:
        node.prepare()
        tasks = [asyncio.create_task(self.svcs.run()), asyncio.create_task(self.slices.run())]
        await self.svcs.wait_synced()
        await self.slices.wait_synced()
        gc.freeze()  # what the informers hold lives on: the collector need not sweep it in every sync
        await self.serve_http()
        log.info("synced informers: %d services, %d endpointslices", len(self.svcs.list()), len(self.slices.list()))
        self.runner.run()
        tasks.append(asyncio.create_task(self.runner.loop()))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            t.result()  # (the informers and the runner only end by raising)

    async def sync_proxy_rules(self) -> None:
        """One run of the sync runner: a full sync when one is due, else a partial one of what
        changed; with nothing changed, only the work a mode left for later (nftables mode's
        flushed chains)."""
        now = time.monotonic()
        full = now >= self.next_full
        if not full and self.pending_since is None and not self.model.changed:
            due = self.syncer.stale_due()
            if due is not None and due <= now:
                await asyncio.to_thread(self.syncer.delete_stale)
            self.retry_stale()
            return
        started, self.pending_since = self.pending_since, None
        if await self.sync(full):
            if full:  # from this run's start: the runner's timer then falls due with it
                self.next_full = self.runner.last_run + self.args.iptables_sync_period
            if started is not None:
                self.metrics.programming.observe(time.time() - started)
        self.retry_stale()

    def retry_stale(self) -> None:
        due = self.syncer.stale_due()
        if due is not None:
            self.runner.retry_after(max(0.0, due - time.monotonic()))

    async def sync(self, full: bool) -> bool:
        changed = sorted(f"{ns}/{name}" for ns, name in self.model.changed)
        ports = self.model.take()
        t = time.perf_counter()
        try:
            kind = await asyncio.to_thread(self.syncer.sync, ports, full)
            self.last_ok = time.time()
            self.metrics.last.set(self.last_ok)
            # as upstream's proxier at -v=2, naming the Services whose rules changed (netlab explain reads it)
            log.log(logging.INFO if changed else logging.DEBUG, 'SyncProxyRules complete kind=%s servicePorts=%d '
                    'elapsed=%.3fs services="%s"', kind, len(ports), time.perf_counter() - t, ",".join(changed))
        except SyncError as e:
            log.error("sync failed (retrying with a full sync): %s", e)
            self.metrics.failures.inc()
            self.next_full = 0.0
            self.runner.retry_after(RETRY_AFTER_FAILURE)
            return False
        finally:
            self.metrics.sync.observe(time.perf_counter() - t)
        await asyncio.to_thread(conntrack.cleanup, self.last_ports, ports, self.syncer.runner)
        self.last_ports = ports
        await self.health.sync(ports)
        return True

    def healthy(self) -> bool:
        return self.last_ok is not None and time.time() - self.last_ok < 2 * self.args.iptables_sync_period + 60

    async def serve_http(self) -> None:
        async def healthz(_):
            body = {"lastUpdated": _ts(self.last_ok), "currentTime": _ts(time.time()), "nodeEligible": True}
            return web.json_response(body, status=200 if self.healthy() else 503)

        metrics = serving.metrics(self.metrics.registry)
        for addr, routes, what in (
                (self.args.healthz_bind_address, {"/healthz": healthz, "/livez": healthz}, "healthz"),
                (self.args.metrics_bind_address, {"/metrics": metrics, "/healthz": healthz}, "metrics")):
            if addr:
                await serving.serve_or_warn(addr, routes, what)


def _ts(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
