"""The ReplicaSet controller: keeps `spec.replicas` active pods, named `<replicaset>-<5 chars>`,
owned by the ReplicaSet; deletes the least useful first when scaling down; reports status."""

from __future__ import annotations

import copy
import time

from netlab.control.controllers.base import (Controller, controller_of, key_of, matches, owner_ref, pod_active, pod_ready,
                                             split_key)
from netlab.kit import clock

BURST = 500  # at most this many creates or deletes per sync, as upstream's burstReplicas


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    resource, kind = "replicasets", "ReplicaSet"  # the ReplicationController controller is this one for its kind

    def __init__(self, ctx):
        super().__init__(ctx)
        self.rs = ctx.informer(self.resource)
        self.pods = ctx.informer("pods", "controller")
        self.rs.add_handler(self.enqueue_obj, self.enqueue_obj, None)
        self.pods.add_handler(self._pod_changed, lambda old, new: self._pod_changed(new), self._pod_changed)
        # Expectations, as upstream: creates and deletes this controller made that the informer
        # has not shown yet, so a sync does not act twice on the same shortfall.
        self.expect: dict[str, tuple[set[str], set[str], float]] = {}

    def _pod_changed(self, pod: dict) -> None:
        ref = controller_of(pod)
        if ref and ref.get("kind") == self.kind:
            self.enqueue(f"{pod['metadata']['namespace']}/{ref['name']}")

    def _owned(self, rs: dict) -> list[dict]:
        return [p for p in self.pods.by_index("controller", rs["metadata"]["uid"])]

    def _expectations_met(self, key: str) -> bool:
        adds, dels, since = self.expect.get(key, (set(), set(), 0.0))
        ns, _ = split_key(key)
        adds = {n for n in adds if self.pods.get(ns, n) is None}
        dels = {n for n in dels if self.pods.get(ns, n) is not None
                and not self.pods.get(ns, n)["metadata"].get("deletionTimestamp")}
        if not adds and not dels or time.monotonic() - since > 5:
            self.expect.pop(key, None)
            return True
        self.expect[key] = (adds, dels, since)
        return False

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        rs = self.rs.get(ns, name)
        if rs is None:
            self.expect.pop(key, None)
            return
        pods = self._owned(rs)
        active = [p for p in pods if pod_active(p)]
        if not rs["metadata"].get("deletionTimestamp") and self._expectations_met(key):
            want = (rs.get("spec") or {}).get("replicas", 1)
            diff = want - len(active)
            if diff > 0:
                await self._create(rs, min(diff, BURST), key)
            elif diff < 0:
                await self._delete(rs, active, min(-diff, BURST), key)
        await self._status(rs, active)

    async def _create(self, rs: dict, n: int, key: str) -> None:
        tmpl = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
        meta = tmpl.get("metadata") or {}
        made = set()
        for _ in range(n):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"generateName": f"{rs['metadata']['name']}-", "namespace": rs["metadata"]["namespace"],
                                "labels": dict(meta.get("labels") or {}),
                                "annotations": dict(meta.get("annotations") or {}),
                                "ownerReferences": [owner_ref(rs)]},
                   "spec": copy.deepcopy(tmpl.get("spec") or {})}
            if not pod["metadata"]["annotations"]:
                del pod["metadata"]["annotations"]
            out = await self.client.create("pods", pod)
            made.add(out["metadata"]["name"])
        self.expect[key] = (made, set(), time.monotonic())
        await self.event(rs, "SuccessfulCreate", f"Created pod: {', '.join(sorted(made))}")

    async def _delete(self, rs: dict, active: list[dict], n: int, key: str) -> None:
        # upstream's ranking: unassigned < assigned, pending < running, not ready < ready, newer < older
        def rank(p: dict) -> tuple:
            st = p.get("status") or {}
            return (bool((p.get("spec") or {}).get("nodeName")), {"Pending": 0, "Unknown": 1}.get(st.get("phase"), 2),
                    pod_ready(p), "".join(chr(255 - ord(c)) for c in p["metadata"].get("creationTimestamp", "")))
        victims = sorted(active, key=rank)[:n]
        for p in victims:
            await self.client.delete("pods", p["metadata"]["name"], p["metadata"]["namespace"])
        self.expect[key] = (set(), {p["metadata"]["name"] for p in victims}, time.monotonic())
        await self.event(rs, "SuccessfulDelete",
                         f"Deleted pod: {', '.join(p['metadata']['name'] for p in victims)}")

    async def _status(self, rs: dict, active: list[dict]) -> None:
        spec = rs.get("spec") or {}
        min_ready = spec.get("minReadySeconds", 0)
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        ready = [p for p in active if pod_ready(p)]
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(1 for p in active if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())),
            "readyReplicas": len(ready),
            "availableReplicas": sum(1 for p in ready if available(p, min_ready)),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
        if (rs.get("status") or {}) != status:
            new = dict(rs, status=status)
            await self.client.update(self.resource, new, subresource="status")
        if min_ready and len(ready) != status.get("availableReplicas", 0):
            self.enqueue(key_of(rs), min_ready)


def available(pod: dict, min_ready: int) -> bool:
    if not min_ready:
        return True
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True" and c.get("lastTransitionTime"):
            return clock.seconds_since(c["lastTransitionTime"]) >= min_ready
    return False


__all__ = ["ReplicaSetController", "matches", "available"]
