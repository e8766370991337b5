"""The PersistentVolume controller, as upstream's (pkg/controller/volume/persistentvolume), with
a local provisioner beside it as kind runs rancher's local-path-provisioner.

The binder: a Pending claim binds to the smallest Available volume that fits it (class, access
modes, volumeMode, selector, capacity) or to the volume it names or that names it; binding writes
the volume's claimRef and phase Bound, then the claim's volumeName, annotations and status
(phase Bound, accessModes, capacity). A claim whose class has a provisioner is annotated
`volume.kubernetes.io/storage-provisioner`; under WaitForFirstConsumer only once the scheduler has
chosen a node (`volume.kubernetes.io/selected-node`). A volume whose claim is gone is Released;
reclaimPolicy Delete removes it (a local one: its directory too), Retain keeps it Released.

The local provisioner (`rancher.io/local-path`, with --lab): a claim annotated for it and with a
selected node gets a volume `pvc-<claim uid>`: a directory `nodes/<node>/local-path/<pv>_<ns>_<claim>`
of the lab's state, a hostPath volume (DirectoryOrCreate) with node affinity to that node."""

from __future__ import annotations

import asyncio
import shutil
from fractions import Fraction
from pathlib import Path

from netlab.api import quantity
from netlab.api.client import ApiError
from netlab.api.selectors import selector_matches
from netlab.control.controllers.base import Controller, key_of, split_key
from netlab.kit.layout import Layout

LOCAL_PATH = "rancher.io/local-path"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
HOSTNAME = "kubernetes.io/hostname"


def claim_class(pvc: dict) -> str:
    annotations = pvc["metadata"].get("annotations") or {}
    return annotations.get(BETA_CLASS, (pvc.get("spec") or {}).get("storageClassName") or "")


def volume_class(pv: dict) -> str:
    annotations = pv["metadata"].get("annotations") or {}
    return annotations.get(BETA_CLASS, (pv.get("spec") or {}).get("storageClassName") or "")


