"""The kubelet of one lab node: `python -m netlab.node.kubelet --lab NAME --node NODE --kubeconfig PATH`,
run in the node's network namespace. It registers the node and keeps its heartbeat, runs the pods
bound to it (see pods.py), and on start adopts the pods an earlier kubelet left running and
cleans what belongs to no pod."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time

from netlab.api.client import Client, Informer
from netlab.kit import net
from netlab.kit.cluster import Cluster
from netlab.node.kubelet import node as node_mod
from netlab.node.kubelet import runtime
from netlab.node.kubelet.cni import CNI
from netlab.node.kubelet.pods import PodWorker

log = logging.getLogger("netlab.kubelet")


class Kubelet:
    def __init__(self, lab: str, node: str, kubeconfig: str):
        self.lab, self.node = lab, node
        self.cluster = Cluster.from_state(lab)
        self.me = self.cluster.node(node)
        self.node_ip = self.me.ip
        self.client = Client.from_kubeconfig(kubeconfig)
        # what a pod's service account mount holds: the lab's token and CA
        self.identity = ((self.cluster.state_dir / "token").read_text().strip(),
                         (self.cluster.state_dir / "pki" / "ca.crt").read_bytes())
        node_dir = self.cluster.state_dir / "nodes" / node
        self.pods_dir = node_dir / "pods"
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.cni = CNI(self.cluster.layout.node(node).cni_conflist, self.cluster.layout.cni_path)
        self.runtime = self.cluster.layout.node(node).runtime_socket
        self.pods = Informer(self.client, "pods", field_selector=f"spec.nodeName={node}")
        self.svcs = Informer(self.client, "services")
        self.cms = Informer(self.client, "configmaps")
        self.workers: dict[str, PodWorker] = {}
        self.deleted: set[str] = set()
        self.pods.add_handler(self.on_pod, lambda old, new: self.on_pod(new), self.on_pod_deleted)
        self.cms.add_handler(None, lambda old, new: self.on_configmap(new), None)

    def services(self, ns: str) -> list[dict]:
        return [s for s in self.svcs.list() if s["metadata"]["namespace"] in (ns, "default")
                and (s["metadata"]["namespace"] == ns or s["metadata"]["name"] == "kubernetes")]

    def configmaps(self, ns: str) -> dict[str, dict]:
        return {c["metadata"]["name"]: c for c in self.cms.list() if c["metadata"]["namespace"] == ns}

    def on_configmap(self, cm: dict) -> None:
        ns, name = cm["metadata"]["namespace"], cm["metadata"]["name"]
        for w in list(self.workers.values()):
            if w.ns == ns and w.uses_configmap(name):
                asyncio.create_task(w.refresh_volumes())

    def gone(self, uid: str) -> bool:
        return uid in self.deleted

    def forget(self, uid: str) -> None:
        self.deleted.add(uid)
        w = self.workers.get(uid)
        if w:
            w.wake.set()

    def on_pod(self, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        w = self.workers.get(uid)
        if w is None:
            if uid in self.deleted:
                return
            log.info('SyncLoop ADD pod="%s/%s"', meta["namespace"], meta["name"])
            w = self.workers[uid] = PodWorker(self, pod)
            w.task = asyncio.create_task(self._run_worker(w))
        else:
            if meta.get("deletionTimestamp") and not w.pod["metadata"].get("deletionTimestamp"):
                log.info('SyncLoop DELETE pod="%s/%s" gracePeriod=%s', meta["namespace"], meta["name"],
                         meta.get("deletionGracePeriodSeconds"))
            w.update(pod)

    def on_pod_deleted(self, pod: dict) -> None:
        log.info('SyncLoop REMOVE pod="%s/%s"', pod["metadata"]["namespace"], pod["metadata"]["name"])
        self.forget(pod["metadata"]["uid"])

    async def _run_worker(self, w: PodWorker) -> None:
        delay = 1.0
        while True:
            try:
                await w.run()
                break
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - retried below
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        self.workers.pop(w.uid, None)

    async def clean_orphans(self) -> None:
        """Pod directories and pod namespaces that belong to no pod of this node's API view."""
        live = {p["metadata"]["uid"] for p in self.pods.list()}
        for d in list(self.pods_dir.iterdir()):
            if d.name in live:
                continue
            pd = runtime.PodDir(self.pods_dir, d.name)
            st = pd.state()
            procs = [runtime.Process.from_json(c["proc"]) for c in (st.get("containers") or {}).values()
                     if c.get("proc")]
            if st.get("pause"):
                procs.append(runtime.Process.from_json(st["pause"]))
            await asyncio.to_thread(runtime.stop, procs, 0)
            ns_name = st.get("netns")
            if ns_name and net.ns_exists(ns_name):
                ns, _, name = (st.get("pod") or "/").partition("/")
                fake = {"metadata": {"uid": d.name, "namespace": ns, "name": name}}
                try:
                    await self.cni.delete(fake, f"/run/netns/{ns_name}", st.get("cni"), {"portMappings": []})
                except Exception as e:  # noqa: BLE001
                    log.warning("orphan %s: CNI DEL: %s", d.name, e)
                await asyncio.to_thread(net.kill_ns_processes, ns_name)
                await asyncio.to_thread(net.ns_delete, ns_name)
            pd.remove()
            log.info("cleaned orphan pod %s", d.name)
        # pod namespaces no node's kubelet knows of (every node's pod directories are on this box)
        known = set()
        for pods_dir in (self.cluster.state_dir / "nodes").glob("*/pods/*"):
            try:
                known.add(json.loads((pods_dir / "state.json").read_text()).get("netns"))
            except (OSError, ValueError):
                known.add(f"{self.lab}-pod-{pods_dir.name.replace('-', '')[:12]}")
        for ns in net.ns_list():
            if ns.startswith(f"{self.lab}-pod-") and ns not in known:
                try:
                    age = time.time() - os.stat(net.ns_path(ns)).st_mtime
                except OSError:
                    continue
                if age > 30:  # not one another kubelet is making right now
                    net.kill_ns_processes(ns)
                    net.ns_delete(ns)

    async def run(self) -> None:
        await node_mod.register(self.client, self.cluster, self.me)
        tasks = [asyncio.create_task(node_mod.heartbeat(self.client, self.me))]
        for inf in (self.svcs, self.cms):
            tasks.append(asyncio.create_task(inf.run()))
            await inf.wait_synced()
        tasks.append(asyncio.create_task(self.pods.run()))
        await self.pods.wait_synced()
        await self.clean_orphans()
        log.info("kubelet on %s ready: %d pods", self.node, len(self.pods.list()))
        await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m netlab.node.kubelet")
    p.add_argument("--lab", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--kubeconfig", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(Kubelet(args.lab, args.node, args.kubeconfig).run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
