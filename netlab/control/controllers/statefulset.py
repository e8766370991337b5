"""The StatefulSet controller, as upstream's: pods with stable names `<set>-<ordinal>` (from
spec.ordinals.start), each with hostname = its name and subdomain = spec.serviceName (so the
headless Service's EndpointSlices publish `web-0` and DNS answers `web-0.<svc>.<ns>.svc`), the
labels statefulset.kubernetes.io/pod-name, apps.kubernetes.io/pod-index and
controller-revision-hash; made one at a time in ordinal order, each waiting for the one before to
be Running and Ready, and removed highest first (OrderedReady), or all at once (Parallel); the
template's history in ControllerRevisions; rolling updates from the highest ordinal down to the
partition, one pod at a time, or none (OnDelete); the volumeClaimTemplates' claims
`<claim>-<set>-<ordinal>` mounted in each pod (and made where PersistentVolumeClaims are served);
and the status `kubectl rollout status` reads."""

from __future__ import annotations

import copy
import logging

from netlab.api.client import ApiError
from netlab.control.controllers.base import (Controller, controller_of, matches, owner_ref, pod_ready, split_key)
from netlab.control.controllers.history import (History, new_revision, next_revision, revision_hash, template_of,
                                                template_patch)
from netlab.control.controllers.replicaset import available

log = logging.getLogger("netlab.controllers")

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"


def ordinal(sts: dict, pod: dict) -> int | None:
    """The ordinal in a member's name `<set>-<n>`; None for a pod that is not one."""
    prefix, _, n = pod["metadata"]["name"].rpartition("-")
    if prefix != sts["metadata"]["name"] or not n.isdigit() or (len(n) > 1 and n[0] == "0"):
        return None
    return int(n)


def terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def running_and_ready(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and pod_ready(pod)


def healthy(pod: dict) -> bool:
    return running_and_ready(pod) and not terminating(pod)


def finished(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def claim_name(template: dict, sts: dict, n: int) -> str:
    return f"{template['metadata']['name']}-{sts['metadata']['name']}-{n}"


class StatefulSetController(Controller):
    name = "statefulset-controller"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.sets = ctx.informer("statefulsets")
        self.pods = ctx.informer("pods", "controller", "namespace")
        self.revisions = ctx.informer("controllerrevisions", "controller")
        self.history = History(self.client, self.revisions)
        self.sets.add_handler(self.enqueue_obj, self.enqueue_obj, None)
        self.pods.add_handler(self._pod_changed, lambda old, new: (self._pod_changed(old), self._pod_changed(new)),
                              self._pod_changed)
        self.revisions.add_handler(self._owner_changed, None, self._owner_changed)

    def _owner_changed(self, obj: dict) -> None:
        ref = controller_of(obj)
        if ref and ref.get("kind") == "StatefulSet":
            self.enqueue(f"{obj['metadata']['namespace']}/{ref['name']}")

    def _pod_changed(self, pod: dict) -> None:
        ref = controller_of(pod)
        if ref:
            self._owner_changed(pod)
            return
        ns = pod["metadata"]["namespace"]  # an orphan: a set whose selector takes it may adopt it
        for s in self.sets.list():
            if s["metadata"]["namespace"] == ns and matches((s.get("spec") or {}).get("selector"),
                                                            pod["metadata"].get("labels")):
                self.enqueue(f"{ns}/{s['metadata']['name']}")

    # --- the pods the set owns --------------------------------------------------------------

    async def _claim(self, sts: dict) -> list[dict]:
        """Its pods: those it controls that its selector still selects (the rest are released),
        and orphans named as its members that it selects (adopted), as upstream's ClaimPods."""
        uid, ns = sts["metadata"]["uid"], sts["metadata"]["namespace"]
        selector = (sts.get("spec") or {}).get("selector")
        out = []
        for p in self.pods.by_index("controller", uid):
            if matches(selector, p["metadata"].get("labels")) and ordinal(sts, p) is not None:
                out.append(p)
            elif not terminating(p):
                refs = [r for r in p["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                await self._patch_pod(p, {"metadata": {"ownerReferences": refs or None,
                                                       "uid": p["metadata"]["uid"]}})
        if sts["metadata"].get("deletionTimestamp"):
            return out
        for p in self.pods.by_index("namespace", ns):
            if controller_of(p) is None and not terminating(p) and ordinal(sts, p) is not None \
                    and matches(selector, p["metadata"].get("labels")):
                refs = list(p["metadata"].get("ownerReferences") or []) + [owner_ref(sts)]
                adopted = await self._patch_pod(p, {"metadata": {"ownerReferences": refs,
                                                                 "uid": p["metadata"]["uid"]}})
                if adopted:
                    out.append(adopted)
        return out

    async def _patch_pod(self, pod: dict, patch: dict) -> dict | None:
        try:
            return await self.client.patch("pods", pod["metadata"]["name"], patch, pod["metadata"]["namespace"])
        except ApiError as e:
            if e.status in (404, 409, 422):
                return None
            raise

    # --- revisions ---------------------------------------------------------------------------

    async def _revisions(self, sts: dict, revisions: list[dict]) -> tuple[dict, dict, int]:
        """(current, update, collisionCount), as upstream's getStatefulSetRevisions: the update
        revision is the set's template now (an older revision with the same template is
        renumbered the newest), the current one what status.currentRevision names."""
        status = sts.get("status") or {}
        collisions = status.get("collisionCount", 0)
        data = template_patch(sts)
        equal = [r for r in revisions if r.get("data") == data]
        if equal and equal[-1] is revisions[-1]:
            update = equal[-1]
        elif equal:
            update = await self.history.renumber(equal[-1], next_revision(revisions))
        else:
            labels = ((sts["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
            rev = new_revision(sts, data, next_revision(revisions), labels, revision_hash(data, collisions))
            try:
                update = await self.history.create(rev)
            except ApiError as e:
                if e.status != 409:
                    raise
                await self._write_status(sts, dict(status, collisionCount=collisions + 1))
                raise
        current = next((r for r in revisions if r["metadata"]["name"] == status.get("currentRevision")), update)
        return current, update, collisions

    # --- the sync ---------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        sts = self.sets.get(ns, name)
        if sts is None:
            return
        pods = await self._claim(sts)
        revisions = self.history.owned(sts)
        current, update, collisions = await self._revisions(sts, revisions)
        replicas, condemned = self._split(sts, pods)
        if not sts["metadata"].get("deletionTimestamp"):
            if (sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled") == "Delete":
                for pod in condemned:
                    await self._claims_owned_by(sts, pod)
            await self._update_pods(sts, current, update, replicas, condemned)
        pods = [p for p in (list(replicas.values()) + condemned) if p is not None]
        status = self._status(sts, pods, current, update, collisions)
        await self._write_status(sts, status)
        live = {current["metadata"]["name"], update["metadata"]["name"]} | {
            (p["metadata"].get("labels") or {}).get(REVISION_LABEL, "") for p in pods}
        await self.history.truncate(sts, self.history.owned(sts), live)
        min_ready = sts["spec"].get("minReadySeconds", 0)
        if min_ready and any(running_and_ready(p) and not available(p, min_ready) for p in pods):
            self.enqueue(key, min_ready)

    def _split(self, sts: dict, pods: list[dict]) -> tuple[dict[int, dict | None], list[dict]]:
        """The pods for the ordinals the set wants (None where one is missing), and the
        condemned rest, highest ordinal first."""
        spec = sts.get("spec") or {}
        start = (spec.get("ordinals") or {}).get("start", 0)
        want = range(start, start + spec.get("replicas", 1))
        replicas: dict[int, dict | None] = {n: None for n in want}
        condemned = []
        for p in pods:
            n = ordinal(sts, p)
            if n in replicas:
                replicas[n] = p
            else:
                condemned.append(p)
        condemned.sort(key=lambda p: ordinal(sts, p) or 0, reverse=True)
        return replicas, condemned

    async def _update_pods(self, sts: dict, current: dict, update: dict, replicas: dict[int, dict | None],
                           condemned: list[dict]) -> None:
        spec = sts["spec"]
        monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        min_ready = spec.get("minReadySeconds", 0)
        strategy = spec.get("updateStrategy") or {}
        partition = (strategy.get("rollingUpdate") or {}).get("partition", 0) \
            if strategy.get("type", "RollingUpdate") == "RollingUpdate" else None
        start = min(replicas, default=0)
        unhealthy = [p for p in list(replicas.values()) + condemned if p is not None and not healthy(p)]
        first_unhealthy = min(unhealthy, key=lambda p: ordinal(sts, p) or 0, default=None)

        # the wanted ordinals, lowest first: finished pods go, missing ones are made
        for n, pod in replicas.items():
            if pod is not None and finished(pod):
                if not terminating(pod):
                    await self._delete_pod(sts, pod)
                if monotonic:
                    return
                continue  # made again once it is gone
            if pod is None:
                use_current = partition is not None and n < start + partition
                revision = current if use_current else update
                replicas[n] = await self._create_pod(sts, template_of(revision), revision["metadata"]["name"], n)
                if monotonic:
                    return
                continue
            if terminating(pod) and monotonic:
                return
            if monotonic and (not running_and_ready(pod) or not available(pod, min_ready)):
                return  # waiting for it to be Running and Ready
            await self._fix_identity(sts, pod, n)

        # the condemned, highest first
        for pod in condemned:
            if terminating(pod):
                if monotonic:
                    return
                continue
            if monotonic and pod is not first_unhealthy and (not running_and_ready(pod)
                                                               or not available(pod, min_ready)):
                return
            await self._delete_pod(sts, pod)
            if monotonic:
                return

        if partition is None:
            return  # OnDelete: a pod takes the new template when someone deletes it
        # rolling update: from the highest ordinal down to the partition, one pod at a time
        for n in sorted(replicas, reverse=True):
            if n < start + partition:
                break
            pod = replicas[n]
            if pod is None:
                return
            if (pod["metadata"].get("labels") or {}).get(REVISION_LABEL) != update["metadata"]["name"] \
                    and not terminating(pod):
                await self._delete_pod(sts, pod)
                return
            if not healthy(pod):
                return

    def _new_pod(self, sts: dict, template: dict, revision: str, n: int) -> dict:
        meta = template.get("metadata") or {}
        name = f"{sts['metadata']['name']}-{n}"
        labels = dict(meta.get("labels") or {})
        labels.update({POD_NAME_LABEL: name, POD_INDEX_LABEL: str(n), REVISION_LABEL: revision})
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": sts["metadata"]["namespace"], "labels": labels,
                            "ownerReferences": [owner_ref(sts)]},
               "spec": copy.deepcopy(template.get("spec") or {})}
        for k in ("annotations", "finalizers"):
            if meta.get(k):
                pod["metadata"][k] = copy.deepcopy(meta[k])
        pod["spec"]["hostname"] = name
        if sts["spec"].get("serviceName"):
            pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
        claims = sts["spec"].get("volumeClaimTemplates") or []
        names = {c["metadata"]["name"] for c in claims}
        pod["spec"]["volumes"] = [{"name": c["metadata"]["name"],
                                   "persistentVolumeClaim": {"claimName": claim_name(c, sts, n)}} for c in claims] + [
            v for v in pod["spec"].get("volumes") or [] if v.get("name") not in names]
        if not pod["spec"]["volumes"]:
            del pod["spec"]["volumes"]
        return pod

    async def _create_pod(self, sts: dict, template: dict, revision: str, n: int) -> dict | None:
        pod = self._new_pod(sts, template, revision, n)
        await self._create_claims(sts, pod, n)
        set_name = sts["metadata"]["name"]
        try:
            out = await self.client.create("pods", pod)
        except ApiError as e:
            if e.status == 409:  # it exists already: the informer has not shown it yet
                return None
            await self.event(sts, "FailedCreate", f"create Pod {pod['metadata']['name']} in StatefulSet {set_name} "
                             f"failed error: {e}", "Warning")
            raise
        await self.event(sts, "SuccessfulCreate",
                         f"create Pod {pod['metadata']['name']} in StatefulSet {set_name} successful")
        return out

    async def _create_claims(self, sts: dict, pod: dict, n: int) -> None:
        """The pod's PersistentVolumeClaims `<template>-<set>-<ordinal>`, made if missing."""
        claims = sts["spec"].get("volumeClaimTemplates") or []
        if not claims:
            return
        selector = (sts["spec"].get("selector") or {}).get("matchLabels") or {}
        retention = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        for c in claims:
            body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim_name(c, sts, n), "namespace": sts["metadata"]["namespace"],
                                 "labels": {**(c["metadata"].get("labels") or {}), **selector}},
                    "spec": copy.deepcopy(c.get("spec") or {})}
            if retention.get("whenDeleted") == "Delete":
                body["metadata"]["ownerReferences"] = [owner_ref(sts)]
            try:
                await self.client.create("persistentvolumeclaims", body)
            except ApiError as e:
                if e.status != 409:
                    raise
                continue
            await self.event(sts, "SuccessfulCreate", f"create Claim {body['metadata']['name']} Pod "
                             f"{pod['metadata']['name']} in StatefulSet {sts['metadata']['name']} success")

    async def _claims_owned_by(self, sts: dict, pod: dict) -> None:
        """whenScaled: Delete: a condemned pod owns its claims, so the garbage collector removes
        them once the pod is gone (as upstream marks them)."""
        n = ordinal(sts, pod)
        ref = {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"],
               "controller": False, "blockOwnerDeletion": True}
        for c in sts["spec"].get("volumeClaimTemplates") or []:
            name = claim_name(c, sts, n)
            try:
                claim = await self.client.get("persistentvolumeclaims", name, sts["metadata"]["namespace"])
            except ApiError as e:
                if e.status == 404:
                    continue
                raise
            refs = claim["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == ref["uid"] for r in refs):
                await self.client.patch("persistentvolumeclaims", name, {"metadata": {
                    "ownerReferences": refs + [ref], "resourceVersion": claim["metadata"]["resourceVersion"]}},
                    sts["metadata"]["namespace"])

    async def _delete_pod(self, sts: dict, pod: dict) -> None:
        try:
            await self.client.delete("pods", pod["metadata"]["name"], pod["metadata"]["namespace"])
        except ApiError as e:
            if e.status == 404:
                return
            raise
        await self.event(sts, "SuccessfulDelete",
                         f"delete Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']} successful")

    async def _fix_identity(self, sts: dict, pod: dict, n: int) -> None:
        """A member whose identity labels went astray gets them back (upstream's identityMatches)."""
        labels = pod["metadata"].get("labels") or {}
        want = {POD_NAME_LABEL: pod["metadata"]["name"], POD_INDEX_LABEL: str(n)}
        if any(labels.get(k) != val for k, val in want.items()):
            await self._patch_pod(pod, {"metadata": {"labels": want}})

    # --- status -----------------------------------------------------------------------------

    def _status(self, sts: dict, pods: list[dict], current: dict, update: dict, collisions: int) -> dict:
        spec = sts["spec"]
        min_ready = spec.get("minReadySeconds", 0)
        cur, upd = current["metadata"]["name"], update["metadata"]["name"]
        created = [p for p in pods if (p.get("status") or {}).get("phase")]
        ready = [p for p in pods if running_and_ready(p)]
        alive = [(p["metadata"].get("labels") or {}).get(REVISION_LABEL) for p in created if not terminating(p)]
        status = {"observedGeneration": sts["metadata"].get("generation", 1), "replicas": len(created),
                  "readyReplicas": len(ready), "currentReplicas": alive.count(cur), "updatedReplicas": alive.count(upd),
                  "availableReplicas": sum(1 for p in ready if available(p, min_ready)),
                  "currentRevision": cur, "updateRevision": upd, "collisionCount": collisions}
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        if rolling and status["updatedReplicas"] == status["replicas"] == status["readyReplicas"]:
            status["currentReplicas"], status["currentRevision"] = status["updatedReplicas"], upd
        # what upstream's JSON omits when empty
        return {k: v for k, v in status.items()
                if v or k in ("observedGeneration", "replicas", "availableReplicas", "collisionCount")}

    async def _write_status(self, sts: dict, status: dict) -> None:
        if (sts.get("status") or {}) != status:
            await self.client.update("statefulsets", dict(sts, status=status), subresource="status")
