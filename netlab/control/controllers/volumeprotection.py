"""The PVC and PV protection controllers, as upstream's: a claim being deleted keeps its
`kubernetes.io/pvc-protection` finalizer while a pod that is not done uses it; a volume being
deleted keeps `kubernetes.io/pv-protection` while it is Bound."""

from __future__ import annotations

from netlab.api.client import ApiError
from netlab.control.controllers.base import Controller, split_key
from netlab.control.volumebinding import claim_names

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"


def in_use(pvc: dict, pods: list[dict]) -> bool:
    ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
    return any(p["metadata"]["namespace"] == ns and name in claim_names(p)
               and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for p in pods)


async def drop_finalizer(client, resource: str, obj: dict, finalizer: str) -> None:
    finalizers = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
    patch = {"metadata": {"finalizers": finalizers or None, "resourceVersion": obj["metadata"]["resourceVersion"]}}
    try:
        await client.patch(resource, obj["metadata"]["name"], patch, obj["metadata"].get("namespace"))
    except ApiError as e:
        if e.status != 404:
            raise  # a conflict: tried again with the newer object


class PVCProtectionController(Controller):
    name = "persistentvolumeclaim-protection-controller"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.pvcs = ctx.informer("persistentvolumeclaims")
        self.pods = ctx.informer("pods")
        self.pvcs.add_handler(self.enqueue_obj, lambda old, new: self.enqueue_obj(new), None)
        self.pods.add_handler(None, lambda old, new: self._pod(new), self._pod)

    def _pod(self, pod: dict) -> None:
        for name in claim_names(pod):
            self.enqueue(f"{pod['metadata']['namespace']}/{name}")

    async def sync(self, key: str) -> None:
        pvc = self.pvcs.get(*split_key(key))
        if pvc is None or not pvc["metadata"].get("deletionTimestamp") \
                or PVC_PROTECTION not in (pvc["metadata"].get("finalizers") or []):
            return
        if not in_use(pvc, self.pods.list()):
            await drop_finalizer(self.client, "persistentvolumeclaims", pvc, PVC_PROTECTION)


class PVProtectionController(Controller):
    name = "persistentvolume-protection-controller"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.pvs = ctx.informer("persistentvolumes")
        self.pvs.add_handler(self.enqueue_obj, lambda old, new: self.enqueue_obj(new), None)

    async def sync(self, key: str) -> None:
        pv = self.pvs.get(None, key)
        if pv is None or not pv["metadata"].get("deletionTimestamp") \
                or PV_PROTECTION not in (pv["metadata"].get("finalizers") or []):
            return
        if (pv.get("status") or {}).get("phase") != "Bound":
            await drop_finalizer(self.client, "persistentvolumes", pv, PV_PROTECTION)

