"""kube-scheduler for a lab: `python -m netlab.control.scheduler --kubeconfig PATH`.

Binds each pod that has no node (and asks for `default-scheduler`) through the binding
subresource. Filters as upstream's default plugins do for what netlab models: node readiness,
`spec.unschedulable`, NoSchedule/NoExecute taints against tolerations, nodeSelector, hostPort
clashes; scores by spreading the pods of one owner across nodes, then by fewest pods. Records
Scheduled and FailedScheduling events with upstream's wording.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections import Counter

from netlab.api.client import ApiError, Client, Informer, event
from netlab.kit import clock, logs

log = logging.getLogger("netlab.scheduler")
NAME = "default-scheduler"
RETRY = 2.0


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    for t in tolerations or []:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def node_ready(node: dict) -> bool:
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def host_ports(pod: dict) -> set[tuple]:
    return {(p.get("hostIP", "0.0.0.0"), p.get("protocol", "TCP"), p["hostPort"])
            for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or [] if p.get("hostPort")}


class Scheduler:
    def __init__(self, client: Client):
        self.client = client
        self.pods = Informer(client, "pods")
        self.nodes = Informer(client, "nodes")
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pending: set[tuple] = set()
        self.pods.add_handler(self._pod, lambda old, new: self._pod(new), None)
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

    def _enqueue(self, key: tuple) -> None:
        if key not in self.pending:
            self.pending.add(key)
            self.queue.put_nowait(key)

    def _nodes_changed(self, _node: dict) -> None:
        for key in list(self.unschedulable):  # a node changed: try the pods that did not fit again
            self.unschedulable.discard(key)
            self._enqueue(key)

    def filter(self, pod: dict) -> tuple[list[dict], str]:
        spec = pod.get("spec") or {}
        reasons: Counter = Counter()
        fits = []
        wanted_ports = host_ports(pod)
        used: dict[str, set] = {}
        for p in self.pods.list():
            n = (p.get("spec") or {}).get("nodeName")
            if n and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                used.setdefault(n, set()).update(host_ports(p))
        for node in sorted(self.nodes.list(), key=lambda n: n["metadata"]["name"]):
            labels = node["metadata"].get("labels") or {}
            taints = [t for t in (node.get("spec") or {}).get("taints") or []
                      if t.get("effect") in ("NoSchedule", "NoExecute")]
            untolerated = [t for t in taints if not tolerates(spec.get("tolerations") or [], t)]
            if not node_ready(node):
                reasons["node(s) were not ready"] += 1
            elif (node.get("spec") or {}).get("unschedulable") and not tolerates(
                    spec.get("tolerations") or [], {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}):
                reasons["node(s) were unschedulable"] += 1
            elif untolerated:
                t = untolerated[0]
                reasons[f"node(s) had untolerated taint {{{t['key']}: {t.get('value', '')}}}"] += 1
            elif any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
                reasons["node(s) didn't match Pod's node affinity/selector"] += 1
            elif wanted_ports & used.get(node["metadata"]["name"], set()):
                reasons["node(s) didn't have free ports for the requested pod ports"] += 1
            else:
                fits.append(node)
        total = len(self.nodes.list())
        why = f"0/{total} nodes are available: " + ", ".join(
            f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda x: x[0])) + "." if reasons else \
            f"0/{total} nodes are available."
        if reasons:
            why += f" preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
        return fits, why

    def score(self, pod: dict, nodes: list[dict]) -> dict:
        owner = next((r["uid"] for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        same, load = Counter(), Counter()
        for p in self.pods.list():
            n = (p.get("spec") or {}).get("nodeName")
            if not n or (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            load[n] += 1
            if owner and any(r["uid"] == owner for r in p["metadata"].get("ownerReferences") or []):
                same[n] += 1
        return min(nodes, key=lambda n: (same[n["metadata"]["name"]], load[n["metadata"]["name"]],
                                         n["metadata"]["name"]))

    async def schedule(self, key: tuple) -> None:
        pod = self.pods.get(*key)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or pod["metadata"].get("deletionTimestamp"):
            return
        fits, why = self.filter(pod)
        if not fits:
            self.unschedulable.add(key)
            await self._record(pod, "FailedScheduling", why, "Warning")
            await self._condition(pod, why)
            asyncio.get_running_loop().call_later(RETRY * 5, self._retry, key)
            return
        node = self.score(pod, fits)["metadata"]["name"]
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

    async def _condition(self, pod: dict, why: str) -> None:
        now = clock.now()
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why,
                "lastProbeTime": None, "lastTransitionTime": now}
        old = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"]
        if old and old[0].get("message") == why:
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
        tasks = [asyncio.create_task(self.pods.run()), asyncio.create_task(self.nodes.run())]
        await self.pods.wait_synced()
        await self.nodes.wait_synced()
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
