"""kube-scheduler for a lab: `python -m netlab.control.scheduler --kubeconfig PATH`.

Binds each pod that has no node (and asks for `default-scheduler`) through the binding
subresource. A pod with schedulingGates waits, marked SchedulingGated. Filters as upstream's
default plugins do (netlab/control/placement.py holds their rules): `spec.unschedulable`,
NoSchedule/NoExecute taints against tolerations (a node that is not Ready counts as tainted
not-ready, as the node lifecycle controller taints it), nodeSelector and required node affinity
(DaemonSet pods' matchFields on metadata.name among them), hostPort clashes, resource requests
against allocatable, the pod's volumes (netlab/control/volumebinding.py: claims that exist, a bound
volume's node affinity, WaitForFirstConsumer claims provisioned on the chosen node before the pod is
bound), required topology spread, required pod affinity and anti-affinity. Scores by
preferred node affinity, preferred pod (anti-)affinity, PreferNoSchedule taints and ScheduleAnyway
spread, then by spreading the pods of one owner across nodes, then by fewest pods. Records
Scheduled and FailedScheduling events with upstream's wording (`0/3 nodes are available: ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections import Counter

from netlab.api.client import ApiError, Client, Informer, event
from netlab.control import placement, volumebinding
from netlab.kit import clock, logs

log = logging.getLogger("netlab.scheduler")
NAME = "default-scheduler"
RETRY = 2.0
GATED = "Scheduling is blocked due to non-empty scheduling gates"


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    return any(placement.tolerates(t, taint) for t in tolerations or [])



def host_ports(pod: dict) -> set[tuple]:
    return {(p.get("hostIP", "0.0.0.0"), p.get("protocol", "TCP"), p["hostPort"])
            for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or [] if p.get("hostPort")}


def _normalized(raw: dict[str, int], reverse: bool = False) -> dict[str, float]:
    """Scores to 0..100 over the candidate nodes, as upstream's plugins normalize them."""
    lo, hi = min(raw.values(), default=0), max(raw.values(), default=0)
    if hi == lo:
        return {k: 0.0 for k in raw}
    out = {k: (v - lo) * 100 / (hi - lo) for k, v in raw.items()}
    return {k: 100 - v for k, v in out.items()} if reverse else out


