"""The agent: informers on NetworkPolicies, Pods and Namespaces (the whole cluster: a peer may be
anywhere); a change that can alter a rule asks the sync runner for a sync, as kube-network-policies
does (a BoundedFrequencyRunner: a lone change is programmed at once, a burst within
--min-sync-period is batched, and every --sync-period a run checks that the table is still in the
kernel). Each sync renders the node's whole table and programs it if it differs. /healthz and
/metrics on --metrics-bind-address."""

from __future__ import annotations

import asyncio
import logging
import time

from netlab.api.client import ApiError, Client, Informer
from netlab.kit import serving
from netlab.kit.metrics import Registry, exponential_buckets
from netlab.kit.runner import BoundedFrequencyRunner
from netpol import render, sync
from netpol.model import LOG_DROPS, namespace_labels, pod_view

log = logging.getLogger("netlab.netpol")
BURST_SYNCS = 2
RETRY_AFTER_FAILURE = 1.0


def _relevant(resource: str, obj: dict):
    """What of an object the rules depend on: an update that changes none of it needs no sync
    (a pod's conditions change often; its address, labels and ports seldom)."""
    if resource == "pods":
        return pod_view(obj)
    if resource == "namespaces":
        return namespace_labels(obj)
    meta = obj.get("metadata") or {}
    return obj.get("spec"), meta.get("name"), (meta.get("annotations") or {}).get(LOG_DROPS)


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
        self.runner = BoundedFrequencyRunner("netpol-sync", self.sync, args.min_sync_period,
                                             max(args.sync_period, args.min_sync_period), BURST_SYNCS)
        self.last_ok: float | None = None
        self.registry = Registry()
        self.durations = self.registry.histogram("netpol_sync_duration_seconds", "rendering and programming the "
                                                 "node's table", exponential_buckets(0.001, 2, 15))
        self.failures = self.registry.counter("netpol_sync_failures_total", "nft transactions that failed")
        self.last = self.registry.gauge("netpol_last_sync_timestamp_seconds", "when the rules were last in sync")
        for resource, inf in self.informers.items():
            inf.add_handler(lambda obj: self.runner.run(), lambda old, new, r=resource: self.updated(r, old, new),
                            lambda obj: self.runner.run())

    def updated(self, resource: str, old: dict, new: dict) -> None:
        if _relevant(resource, old) != _relevant(resource, new):
            self.runner.run()

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

    async def sync(self) -> None:
        """One run: the table as the informers say, programmed if it differs from what the kernel
        took last, or if the table has gone from the kernel."""
        t = time.perf_counter()
        text = self.render()
        try:
            force = text == self.syncer.applied and not await asyncio.to_thread(self.syncer.present)
            if force:
                log.warning("table inet %s is gone: programming it again", render.TABLE)
            wrote = await asyncio.to_thread(self.syncer.sync, text, force)
        except sync.SyncError as e:
            log.error("sync failed (retrying): %s", e)
            self.failures.inc()
            self.runner.retry_after(RETRY_AFTER_FAILURE)
            return
        finally:
            self.durations.observe(time.perf_counter() - t)
        self.last_ok = time.time()
        self.last.set(self.last_ok)
        if wrote:
            log.info("programmed table inet %s (%d lines) in %.3fs", render.TABLE, text.count("\n"),
                     time.perf_counter() - t)

    async def run(self) -> None:
        if self.prepare:
            prepare_node()
        if not self.pod_cidr:
            self.pod_cidr = await self.node_pod_cidr()
        tasks = [asyncio.create_task(inf.run()) for inf in self.informers.values()]
        for inf in self.informers.values():
            await inf.wait_synced()
        if self.args.metrics_bind_address:
            await serving.serve_or_warn(self.args.metrics_bind_address, {
                "/healthz": serving.check(self.healthy, bad="not synced"),
                "/metrics": serving.metrics(self.registry)}, "healthz and metrics")
        log.info("node %s (pod CIDR %s): informers synced", self.node, self.pod_cidr or "-")
        self.runner.run()
        tasks.append(asyncio.create_task(self.runner.loop()))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            t.result()  # (the informers and the runner only end by raising)

    def healthy(self) -> bool:
        return self.last_ok is not None and time.time() - self.last_ok < 2 * self.args.sync_period + 60


def prepare_node() -> None:
    """Pods of one node talk across its bridge: without bridge-nf-call-iptables their packets
    would pass no inet hook, and no policy between them would hold (kube-proxy sets it too)."""
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables", "w") as f:
            f.write("1")
    except OSError as e:
        log.warning("cannot set net.bridge.bridge-nf-call-iptables: %s (policies between pods of one node "
                    "will not hold)", e)