def claim_request(pvc: dict) -> Fraction:
    req = (((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage", "0")
    return quantity.parse(req)


def refers_to(pv: dict, pvc: dict) -> bool:
    """Whether the volume's claimRef names this claim (a uid, if set, must be this claim's)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref or ref.get("name") != pvc["metadata"]["name"] or ref.get("namespace") != pvc["metadata"]["namespace"]:
        return False
    return not ref.get("uid") or ref["uid"] == pvc["metadata"]["uid"]


def fits(pv: dict, pvc: dict) -> bool:
    """Whether the volume can hold the claim (upstream's findMatchingVolume checks)."""
    spec, cspec = pv.get("spec") or {}, pvc.get("spec") or {}
    if pv["metadata"].get("deletionTimestamp") or volume_class(pv) != claim_class(pvc):
        return False
    if spec.get("volumeMode", "Filesystem") != cspec.get("volumeMode", "Filesystem"):
        return False
    if not set(cspec.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    if cspec.get("selector") and not selector_matches(cspec["selector"], pv["metadata"].get("labels") or {}):
        return False
    try:
        return quantity.parse((spec.get("capacity") or {}).get("storage", "0")) >= claim_request(pvc)
    except ValueError:
        return False


def find_volume(pvc: dict, pvs: list[dict]) -> dict | None:
    """The volume a Pending claim binds to: one that names it (pre-bound), else the one it names
    (spec.volumeName), else the smallest Available one that fits; None if none."""
    name = (pvc.get("spec") or {}).get("volumeName")
    for pv in pvs:
        if refers_to(pv, pvc) and fits(pv, pvc):
            return pv
    if name:
        pv = next((p for p in pvs if p["metadata"]["name"] == name), None)
        if pv is not None and (not (pv.get("spec") or {}).get("claimRef") or refers_to(pv, pvc)):
            return pv
        return None
    free = [p for p in pvs if not (p.get("spec") or {}).get("claimRef") and fits(p, pvc)]
    if not free:
        return None
    return min(free, key=lambda p: (quantity.parse((p["spec"].get("capacity") or {}).get("storage", "0")),
                                    p["metadata"]["name"]))


def volume_phase(pv: dict, claims: dict[tuple[str, str], dict]) -> str:
    """What a volume's phase should be, given the claims that exist."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return "Available"
    claim = claims.get((ref.get("namespace"), ref.get("name")))
    if claim is None or (ref.get("uid") and claim["metadata"]["uid"] != ref["uid"]):
        return "Released" if ref.get("uid") else "Available"  # a pre-bound volume waits for its claim
    if (claim.get("spec") or {}).get("volumeName") == pv["metadata"]["name"]:
        return "Bound"
    return (pv.get("status") or {}).get("phase") or "Available"


def local_volume(pvc: dict, sc: dict, node: str, path: Path) -> dict:
    """The PersistentVolume the local provisioner makes for a claim on `node`."""
    meta, spec = pvc["metadata"], pvc.get("spec") or {}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"pvc-{meta['uid']}",
                         "annotations": {PROVISIONED_BY: LOCAL_PATH, "local.path.provisioner/selected-node": node}},
            "spec": {"accessModes": list(spec.get("accessModes") or []),
                     "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {})["storage"]},
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                                  "name": meta["name"], "uid": meta["uid"],
                                  "resourceVersion": meta.get("resourceVersion")},
                     "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": HOSTNAME, "operator": "In", "values": [node]}]}]}},
                     "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                     "storageClassName": sc["metadata"]["name"], "volumeMode": spec.get("volumeMode", "Filesystem")}}


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder-controller"

    def __init__(self, ctx, lab: str = ""):
        super().__init__(ctx)
        self.layout = Layout(lab) if lab else None  # the local provisioner runs with a lab
        self.pvs = ctx.informer("persistentvolumes")
        self.pvcs = ctx.informer("persistentvolumeclaims")
        self.classes = ctx.informer("storageclasses")
        self.pvcs.add_handler(self._claim, lambda old, new: self._claim(new), self._claim)
        self.pvs.add_handler(self._volume, lambda old, new: self._volume(new), self._volume)
        self.recorded: set[tuple[str, str]] = set()

    def _claim(self, pvc: dict) -> None:
        self.enqueue("claim:" + key_of(pvc))
        for pv in self.pvs.list():
            if ((pv.get("spec") or {}).get("claimRef") or {}).get("name") == pvc["metadata"]["name"]:
                self.enqueue("volume:" + pv["metadata"]["name"])

    def _volume(self, pv: dict) -> None:
        self.enqueue("volume:" + pv["metadata"]["name"])
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref:
            self.enqueue(f"claim:{ref.get('namespace')}/{ref.get('name')}")
        else:  # a new free volume may fit a waiting claim
            for pvc in self.pvcs.list():
                if (pvc.get("status") or {}).get("phase") == "Pending":
                    self.enqueue("claim:" + key_of(pvc))

    async def sync(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "claim":
            await self.sync_claim(*split_key(rest))
        else:
            await self.sync_volume(rest)

    async def record_once(self, obj: dict, reason: str, message: str, type_: str = "Normal") -> None:
        mark = (obj["metadata"]["uid"], reason)
        if mark not in self.recorded:
            self.recorded.add(mark)
            await self.event(dict(obj, kind=obj.get("kind", "PersistentVolumeClaim"), apiVersion="v1"), reason,
                             message, type_)

    # --- claims ---------------------------------------------------------------------------

    async def sync_claim(self, namespace: str | None, name: str) -> None:
        pvc = self.pvcs.get(namespace, name)
        if pvc is None or pvc["metadata"].get("deletionTimestamp"):
            return
        spec, phase = pvc.get("spec") or {}, (pvc.get("status") or {}).get("phase")
        if phase == "Bound":
            pv = self.pvs.get(None, spec.get("volumeName", ""))
            if pv is None or not refers_to(pv, pvc):
                await self._claim_status(pvc, {"phase": "Lost"})
                await self.record_once(pvc, "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the "
                                       "volume is lost!", "Warning")
            return
        pv = find_volume(pvc, self.pvs.list())
        if pv is not None:
            await self.bind(pv, pvc)
            return
        cls = self.classes.get(None, claim_class(pvc)) if claim_class(pvc) else None
        if cls is None or cls.get("provisioner") == "kubernetes.io/no-provisioner":
            if not claim_class(pvc):
                await self.record_once(pvc, "FailedBinding", "no persistent volumes available for this claim and no "
                                       "storage class is set")
            elif cls is None:
                await self.record_once(pvc, "ProvisioningFailed", f'storageclass.storage.k8s.io "{claim_class(pvc)}" '
                                       "not found", "Warning")
            return
        annotations = pvc["metadata"].get("annotations") or {}
        if cls.get("volumeBindingMode") == "WaitForFirstConsumer" and SELECTED_NODE not in annotations:
            await self.record_once(pvc, "WaitForFirstConsumer", "waiting for first consumer to be created before "
                                   "binding")
            return
        if annotations.get(PROVISIONER) != cls["provisioner"]:
            await self.client.patch("persistentvolumeclaims", name, {"metadata": {"annotations": {
                PROVISIONER: cls["provisioner"], BETA_PROVISIONER: cls["provisioner"]}}}, namespace)
            await self.record_once(pvc, "ExternalProvisioning", "Waiting for a volume to be created either by the "
                                   f"external provisioner '{cls['provisioner']}' or manually by the system "
                                   "administrator. If volume creation is delayed, please verify that the provisioner "
                                   "is running and correctly registered.")
            return
        if cls["provisioner"] == LOCAL_PATH and self.layout is not None:
            await self.provision(pvc, cls)

    async def bind(self, pv: dict, pvc: dict) -> None:
        meta = pvc["metadata"]
        pv_name = pv["metadata"]["name"]
        if not refers_to(pv, pvc) or not pv["spec"]["claimRef"].get("uid"):
            ref = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                   "name": meta["name"], "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion")}
            pv = await self.client.patch("persistentvolumes", pv_name, {
                "metadata": {"annotations": {BOUND_BY_CONTROLLER: "yes"}}, "spec": {"claimRef": ref}})
        if (pv.get("status") or {}).get("phase") != "Bound":
            await self.client.patch("persistentvolumes", pv_name, {"status": {"phase": "Bound"}},
                                    subresource="status")
        patch: dict = {"metadata": {"annotations": {BIND_COMPLETED: "yes"}}}
        if (pvc.get("spec") or {}).get("volumeName") != pv_name:
            patch["metadata"]["annotations"][BOUND_BY_CONTROLLER] = "yes"
            patch["spec"] = {"volumeName": pv_name}
        await self.client.patch("persistentvolumeclaims", meta["name"], patch, meta["namespace"])
        spec = pv.get("spec") or {}
        await self.client.patch("persistentvolumeclaims", meta["name"], {"status": {
            "phase": "Bound", "accessModes": spec.get("accessModes") or [],
            "capacity": dict(spec.get("capacity") or {})}}, meta["namespace"], subresource="status")

    async def _claim_status(self, pvc: dict, status: dict) -> None:
        if all((pvc.get("status") or {}).get(k) == val for k, val in status.items()):
            return
        await self.client.patch("persistentvolumeclaims", pvc["metadata"]["name"], {"status": status},
                                pvc["metadata"]["namespace"], subresource="status")

    # --- the local provisioner -------------------------------------------------------------

    async def provision(self, pvc: dict, cls: dict) -> None:
        meta = pvc["metadata"]
        pv_name = f"pvc-{meta['uid']}"
        if self.pvs.get(None, pv_name) is not None:
            return
        node = meta["annotations"].get(SELECTED_NODE)
        if not node:
            await self.record_once(pvc, "ProvisioningFailed", "failed to provision volume with StorageClass "
                                   f'"{cls["metadata"]["name"]}": configuration error, no node was specified',
                                   "Warning")
            return
        await self.record_once(pvc, "Provisioning", f'External provisioner is provisioning volume for claim '
                               f'"{meta["namespace"]}/{meta["name"]}"')
        path = self.layout.node(node).local_volume(pv_name, meta["namespace"], meta["name"])
        await asyncio.to_thread(_make_dir, path)
        try:
            await self.client.create("persistentvolumes", local_volume(pvc, cls, node, path))
        except ApiError as e:
            if e.status != 409:
                await asyncio.to_thread(shutil.rmtree, path, True)
                raise
        await self.record_once(pvc, "ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}")

    # --- volumes --------------------------------------------------------------------------

    async def sync_volume(self, name: str) -> None:
        pv = self.pvs.get(None, name)
        if pv is None:
            return  # one being deleted is still synced: Released lets its pv-protection go
        claims = {(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in self.pvcs.list()}
        phase = volume_phase(pv, claims)
        current = (pv.get("status") or {}).get("phase")
        if phase == "Released" and current in ("Released", "Failed", "Bound", "Pending", "Available", None):
            await self.reclaim(pv, current)
            return
        if phase != current:
            await self.client.patch("persistentvolumes", name, {"status": {"phase": phase}}, subresource="status")

    async def reclaim(self, pv: dict, current: str | None) -> None:
        name, spec = pv["metadata"]["name"], pv.get("spec") or {}
        policy = spec.get("persistentVolumeReclaimPolicy", "Retain")
        if current not in ("Released", "Failed"):
            await self.client.patch("persistentvolumes", name, {"status": {"phase": "Released"}}, subresource="status")
        if policy != "Delete" or current == "Failed":
            return
        provisioned = (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY) == LOCAL_PATH
        if not provisioned or self.layout is None:
            message = f'error getting deleter volume plugin for volume "{name}": no deletable volume plugin matched'
            await self.client.patch("persistentvolumes", name, {"status": {"phase": "Failed", "message": message}},
                                    subresource="status")
            await self.record_once(dict(pv, kind="PersistentVolume"), "VolumeFailedDelete", message, "Warning")
            return
        path = Path((spec.get("hostPath") or {}).get("path", ""))
        if path.parent.name == "local-path" and path.parent.parent.parent == self.layout.state / "nodes":
            await asyncio.to_thread(shutil.rmtree, path, True)  # only ever a directory the provisioner made
        try:
            await self.client.delete("persistentvolumes", name)
        except ApiError as e:
            if e.status != 404:
                raise


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)  # as local-path-provisioner's helper makes it: any pod user writes there