class Scheduler:
    def __init__(self, client: Client):
        self.client = client
        self.pods = Informer(client, "pods")
        self.nodes = Informer(client, "nodes")
        self.namespaces = Informer(client, "namespaces")  # namespaceSelector of pod affinity terms
        # the VolumeBinding plugin's: a pod's claims, their volumes and classes
        self.claims = Informer(client, "persistentvolumeclaims")
        self.volumes = Informer(client, "persistentvolumes")
        self.classes = Informer(client, "storageclasses")
        self.claims.add_handler(self._claim, lambda old, new: self._claim(new), None)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pending: set[tuple] = set()
        self.pods.add_handler(self._pod, lambda old, new: self._pod(new), self._pod_gone)
        self.nodes.add_handler(self._nodes_changed, lambda old, new: self._nodes_changed(new), None)
        self.unschedulable: set[tuple] = set()

    def _pod(self, pod: dict) -> None:
        spec = pod.get("spec") or {}
        if spec.get("nodeName") or spec.get("schedulerName", NAME) != NAME or pod["metadata"].get("deletionTimestamp"):
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        if key not in self.unschedulable:  # those wait for a node to change, or the retry timer
            self._enqueue(key)

    def _claim(self, pvc: dict) -> None:
        """A claim came or was bound: the pending pods that use it are tried again."""
        ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        for pod in self.pods.list():
            if pod["metadata"]["namespace"] == ns and name in volumebinding.claim_names(pod) \
                    and not (pod.get("spec") or {}).get("nodeName"):
                key = (ns, pod["metadata"]["name"])
                self.unschedulable.discard(key)
                self._enqueue(key)

    def _pod_gone(self, pod: dict) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            self._nodes_changed(pod)  # room was freed: resources, ports, anti-affinity, spread

    def _enqueue(self, key: tuple) -> None:
        if key not in self.pending:
            self.pending.add(key)
            self.queue.put_nowait(key)

    def _nodes_changed(self, _node: dict) -> None:
        for key in list(self.unschedulable):  # a node changed: try the pods that did not fit again
            self.unschedulable.discard(key)
            self._enqueue(key)

    def _ns_labels(self, ns: str) -> dict:
        obj = self.namespaces.get(None, ns)
        return (obj or {}).get("metadata", {}).get("labels") or {}

    def cluster(self) -> placement.Cluster:
        return placement.Cluster(self.nodes.list(), self.pods.list(), self._ns_labels)

    def node_reasons(self, pod: dict, node: dict, cluster: placement.Cluster, wanted_ports: set) -> list[str]:
        """Why `pod` may not go to `node`, from the first filter that refuses it (upstream's
        plugin order); empty if it fits."""
        spec = pod.get("spec") or {}
        tolerations = spec.get("tolerations") or []
        if (node.get("spec") or {}).get("unschedulable") and not tolerates(tolerations, placement.UNSCHEDULABLE_TAINT):
            return ["node(s) were unschedulable"]
        taint = placement.untolerated(tolerations, placement.node_taints(node), ("NoSchedule", "NoExecute"))
        if taint is not None:
            return [f"node(s) had untolerated taint {placement.taint_text(taint)}"]
        if not placement.required_affinity_matches(spec, node):
            return [placement.NODE_AFFINITY]
        placed = cluster.placed.get(node["metadata"]["name"], [])
        if wanted_ports and wanted_ports & {hp for p in placed for hp in host_ports(p)}:
            return ["node(s) didn't have free ports for the requested pod ports"]
        short = placement.insufficient(spec, node, placed)
        if short:
            return short
        volume = volumebinding.node_reason(pod, node, self.claims.get, self.volumes.get, self.classes.get)
        if volume:
            return [volume]
        for reason in (cluster.spread_reason(pod, node), cluster.affinity_reason(pod, node)):
            if reason:
                return [reason]
        return []

    def filter(self, pod: dict, cluster: placement.Cluster | None = None) -> tuple[list[dict], str]:
        cluster = cluster or self.cluster()
        reasons: Counter = Counter()
        unresolvable = 0
        fits = []
        wanted_ports = host_ports(pod)
        nodes = sorted(self.nodes.list(), key=lambda n: n["metadata"]["name"])
        blocked = volumebinding.prefilter(pod, self.claims.get, self.classes.get)
        if blocked:  # upstream's PreFilter: no node is tried
            n = len(nodes)
            return [], (f"0/{n} nodes are available: {blocked}. preemption: 0/{n} nodes are available: "
                        f"{n} Preemption is not helpful for scheduling.")
        for node in nodes:
            why = self.node_reasons(pod, node, cluster, wanted_ports)
            if not why:
                fits.append(node)
                continue
            reasons.update(why)
            if any(r in placement.UNRESOLVABLE or r == volumebinding.CONFLICT
                   or r.startswith("node(s) had untolerated taint") for r in why):
                unresolvable += 1
        total = len(nodes)
        # upstream's FitError: "<count> <reason>" strings, sorted, then what preemption found
        why = f"0/{total} nodes are available: " + ", ".join(
            sorted(f"{n} {r}" for r, n in reasons.items())) + "." if reasons else f"0/{total} nodes are available."
        if reasons:
            parts = []
            if total - len(fits) - unresolvable:
                parts.append(f"{total - len(fits) - unresolvable} No preemption victims found for incoming pod")
            if unresolvable:
                parts.append(f"{unresolvable} Preemption is not helpful for scheduling")
            why += f" preemption: 0/{total} nodes are available: {', '.join(sorted(parts))}."
        return fits, why

    def score(self, pod: dict, nodes: list[dict], cluster: placement.Cluster | None = None) -> dict:
        cluster = cluster or self.cluster()
        spec = pod.get("spec") or {}
        names = [n["metadata"]["name"] for n in nodes]
        by_name = {n["metadata"]["name"]: n for n in nodes}
        # the default profile's weighted plugins: NodeAffinity 2, InterPodAffinity 2,
        # TaintToleration 3, PodTopologySpread 2
        affinity = _normalized({n: placement.preferred_affinity_score(spec, by_name[n]) for n in names})
        pod_affinity = _normalized({n: cluster.affinity_score(pod, by_name[n]) for n in names})
        prefer_no = _normalized({n: sum(1 for t in (by_name[n].get("spec") or {}).get("taints") or []
                                        if t.get("effect") == "PreferNoSchedule"
                                        and not tolerates(spec.get("tolerations") or [], t)) for n in names},
                                reverse=True)
        spread = _normalized({n: cluster.spread_penalty(pod, by_name[n]) for n in names}, reverse=True)
        owner = next((r["uid"] for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        same, load = Counter(), Counter()
        for n, p in cluster.pods():
            load[n] += 1
            if owner and any(r["uid"] == owner for r in p["metadata"].get("ownerReferences") or []):
                same[n] += 1
        weighted = {n: 2 * affinity[n] + 2 * pod_affinity[n] + 3 * prefer_no[n] + 2 * spread[n] for n in names}
        best = min(names, key=lambda n: (-weighted[n], same[n], load[n], n))
        return by_name[best]

    async def schedule(self, key: tuple) -> None:
        pod = self.pods.get(*key)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or pod["metadata"].get("deletionTimestamp"):
            return
        if (pod.get("spec") or {}).get("schedulingGates"):
            # upstream's SchedulingGates PreEnqueue: no attempt, no event, only the condition
            await self._condition(pod, GATED, "SchedulingGated")
            return
        cluster = self.cluster()
        fits, why = self.filter(pod, cluster)
        if not fits:
            self.unschedulable.add(key)
            await self._record(pod, "FailedScheduling", why, "Warning")
            await self._condition(pod, why)
            asyncio.get_running_loop().call_later(RETRY * 5, self._retry, key)
            return
        node = self.score(pod, fits, cluster)["metadata"]["name"]
        unbound = volumebinding.to_provision(pod, self.claims.get)
        if unbound:  # upstream's PreBind: the claims are provisioned on the node, the pod waits for them
            for pvc in unbound:
                if (pvc["metadata"].get("annotations") or {}).get(volumebinding.SELECTED_NODE) != node:
                    await self.client.patch("persistentvolumeclaims", pvc["metadata"]["name"], {"metadata": {
                        "annotations": {volumebinding.SELECTED_NODE: node}}}, key[0])
            asyncio.get_running_loop().call_later(RETRY, self._enqueue, key)  # and when a claim is bound
            return
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": key[1], "namespace": key[0], "uid": pod["metadata"]["uid"]},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            await self.client.request("POST", f"/api/v1/namespaces/{key[0]}/pods/{key[1]}/binding", binding)
        except ApiError as e:
            if e.status in (404, 409):
                return
            raise
        # the cache shows the binding soon; count it now so the next pod spreads correctly
        pod.setdefault("spec", {})["nodeName"] = node
        await self._record(pod, "Scheduled", f"Successfully assigned {key[0]}/{key[1]} to {node}")

    def _retry(self, key: tuple) -> None:
        if key in self.unschedulable:
            self.unschedulable.discard(key)
            self._enqueue(key)

    async def _condition(self, pod: dict, why: str, reason: str = "Unschedulable") -> None:
        now = clock.now()
        cond = {"type": "PodScheduled", "status": "False", "reason": reason, "message": why,
                "lastProbeTime": None, "lastTransitionTime": now}
        old = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"]
        if old and old[0].get("message") == why and old[0].get("reason") == reason:
            return
        try:
            await self.client.patch("pods", pod["metadata"]["name"], {"status": {"conditions": [cond]}},
                                    pod["metadata"]["namespace"], patch_type="strategic", subresource="status")
        except ApiError:
            pass

    async def _record(self, pod: dict, reason: str, message: str, type_: str = "Normal") -> None:
        try:
            await self.client.create("events", event(dict(pod, kind="Pod", apiVersion="v1"), reason, message, type_,
                                                     component=NAME))
        except ApiError as e:
            log.debug("event not recorded: %s", e)

    async def run(self) -> None:
        informers = (self.pods, self.nodes, self.namespaces, self.claims, self.volumes, self.classes)
        tasks = [asyncio.create_task(i.run()) for i in informers]
        for i in informers:
            await i.wait_synced()
        for pod in self.pods.list():
            self._pod(pod)
        while True:
            key = await self.queue.get()
            self.pending.discard(key)
            try:
                await self.schedule(key)
            except Exception:  # noqa: BLE001 - keep scheduling the others
                log.exception("scheduling %s/%s failed", *key)
                asyncio.get_running_loop().call_later(RETRY, self._enqueue, key)
            if any(t.done() for t in tasks):
                for t in tasks:
                    t.result()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m netlab.control.scheduler")
    p.add_argument("--kubeconfig", required=True)
    args = p.parse_args(argv)
    logs.setup()
    try:
        asyncio.run(Scheduler(Client.from_kubeconfig(args.kubeconfig)).run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
