"""The Deployment controller: one ReplicaSet per pod template (named `<deployment>-<hash>`, labelled
`pod-template-hash`), rolling updates within maxSurge/maxUnavailable driven by readiness,
Recreate, revisions (`deployment.kubernetes.io/revision`) so `kubectl rollout undo` works, history
limited to revisionHistoryLimit, and the status and conditions `kubectl rollout status` reads."""

from __future__ import annotations

import copy
import json
import math

from netlab.control.controllers.base import Controller, controller_of, owner_ref, split_key
from netlab.control.controllers.history import safe_encode
from netlab.kit import clock

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
HASH_LABEL = "pod-template-hash"
# the Deployment's annotations its ReplicaSets do not copy (kubectl rollout undo keeps them too)
ANNOTATIONS_TO_SKIP = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
                       "deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas",
                       "deprecated.deployment.rollback.to"}
REVISION_HISTORY_CHARS = 2000  # upstream's revHistoryLimitInChars


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: dict, collisions: int = 0) -> str:
    """FNV-32a of the template (and the collision count), encoded as upstream's SafeEncodeString
    does: each character of the decimal number mapped into a vowel-free alphabet by its code."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collisions:
        data += str(collisions).encode()
    return safe_encode(str(fnv32a(data)))


def strip_hash(template: dict) -> dict:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    return t


def copyable(d: dict) -> dict:
    """The Deployment's annotations its ReplicaSets carry too (kubernetes.io/change-cause, ...)."""
    return {k: val for k, val in (d["metadata"].get("annotations") or {}).items() if k not in ANNOTATIONS_TO_SKIP}


