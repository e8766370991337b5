"""The kubelet of one lab node: `python -m netlab.node.kubelet --lab NAME --node NODE --kubeconfig PATH`,
run in the node's network namespace. It registers the node and keeps its heartbeat, runs the pods
bound to it (see pods.py), serves its API on the node's address :10250 (logs and exec, see
server.py), and on start adopts the pods an earlier kubelet left running and cleans what belongs
to no pod."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time

from netlab.api.client import Client, Informer
from netlab.kit import cgroups, logs, net
from netlab.kit.cluster import Cluster
from netlab.node.kubelet import agents, certs, runtime
from netlab.node.kubelet import node as node_mod
from netlab.node.kubelet.cni import CNI
from netlab.node.kubelet.pods import PodWorker
from netlab.node.kubelet.refs import Referenced
from netlab.node.kubelet.server import PORT, KubeletServer
from netlab.node.kubelet.tokens import TokenManager

log = logging.getLogger("netlab.kubelet")


class Kubelet:
    def __init__(self, lab: str, node: str, kubeconfig: str):
        self.lab, self.node = lab, node
        self.cluster = Cluster.from_state(lab)
        self.layout = self.cluster.layout
        self.node_layout = self.layout.node(node)
        self.me = self.cluster.node(node)
        self.node_ip = self.me.ip
        self.client = Client.from_kubeconfig(kubeconfig)
        # pods' service account tokens, bound to each pod; and the lab's CA, their ca.crt
        self.tokens = TokenManager(self.client)
        self.ca = self.layout.ca_cert.read_bytes()
        self.node_layout.pods.mkdir(parents=True, exist_ok=True)
        self.cni = CNI(self.node_layout.cni_conflist, self.layout.cni_path)
        self.runtime = self.node_layout.runtime_socket
        # the API server's credential to this kubelet's API: the lab's token
        self.api = KubeletServer(self, self.layout.token.read_text().strip())
        self.pods = Informer(self.client, "pods", field_selector=f"spec.nodeName={node}")
        self.svcs = Informer(self.client, "services")
        # only the ConfigMaps, Secrets and claims this node's pods name, and the volumes those claims
        # are bound to (all the Node authorizer lets it read)
        self.cms = Referenced(self.client, "configmaps", self.on_configmap)
        self.secrets_inf = Referenced(self.client, "secrets", self.on_secret)
        self.claims_inf = Referenced(self.client, "persistentvolumeclaims", self.on_claim)
        self.volume_watches: dict[str, tuple[Informer, asyncio.Task]] = {}
        self.workers: dict[str, PodWorker] = {}
        self.deleted: set[str] = set()
        self.pods.add_handler(self.on_pod, lambda old, new: self.on_pod(new), self.on_pod_deleted)
        self.node_layout.rootfs.mkdir(parents=True, exist_ok=True)

    def services(self, ns: str) -> list[dict]:
        return [s for s in self.svcs.list() if s["metadata"]["namespace"] in (ns, "default")
                and (s["metadata"]["namespace"] == ns or s["metadata"]["name"] == "kubernetes")]

    def configmaps(self, ns: str) -> dict[str, dict]:
        return self.cms.objects(ns)

    def secrets(self, ns: str) -> dict[str, dict]:
        return self.secrets_inf.objects(ns)

    async def watch_refs(self, pod: dict) -> None:
        """Watch the ConfigMaps and Secrets a pod names, before its worker starts it."""
        await self.cms.ensure(pod)
        await self.secrets_inf.ensure(pod)
        await self.claims_inf.ensure(pod)

    def claims(self, ns: str) -> dict[str, dict | str]:
        """The namespace's claims: each bound one's PersistentVolume spec, or why it has none."""
        out: dict[str, dict | str] = {}
        for name, c in self.claims_inf.objects(ns).items():
            volume = (c.get("spec") or {}).get("volumeName", "")
            phase = (c.get("status") or {}).get("phase", "")
            watch = self.volume_watches.get(volume)
            pv = watch[0].get(None, volume) if watch else None
            if phase != "Bound" or pv is None:
                out[name] = f'PVC {ns}/{name} has non-bound phase ("{phase}") or empty pvc.Spec.VolumeName ("{volume}")'
            else:
                out[name] = pv.get("spec") or {}
        return out

    def on_claim(self, pvc: dict) -> None:
        """A claim was bound: its volume is watched, and pods waiting to mount it are tried again now."""
        volume = (pvc.get("spec") or {}).get("volumeName")
        if volume and volume not in self.volume_watches:
            inf = Informer(self.client, "persistentvolumes", field_selector=f"metadata.name={volume}")
            inf.add_handler(self.on_volume, lambda old, new: self.on_volume(new), None)
            self.volume_watches[volume] = (inf, asyncio.create_task(inf.run()))
        for w in list(self.workers.values()):
            if w.ns == pvc["metadata"]["namespace"]:
                w.configmap_came(pvc["metadata"]["name"], "persistentVolumeClaim")

    def on_volume(self, pv: dict) -> None:
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("namespace"):
            self.on_claim({"metadata": {"namespace": ref["namespace"], "name": ref.get("name", "")}})

    def on_configmap(self, cm: dict, kind: str = "configMap") -> None:
        ns, name = cm["metadata"]["namespace"], cm["metadata"]["name"]
        for w in list(self.workers.values()):
            if w.ns == ns and w.uses(kind, name):
                asyncio.create_task(w.refresh_volumes())
            if w.ns == ns:
                w.configmap_came(name, kind)

    def on_secret(self, secret: dict) -> None:
        self.on_configmap(secret, "secret")

    def gone(self, uid: str) -> bool:
        return uid in self.deleted

    def forget(self, uid: str) -> None:
        self.deleted.add(uid)
        self.tokens.forget(uid)
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
            component = agents.component_of(pod, self.node)
            w = self.workers[uid] = agents.AgentWorker(self, pod, component) if component else PodWorker(self, pod)
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
                await self.watch_refs(w.pod)
                await w.run()
                break
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - retried below
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        self.workers.pop(w.uid, None)
        self.cms.release(w.uid)
        self.secrets_inf.release(w.uid)
        self.claims_inf.release(w.uid)

    async def clean_orphans(self) -> None:
        """Pod directories and pod namespaces that belong to no pod of this node's API view."""
        live = {p["metadata"]["uid"] for p in self.pods.list()}
        for d in list(self.node_layout.pods.iterdir()):
            if d.name in live:
                continue
            pd = runtime.PodDir(self.node_layout.pod(d.name))
            st = pd.state()
            procs = [runtime.Process.from_json(c["proc"]) for c in (st.get("containers") or {}).values()
                     if c.get("proc")]
            if st.get("pause"):
                procs.append(runtime.Process.from_json(st["pause"]))
            await asyncio.to_thread(runtime.stop, procs, 0)
            await asyncio.to_thread(cgroups.remove, self.node_layout.pod(d.name).cgroup)
            ns_name = st.get("netns")
            if ns_name and net.ns_exists(ns_name):
                ns, _, name = (st.get("pod") or "/").partition("/")
                fake = {"metadata": {"uid": d.name, "namespace": ns, "name": name}}
                try:
                    await self.cni.delete(fake, net.ns_path(ns_name), st.get("cni"), {"portMappings": []})
                except Exception as e:  # noqa: BLE001
                    log.warning("orphan %s: CNI DEL: %s", d.name, e)
                await asyncio.to_thread(net.kill_ns_processes, ns_name)
                await asyncio.to_thread(net.ns_delete, ns_name)
            pd.remove()
            log.info("cleaned orphan pod %s", d.name)
        # pod namespaces no node's kubelet knows of (every node's pod directories are on this box)
        known = set()
        for node_dir in self.layout.nodes():
            for pod_dir in node_dir.pods.glob("*"):
                try:
                    known.add(json.loads(node_dir.pod(pod_dir.name).state.read_text()).get("netns"))
                except (OSError, ValueError):
                    known.add(self.layout.pod_netns(pod_dir.name))
        for ns in net.ns_list():
            if self.layout.is_pod_netns(ns) and ns not in known:
                try:
                    age = time.time() - os.stat(net.ns_path(ns)).st_mtime
                except OSError:
                    continue
                if age > 30:  # not one another kubelet is making right now
                    net.kill_ns_processes(ns)
                    net.ns_delete(ns)

    async def serve_api(self) -> None:
        """The kubelet's API on the node's address :10250, with a certificate made now; retried
        while the address cannot be bound (a restarted kubelet's old socket, an address not up yet)."""
        signed = await asyncio.to_thread(certs.serving_cert, self.node_layout.kubelet_cert, self.node_layout.kubelet_key,
                                         self.node, self.node_ip, self.layout.ca_cert, self.layout.ca_key)
        log.info("serving certificate for %s (%s): %s", self.node, self.node_ip,
                 "signed by the lab's CA" if signed else "self-signed (the CA's key is not on this machine)")
        delay = 0.1
        while True:
            try:
                await self.api.start(self.node_ip, PORT, str(self.node_layout.kubelet_cert),
                                     str(self.node_layout.kubelet_key))
                return
            except OSError as e:
                log.warning("cannot serve on %s:%d yet: %s", self.node_ip, PORT, e.strerror)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)

    async def run(self) -> None:
        self.tokens.loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(self.serve_api())]
        await node_mod.register(self.client, self.cluster, self.me)
        tasks.append(asyncio.create_task(node_mod.heartbeat(self.client, self.me)))
        tasks.append(asyncio.create_task(self.svcs.run()))
        await self.svcs.wait_synced()
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
    logs.setup()
    try:
        asyncio.run(Kubelet(args.lab, args.node, args.kubeconfig).run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
