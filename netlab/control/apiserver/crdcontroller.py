"""The controllers upstream's apiextensions-apiserver runs in-process, for what cannot happen on
the write itself: the finalizer customresourcecleanup.apiextensions.k8s.io (a deleted CRD's
custom resources are deleted, then the CRD), and the naming controller's second look (a CRD
whose names were taken gets them once the CRD holding them is gone). It watches the CRDs in the
store, as upstream's controllers watch them through an informer."""

from __future__ import annotations

import asyncio
import copy
import logging

from netlab.api.resources import lookup
from netlab.control.apiserver.errors import APIError
from netlab.control.apiserver.objects import ListOptions, Objects
from netlab.control.apiserver.store import Gone
from netlab.control.apiserver.strategies.customresourcedefinitions import (FINALIZER, NAME_FIELDS, accept_names,
                                                                          is_true, set_condition)

log = logging.getLogger("netlab.apiserver.crd")
CRDS = lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
POLL = 0.5  # how often custom resources held by their own finalizers are looked at again


class CRDController:
    def __init__(self, objects: Objects):
        self.objects = objects
        self.store = objects.store
        self.wake = asyncio.Event()

    def crds(self) -> list[dict]:
        return self.objects.list(CRDS, None, ListOptions())["items"]

    async def run(self) -> None:
        watcher = asyncio.create_task(self._watch())
        try:
            while True:
                self.wake.clear()
                try:
                    busy = await self.sync()
                except Exception:  # noqa: BLE001 - a controller keeps going, as upstream's requeue
                    log.exception("CRD sync failed")
                    busy = True
                try:
                    await asyncio.wait_for(self.wake.wait(), POLL if busy else 30)
                except asyncio.TimeoutError:
                    pass
        finally:
            watcher.cancel()

    async def _watch(self) -> None:
        prefix = self.objects.key(CRDS, None)
        while True:
            since = self.store.revision()
            try:
                async for _ in self.store.watch(prefix, since):
                    self.objects.kinds.custom.invalidate()
                    self.wake.set()
            except Gone:
                continue
            except Exception:  # noqa: BLE001
                log.exception("CRD watch failed")
                await asyncio.sleep(1)

    async def sync(self) -> bool:
        """One pass over the CRDs; whether work is left (custom resources still going)."""
        busy = False
        for crd in self.crds():
            meta = crd["metadata"]
            if meta.get("deletionTimestamp"):
                if FINALIZER in (meta.get("finalizers") or []):
                    busy |= not self.finalize(crd)
            elif self._names_differ(crd):
                self.rename(crd)
            await asyncio.sleep(0)
        return busy

    @staticmethod
    def _names_differ(crd: dict) -> bool:
        want = (crd.get("spec") or {}).get("names") or {}
        have = (crd.get("status") or {}).get("acceptedNames") or {}
        return {k: want.get(k) for k in NAME_FIELDS} != {k: have.get(k) for k in NAME_FIELDS}

    def rename(self, crd: dict) -> None:
        new = copy.deepcopy(crd)
        accept_names(new, self.crds())
        if new.get("status") != crd.get("status"):
            self._update_status(new)

    def _update_status(self, crd: dict) -> dict | None:
        try:
            return self.objects.update(CRDS, None, crd["metadata"]["name"], crd, "status")
        except APIError as e:
            if e.code not in (404, 409):
                raise
            return None

    def finalize(self, crd: dict) -> bool:
        """upstream's CRD finalizer: delete the custom resources, then the finalizer. Whether done."""
        name = crd["metadata"]["name"]
        spec = crd.get("spec") or {}
        if is_true(crd, "Established"):
            set_condition(crd, "Terminating", "True", "InstanceDeletionInProgress", "CustomResource deletion is in "
                          "progress")
            crd = self._update_status(crd) or crd
            left = self._delete_instances(crd)
            if left:
                return False
            set_condition(crd, "Terminating", "False", "InstanceDeletionCompleted", "removed all instances")
        else:
            set_condition(crd, "Terminating", "False", "NeverEstablished", "resource was never established")
        crd = self._update_status(crd)
        if crd is None:
            return True
        crd["metadata"]["finalizers"] = [f for f in crd["metadata"].get("finalizers") or [] if f != FINALIZER]
        try:
            self.objects.update(CRDS, None, name, crd)
        except APIError as e:
            if e.code not in (404, 409):
                raise
        log.info("custom resource definition %s: instances removed (%s)", name, spec.get("group"))
        return True

    def _delete_instances(self, crd: dict) -> int:
        """Delete every custom resource of the CRD; how many are still there."""
        spec = crd.get("spec") or {}
        plural = ((crd.get("status") or {}).get("acceptedNames") or {}).get("plural") or spec["names"]["plural"]
        r = next((r for v in spec.get("versions") or []
                  if (r := self.objects.lookup(spec["group"], v.get("name", ""), plural)) is not None), None)
        if r is None:
            return 0
        items, _ = self.store.list(self.objects.key(r, None))
        left = 0
        for o in items:
            left += 1
            if o["metadata"].get("deletionTimestamp"):
                continue
            try:
                self.objects.delete(r, o["metadata"].get("namespace"), o["metadata"]["name"], None, "Background")
            except APIError as e:
                if e.code != 404:
                    raise
        return len(self.store.list(self.objects.key(r, None))[0]) if left else 0
