"""The agent: informers on NetworkPolicies, Pods and Namespaces (the whole cluster: a peer may be
anywhere); a change that can alter a rule asks for a sync, changes within --min-sync-period are
batched into one; each sync renders the node's whole table and programs it if it differs. Every
--sync-period it checks that the table is still in the kernel and puts it back if not.
/healthz and /metrics on --metrics-bind-address, as kube-network-policies serves them."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from netlab.api.client import ApiError, Client, Informer
from netpol import render, sync
from netpol.model import namespace_labels, pod_view

log = logging.getLogger("netlab.netpol")


def _relevant(resource: str, obj: dict):
    """What of an object the rules depend on: an update that changes none of it needs no sync
    (a pod's conditions change often; its address, labels and ports seldom)."""
    if resource == "pods":
        return pod_view(obj)
    if resource == "namespaces":
        return namespace_labels(obj)
    return obj.get("spec"), (obj.get("metadata") or {}).get("name")


class Agent:
    """`syncer` and `prepare` are for tests: a syncer that records instead of running nft, and
    no sysctl written in the test's own namespace."""

    def __init__(self, args, syncer: sync.Syncer | None = None, prepare: bool = True):
        self.args, self.prepare = args, prepare
        self.node = args.hostname_override
        self.pod_cidr = args.pod_cidr
        self.client = Client.from_kubeconfig(args.kubeconfig)
        self.informers = {r: Informer(self.client, r) for r in ("networkpolicies", "pods", "namespaces")}
        self.syncer = syncer or sync.Syncer()
        self.dirty = asyncio.Event()
        self.last_ok: float | None = None
        self.last_duration = 0.0
        for resource, inf in self.informers.items():
            inf.add_handler(lambda obj: self.changed(), lambda old, new, r=resource: self.updated(r, old, new),
                            lambda obj: self.changed())

    def changed(self) -> None:
        self.dirty.set()

    def updated(self, resource: str, old: dict, new: dict) -> None:
        if _relevant(resource, old) != _relevant(resource, new):
            self.dirty.set()

    async def node_pod_cidr(self) -> str:
        """This node's pod CIDR, from its Node (spec.podCIDR) when --pod-cidr is not given; none
        yet is no harm: the pods bound to this node are still this node's to police."""
        while True:
            try:
                node = await self.client.get("nodes", self.node)
                return (node.get("spec") or {}).get("podCIDR") or ""
            except ApiError as e:
                log.info("waiting for Node %s: %s", self.node, e.message)
            await asyncio.sleep(1)

    def render(self) -> str:
        i = self.informers
        return render.render(i["networkpolicies"].list(), i["pods"].list(), i["namespaces"].list(), self.node,
                             self.pod_cidr, self.args.log_drops)

    async def sync(self, force: bool = False) -> None:
        t = time.perf_counter()
        text = self.render()
        try:
            wrote = await asyncio.to_thread(self.syncer.sync, text, force)
        except sync.SyncError as e:
            log.error("sync failed (retrying): %s", e)
            self.dirty.set()
            await asyncio.sleep(1)
            return
        self.last_ok = time.time()
        self.last_duration = time.perf_counter() - t
        if wrote:
            log.info("programmed table inet %s (%d lines) in %.3fs", render.TABLE, text.count("\n"), self.last_duration)

    async def run(self) -> None:
        if self.prepare:
            prepare_node()
        if not self.pod_cidr:
            self.pod_cidr = await self.node_pod_cidr()
        tasks = [asyncio.create_task(inf.run()) for inf in self.informers.values()]
        for inf in self.informers.values():
            await inf.wait_synced()
        await self.serve_http()
        log.info("node %s (pod CIDR %s): informers synced", self.node, self.pod_cidr or "-")
        self.dirty.set()
        next_check = time.monotonic() + self.args.sync_period
        while True:
            try:
                await asyncio.wait_for(self.dirty.wait(), max(0.05, next_check - time.monotonic()))
            except asyncio.TimeoutError:
                pass
            for t in tasks:
                if t.done():
                    t.result()  # an informer died: let the supervisor restart the agent
            if self.dirty.is_set():
                await asyncio.sleep(self.args.min_sync_period)  # batch what arrives meanwhile
                self.dirty.clear()
                await self.sync()
            if time.monotonic() >= next_check:
                present = await asyncio.to_thread(self.syncer.present)
                if not present:
                    log.warning("table inet %s is gone: programming it again", render.TABLE)
                await self.sync(force=not present)
                next_check = time.monotonic() + self.args.sync_period

    async def serve_http(self) -> None:
        async def healthz(_):
            now = time.time()
            healthy = self.last_ok is not None and now - self.last_ok < 2 * self.args.sync_period + 60
            return web.Response(text="ok" if healthy else "not synced", status=200 if healthy else 503)

        async def metrics(_):
            s = self.syncer.stats
            lines = ["# HELP netpol_sync_total nft transactions run", "# TYPE netpol_sync_total counter",
                     f"netpol_sync_total {s['syncs']}",
                     "# HELP netpol_sync_failures_total nft transactions that failed",
                     "# TYPE netpol_sync_failures_total counter", f"netpol_sync_failures_total {s['failures']}",
                     "# HELP netpol_sync_duration_seconds the last sync's rendering and programming",
                     "# TYPE netpol_sync_duration_seconds gauge", f"netpol_sync_duration_seconds {self.last_duration}",
                     "# HELP netpol_last_sync_timestamp_seconds when the rules were last known in sync",
                     "# TYPE netpol_last_sync_timestamp_seconds gauge",
                     f"netpol_last_sync_timestamp_seconds {self.last_ok or 0}"]
            return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

        addr = self.args.metrics_bind_address
        if not addr:
            return
        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = addr.rsplit(":", 1)
        try:
            await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
        except OSError as e:
            log.warning("cannot serve on %s: %s", addr, e)


def prepare_node() -> None:
    """Pods of one node talk across its bridge: without bridge-nf-call-iptables their packets
    would pass no inet hook, and no policy between them would hold (kube-proxy sets it too)."""
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables", "w") as f:
            f.write("1")
    except OSError as e:
        log.warning("cannot set net.bridge.bridge-nf-call-iptables: %s (policies between pods of one node "
                    "will not hold)", e)