def resolve(value, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        x = int(value[:-1]) * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(value or 0)


class DeploymentController(Controller):
    name = "deployment-controller"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.deps = ctx.informer("deployments")
        self.rs = ctx.informer("replicasets", "controller")
        self.pods = ctx.informer("pods")
        self.deps.add_handler(self.enqueue_obj, self.enqueue_obj, None)
        self.rs.add_handler(self._rs_changed, lambda old, new: self._rs_changed(new), self._rs_changed)

    def _rs_changed(self, rs: dict) -> None:
        ref = controller_of(rs)
        if ref and ref.get("kind") == "Deployment":
            self.enqueue(f"{rs['metadata']['namespace']}/{ref['name']}")

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        d = self.deps.get(ns, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        d = dict(d)  # its metadata is replaced below when the revision annotation is written
        spec = d.get("spec") or {}
        owned = self.rs.by_index("controller", d["metadata"]["uid"])
        template = spec.get("template") or {}
        new_rs = next((r for r in owned if strip_hash((r.get("spec") or {}).get("template") or {}) == template), None)
        old = [r for r in owned if r is not new_rs]
        revisions = [int((r["metadata"].get("annotations") or {}).get(REVISION, "0")) for r in owned]
        max_rev = max(revisions, default=0)
        replicas = spec.get("replicas", 1)
        if spec.get("paused"):
            await self._status(d, new_rs, old)
            return
        if new_rs is None:
            new_rs = await self._create_rs(d, max_rev + 1, old)
            if new_rs is None:
                return
        else:
            new_rs = await self._annotate_new_rs(d, new_rs, max_rev)
        await self._set_revision(d, (new_rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
        strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
        active_old = [r for r in old if (r.get("spec") or {}).get("replicas", 0) > 0]
        if strategy == "Recreate":
            for r in active_old:
                await self._scale(d, r, 0)
            if not any((r.get("status") or {}).get("replicas", 0) for r in old):
                await self._scale(d, new_rs, replicas)
        else:
            await self._roll(d, new_rs, active_old, replicas)
        await self._cleanup(d, old)
        await self._status(d, new_rs, old)

    async def _annotate_new_rs(self, d: dict, rs: dict, max_rev: int) -> dict:
        """The Deployment's own annotations copied onto its new ReplicaSet; one rolled back to
        becomes the newest revision and remembers the revisions it had (revision-history)."""
        have = rs["metadata"].get("annotations") or {}
        want = {k: val for k, val in copyable(d).items() if have.get(k) != val}
        rev = int(have.get(REVISION, "0") or 0)
        if rev < max_rev:
            want[REVISION] = str(max_rev + 1)
            if rev:
                history = [x for x in have.get(REVISION_HISTORY, "").split(",") if x] + [str(rev)]
                while len(",".join(history)) > REVISION_HISTORY_CHARS:
                    history.pop(0)
                want[REVISION_HISTORY] = ",".join(history)
        return await self._patch_rs(rs, annotations=want) if want else rs

    async def _set_revision(self, d: dict, revision: str) -> None:
        """The Deployment carries its newest revision, as upstream's controller writes it (and
        `kubectl rollout undo` patches its annotations, which must then exist)."""
        if (d["metadata"].get("annotations") or {}).get(REVISION) != revision:
            d["metadata"] = (await self.client.patch(
                "deployments", d["metadata"]["name"], {"metadata": {"annotations": {REVISION: revision}}},
                d["metadata"]["namespace"]))["metadata"]

    async def _create_rs(self, d: dict, revision: int, old: list[dict]) -> dict | None:
        spec = d["spec"]
        collisions = (d.get("status") or {}).get("collisionCount", 0)
        h = template_hash(spec["template"], collisions)
        tmpl = copy.deepcopy(spec["template"])
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        # a fresh Deployment starts at full size; a rollout starts at zero and grows by the surge
        start = spec.get("replicas", 1) if not any((r.get("spec") or {}).get("replicas") for r in old) else 0
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            start = 0
        max_surge = resolve(((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", "25%"),
                            spec.get("replicas", 1), True)
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{d['metadata']['name']}-{h}", "namespace": d["metadata"]["namespace"],
                           "labels": dict(tmpl["metadata"]["labels"]),
                           "annotations": {**copyable(d), REVISION: str(revision),
                                           "deployment.kubernetes.io/desired-replicas": str(spec.get("replicas", 1)),
                                           "deployment.kubernetes.io/max-replicas": str(spec.get("replicas", 1)
                                                                                        + max_surge)},
                           "ownerReferences": [owner_ref(d)]},
              "spec": {"replicas": start, "minReadySeconds": spec.get("minReadySeconds", 0), "selector": selector,
                       "template": tmpl}}
        from netlab.api.client import ApiError

        try:
            out = await self.client.create("replicasets", rs)
        except ApiError as e:
            if e.status == 409:  # a hash collision with someone else's ReplicaSet: count it and retry
                st = dict(d.get("status") or {}, collisionCount=collisions + 1)
                await self.client.update("deployments", dict(d, status=st), subresource="status")
                return None
            raise
        await self.event(d, "ScalingReplicaSet", f"Scaled up replica set {out['metadata']['name']} from 0 to {start}")
        return out

    async def _patch_rs(self, rs: dict, annotations: dict | None = None, replicas: int | None = None) -> dict:
        patch: dict = {}
        if annotations:
            patch["metadata"] = {"annotations": annotations}
        if replicas is not None:
            patch["spec"] = {"replicas": replicas}
        return await self.client.patch("replicasets", rs["metadata"]["name"], patch, rs["metadata"]["namespace"])

    async def _scale(self, d: dict, rs: dict, replicas: int) -> dict:
        cur = (rs.get("spec") or {}).get("replicas", 0)
        if cur == replicas:
            return rs
        d_replicas = str((d.get("spec") or {}).get("replicas", 1))
        out = await self._patch_rs(rs, annotations={"deployment.kubernetes.io/desired-replicas": d_replicas},
                                   replicas=replicas)
        verb = "up" if replicas > cur else "down"
        await self.event(d, "ScalingReplicaSet",
                         f"Scaled {verb} replica set {rs['metadata']['name']} from {cur} to {replicas}")
        return out

    async def _roll(self, d: dict, new_rs: dict, old: list[dict], replicas: int) -> None:
        ru = ((d["spec"].get("strategy") or {}).get("rollingUpdate")) or {}
        surge = resolve(ru.get("maxSurge", "25%"), replicas, True)
        unavailable = resolve(ru.get("maxUnavailable", "25%"), replicas, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        new_n = (new_rs.get("spec") or {}).get("replicas", 0)
        old_n = sum((r.get("spec") or {}).get("replicas", 0) for r in old)
        if not old:
            await self._scale(d, new_rs, replicas)  # no rollout under way: just follow spec.replicas
            return
        # scale up the new ReplicaSet within the surge
        allowed = replicas + surge - (new_n + old_n)
        if allowed > 0 and new_n < replicas:
            new_rs = await self._scale(d, new_rs, min(replicas, new_n + allowed))
            new_n = new_rs["spec"]["replicas"]
        # scale down old ones while enough pods stay available
        min_available = replicas - unavailable
        new_available = (new_rs.get("status") or {}).get("availableReplicas", 0)
        old_available = sum((r.get("status") or {}).get("availableReplicas", 0) for r in old)
        can_remove = (old_available + new_available) - min_available
        # unhealthy old pods first: they count for nothing
        for r in sorted(old, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            n = (r.get("spec") or {}).get("replicas", 0)
            unhealthy = n - (r.get("status") or {}).get("availableReplicas", 0)
            cut = min(n, max(0, unhealthy) + max(0, can_remove))
            if cut <= 0:
                continue
            can_remove -= max(0, cut - max(0, unhealthy))
            await self._scale(d, r, n - cut)

    async def _cleanup(self, d: dict, old: list[dict]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit", 10)
        idle = [r for r in old if not (r.get("spec") or {}).get("replicas") and not (r.get("status") or {}).get(
            "replicas") and not r["metadata"].get("deletionTimestamp")]
        idle.sort(key=lambda r: int((r["metadata"].get("annotations") or {}).get(REVISION, "0")))
        for r in idle[:max(0, len(idle) - limit)]:
            await self.client.delete("replicasets", r["metadata"]["name"], r["metadata"]["namespace"])

    async def _status(self, d: dict, new_rs: dict | None, old: list[dict]) -> None:
        spec = d.get("spec") or {}
        replicas = spec.get("replicas", 1)
        all_rs = ([new_rs] if new_rs else []) + old
        st_of = [(r.get("status") or {}) for r in all_rs]
        total = sum(s.get("replicas", 0) for s in st_of)
        available = sum(s.get("availableReplicas", 0) for s in st_of)
        ready = sum(s.get("readyReplicas", 0) for s in st_of)
        updated = (new_rs.get("status") or {}).get("replicas", 0) if new_rs else 0
        ru = ((spec.get("strategy") or {}).get("rollingUpdate")) or {}
        max_unavailable = resolve(ru.get("maxUnavailable", "25%"), replicas, False) \
            if (spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate" else 0
        old_conds = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}

        def cond(type_: str, status: str, reason: str, message: str) -> dict:
            prev = old_conds.get(type_)
            ts = clock.now()
            changed = not prev or prev.get("status") != status
            return {"type": type_, "status": status, "lastUpdateTime": ts if changed or prev.get("reason") != reason
                    else prev.get("lastUpdateTime", ts),
                    "lastTransitionTime": ts if changed else prev.get("lastTransitionTime", ts),
                    "reason": reason, "message": message}

        avail = cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.") \
            if available >= replicas - max_unavailable else \
            cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        complete = new_rs is not None and updated == replicas and available >= replicas and total == updated
        progressing = cond("Progressing", "True", "NewReplicaSetAvailable",
                           f'ReplicaSet "{rs_name}" has successfully progressed.') if complete else \
            cond("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        status = {"observedGeneration": d["metadata"].get("generation", 1), "replicas": total,
                  "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
                  "unavailableReplicas": max(0, replicas - available), "conditions": [avail, progressing]}
        if (d.get("status") or {}).get("collisionCount"):
            status["collisionCount"] = d["status"]["collisionCount"]
        status = {k: v for k, v in status.items() if v or k in ("observedGeneration", "conditions")}
        cur = dict(d.get("status") or {})

        def essence(s: dict) -> dict:
            return {k: ([{x: c.get(x) for x in ("type", "status", "reason")} for c in v] if k == "conditions" else v)
                    for k, v in s.items()}
        if essence(cur) != essence(status):
            await self.client.update("deployments", dict(d, status=status), subresource="status")
