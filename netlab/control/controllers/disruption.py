"""The disruption controller, as upstream's (pkg/controller/disruption): for each
PodDisruptionBudget, the pods it selects, how many should be healthy (minAvailable, or the
owners' scale less maxUnavailable; percents of the owners' scale), how many are (ready, not being
deleted, not just evicted), and so how many disruptions are allowed, with the DisruptionAllowed
condition. Evictions the API server let through stay in status.disruptedPods until their pod is
seen going (or two minutes pass)."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable

from netlab.api.client import KINDS, ApiError
from netlab.api.selectors import selector_matches
from netlab.control import pdbhelper
from netlab.control.controllers.base import Controller, controller_of, pod_ready, split_key
from netlab.kit import clock

DELETION_TIMEOUT = 120.0  # seconds an eviction's pod may take to show its deletion


def selects(pdb: dict, pod: dict) -> bool:
    """policy/v1: a null selector selects nothing, an empty one every pod of the namespace."""
    sel = (pdb.get("spec") or {}).get("selector")
    return sel is not None and pod["metadata"].get("namespace") == pdb["metadata"].get("namespace") and \
        selector_matches(sel, pod["metadata"].get("labels") or {})


def disrupted_map(pdb: dict, pods: list[dict], now: datetime.datetime) -> tuple[dict, float | None]:
    """buildDisruptedPodMap: the evictions still expected to show, and when to look again."""
    listed = (pdb.get("status") or {}).get("disruptedPods") or {}
    out, recheck = {}, None
    for p in pods:
        name = p["metadata"]["name"]
        if p["metadata"].get("deletionTimestamp") or name not in listed:
            continue
        expected = (clock.parse(listed[name]) - now).total_seconds() + DELETION_TIMEOUT
        if expected >= 0:
            out[name] = listed[name]
            recheck = expected if recheck is None else min(recheck, expected)
    return out, recheck


def count_healthy(pods: list[dict], disrupted: dict) -> int:
    return sum(1 for p in pods if not p["metadata"].get("deletionTimestamp") and p["metadata"]["name"] not in disrupted
               and pod_ready(p))


def desired(pdb: dict, pods: list[dict], scale: Callable[[list[dict]], int]) -> tuple[int, int]:
    """getExpectedPodCount: (expectedPods, desiredHealthy); raises ValueError when the owners'
    scale cannot be found."""
    spec = pdb.get("spec") or {}
    if spec.get("maxUnavailable") is not None:
        expected = scale(pods)
        unavailable = pdbhelper.scaled_value(spec["maxUnavailable"], expected, True)
        return expected, max(0, expected - unavailable)
    low = spec.get("minAvailable")
    if isinstance(low, int):
        return len(pods), low
    if low is not None:
        expected = scale(pods)
        return expected, pdbhelper.scaled_value(low, expected, True)
    return 0, 0


def new_status(pdb: dict, current: int, desired_healthy: int, expected: int, disrupted: dict) -> dict:
    """updatePdbStatus: the status to write (the old one when nothing changed)."""
    allowed = current - desired_healthy
    if expected <= 0 or allowed <= 0:
        allowed = 0
    old = pdb.get("status") or {}
    status = {"observedGeneration": pdb["metadata"].get("generation", 1), "disruptedPods": disrupted,
              "disruptionsAllowed": allowed, "currentHealthy": current, "desiredHealthy": desired_healthy,
              "expectedPods": expected, "conditions": old.get("conditions") or []}
    if not disrupted:
        del status["disruptedPods"]
    status["conditions"] = pdbhelper.disruption_allowed_condition(status)
    return status


class DisruptionController(Controller):
    name = "disruption-controller"

    def __init__(self, ctx, now: Callable[[], datetime.datetime] = clock.utcnow):
        super().__init__(ctx)
        self.now = now
        self.pdbs = ctx.informer("poddisruptionbudgets")
        self.pods = ctx.informer("pods")
        self.replicasets = ctx.informer("replicasets")
        self.deployments = ctx.informer("deployments")
        self.rcs = ctx.informer("replicationcontrollers")
        self.pdbs.add_handler(self.enqueue_obj, lambda old, new: self.enqueue_obj(new), None)
        self.pods.add_handler(self._pod_changed, self._pod_updated, self._pod_changed)
        for inf in (self.replicasets, self.deployments, self.rcs):  # a new scale changes the budget's arithmetic
            inf.add_handler(None, lambda old, new: self._owner_scaled(old, new), None)

    def _pod_changed(self, pod: dict) -> None:
        for pdb in self.pdbs.list():
            if selects(pdb, pod):
                self.enqueue_obj(pdb)

    def _pod_updated(self, old: dict, new: dict) -> None:
        self._pod_changed(old)
        self._pod_changed(new)

    def _owner_scaled(self, old: dict, new: dict) -> None:
        if (old.get("spec") or {}).get("replicas") != (new.get("spec") or {}).get("replicas"):
            for pdb in self.pdbs.list():
                if pdb["metadata"].get("namespace") == new["metadata"].get("namespace"):
                    self.enqueue_obj(pdb)

    # --- the owners' scale -------------------------------------------------------------------

    def _get(self, kind: str, ns: str, name: str) -> dict | None:
        inf = {"ReplicaSet": self.replicasets, "Deployment": self.deployments, "ReplicationController": self.rcs}.get(kind)
        return inf.get(ns, name) if inf is not None else None

    async def _scale_of(self, ref: dict, ns: str) -> tuple[str, int] | None:
        """(uid, replicas) of the controller that scales a pod: its ReplicationController, its
        ReplicaSet's Deployment, its ReplicaSet, or any owner with a scale subresource."""
        kind = ref.get("kind")
        owner = self._get(kind, ns, ref["name"])
        if kind == "ReplicaSet" and owner is not None and owner["metadata"]["uid"] == ref.get("uid"):
            up = controller_of(owner)
            if up is not None and up.get("kind") == "Deployment":
                dep = self._get("Deployment", ns, up["name"])
                if dep is None or dep["metadata"]["uid"] != up.get("uid"):
                    return None
                return dep["metadata"]["uid"], (dep.get("spec") or {}).get("replicas", 1)
        if owner is None and kind in KINDS and kind not in ("ReplicaSet", "ReplicationController", "Deployment"):
            try:  # a kind this process does not watch (a StatefulSet): its scale subresource
                scale = await self.client.get(KINDS[kind], ref["name"], ns, subresource="scale")
            except ApiError as e:
                if e.status == 404:
                    return None
                raise
            return scale["metadata"].get("uid", ref.get("uid")), (scale.get("spec") or {}).get("replicas", 0)
        if owner is None or owner["metadata"]["uid"] != ref.get("uid"):
            return None
        return owner["metadata"]["uid"], (owner.get("spec") or {}).get("replicas", 1)

    async def expected_scale(self, pods: list[dict]) -> tuple[int, list[str]]:
        """getExpectedScale: the sum of the pods' controllers' replicas, and the unmanaged pods."""
        scales: dict[str, int] = {}
        unmanaged: list[str] = []
        for p in pods:
            ref = controller_of(p)
            if ref is None:
                unmanaged.append(p["metadata"]["name"])
                continue
            if ref.get("uid") in scales:
                continue
            found = await self._scale_of(ref, p["metadata"]["namespace"])
            if found is None:
                raise ValueError(f'found no controllers for pod "{p["metadata"]["name"]}"')
            scales[found[0]] = found[1]
        return sum(scales.values()), unmanaged

    # --- sync ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        pdb = self.pdbs.get(ns, name)
        if pdb is None:
            return
        try:
            await self._try_sync(key, pdb)
        except ApiError as e:
            if e.status == 409:
                raise
            await self._fail_safe(pdb, str(e))
            raise
        except ValueError as e:
            await self._fail_safe(pdb, str(e))
            raise ApiError(500, "SyncFailed", str(e)) from None  # retried with back-off

    async def _try_sync(self, key: str, pdb: dict) -> None:
        pods = [p for p in self.pods.list() if selects(pdb, p)]
        if not pods:
            await self.event(pdb, "NoPods", "No matching pods found")
        spec = pdb.get("spec") or {}
        needs_scale = spec.get("maxUnavailable") is not None or isinstance(spec.get("minAvailable"), str)
        scale, unmanaged = (await self.expected_scale(pods)) if needs_scale else (0, [])
        try:
            expected, want = desired(pdb, pods, lambda _: scale)
        except ValueError as e:
            await self.event(pdb, "CalculateExpectedPodCountFailed", f"Failed to calculate the number of expected pods: "
                             f"{e}", "Warning")
            raise
        if unmanaged:
            await self.event(pdb, "UnmanagedPods", f"Pods selected by this PodDisruptionBudget (selector: "
                             f"{spec.get('selector')}) were found to be unmanaged. As a result, the status of the PDB "
                             "cannot be calculated correctly, which may result in undefined behavior. To account for "
                             'these pods please set ".spec.minAvailable" field of the PDB to an integer value.',
                             "Warning")
        now = self.now()
        disrupted, recheck = disrupted_map(pdb, pods, now)
        current = count_healthy(pods, disrupted)
        old = pdb.get("status") or {}
        status = new_status(pdb, current, want, expected, disrupted)
        unchanged = all(old.get(k, 0) == status[k] for k in ("currentHealthy", "desiredHealthy", "expectedPods",
                                                              "disruptionsAllowed")) and \
            (old.get("disruptedPods") or {}) == disrupted and pdbhelper.conditions_up_to_date(pdb)
        if not unchanged:
            await self.client.update("poddisruptionbudgets", dict(pdb, status=status), subresource="status")
        if recheck is not None:
            self.enqueue(key, recheck)

    async def _fail_safe(self, pdb: dict, message: str) -> None:
        """failSafe: no disruptions allowed, and the condition saying why."""
        status = copy.deepcopy(pdb.get("status") or {})
        status["disruptionsAllowed"] = 0
        status["conditions"] = pdbhelper.set_condition(status.get("conditions") or [], {
            "type": "DisruptionAllowed", "status": "False", "reason": pdbhelper.SYNC_FAILED, "message": message,
            "observedGeneration": status.get("observedGeneration", 0)})
        try:
            await self.client.update("poddisruptionbudgets", dict(pdb, status=status), subresource="status")
        except ApiError:
            pass
