"""PersistentVolumes (cluster-scoped): upstream's defaults (reclaim policy Retain, volumeMode
Filesystem, phase Pending until the binder looks), ValidatePersistentVolumeSpec's rules for the
sources netlab serves (hostPath, local with its required nodeAffinity), the source fixed once
made, and kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.api import quantity
from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base

ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
RECLAIM_POLICIES = ["Delete", "Recycle", "Retain"]
VOLUME_MODES = ["Block", "Filesystem"]
# the volume sources of a PersistentVolumeSpec (its inline PersistentVolumeSource)
SOURCES = ("hostPath", "gcePersistentDisk", "awsElasticBlockStore", "glusterfs", "flocker", "nfs", "rbd", "quobyte",
           "cephfs", "iscsi", "cinder", "fc", "flexVolume", "azureFile", "vsphereVolume", "photonPersistentDisk",
           "portworxVolume", "azureDisk", "scaleIO", "local", "storageos", "csi")
SHORT_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


def access_modes_text(modes: list[str] | None) -> str:
    """upstream's GetAccessModesAsString: RWO,ROX,RWX,RWOP in that order, each once."""
    modes = modes or []
    return ",".join(SHORT_MODES[m] for m in ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
                    if m in modes)


def check_access_modes(modes: Any, path: str, detail: str = "") -> list[v.FieldError]:
    if not modes:
        return [required_detail(path, detail) if detail else v.required(path)]
    errs = [v.not_supported(path, m, ACCESS_MODES) for m in modes if m not in ACCESS_MODES]
    if "ReadWriteOncePod" in modes and any(m in ACCESS_MODES and m != "ReadWriteOncePod" for m in modes):
        errs.append(v.forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def check_positive(value: Any, path: str) -> list[v.FieldError]:
    try:
        if quantity.parse(value) <= 0:
            return [v.invalid(path, str(value), "must be greater than zero")]
    except ValueError as e:
        return [v.invalid(path, value, str(e))]
    return []


def check_class_name(name: Any, path: str) -> list[v.FieldError]:
    if isinstance(name, str) and name:
        return v.check_name(name, "subdomain", path)
    return []


def required_detail(path: str, detail: str) -> v.FieldError:
    return v.FieldError(path, "FieldValueRequired", f"Required value: {detail}")


def check_node_affinity(affinity: dict, path: str) -> list[v.FieldError]:
    required = affinity.get("required")
    if required is None:
        return [required_detail(f"{path}.required", "must specify required node constraints")]
    if not required.get("nodeSelectorTerms"):
        return [required_detail(f"{path}.required.nodeSelectorTerms", "must have at least one node selector term")]
    return []


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("Capacity", desc="capacity is the description of the persistent volume's "
                                       "resources and capacity."),
               tables.col("Access Modes"), tables.col("Reclaim Policy"), tables.col("Status"), tables.col("Claim"),
               tables.col("StorageClass", desc="StorageClass of the pv"),
               tables.col("VolumeAttributesClass", desc="VolumeAttributesClass of the pv"),
               tables.col("Reason"), tables.AGE, tables.col("VolumeMode", priority=1)]

    def prepare_create(self, obj: dict) -> None:
        obj["status"] = {"phase": "Pending"}  # the binder makes it Available or Bound

    def defaults(self, obj: dict) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
        if isinstance(spec.get("hostPath"), dict):
            spec["hostPath"].setdefault("type", "")
        if isinstance(spec.get("capacity"), dict):
            for k, q in spec["capacity"].items():
                if quantity.valid(q):
                    spec["capacity"][k] = quantity.canonical(q)

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = {}
        errs = check_access_modes(spec.get("accessModes"), "spec.accessModes")
        capacity = spec.get("capacity") or {}
        if not capacity:
            errs.append(v.required("spec.capacity"))
        if "storage" not in capacity or len(capacity) > 1:
            errs.append(v.FieldError("spec.capacity", "FieldValueNotSupported",
                                     f"Unsupported value: {_go_map(capacity)}: supported values: \"storage\""))
        for k, q in capacity.items():
            errs += check_positive(q, f"spec.capacity[{k}]")
        policy = spec.get("persistentVolumeReclaimPolicy")
        if policy and policy not in RECLAIM_POLICIES:
            errs.append(v.not_supported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES))
        if isinstance(spec.get("nodeAffinity"), dict):
            errs += check_node_affinity(spec["nodeAffinity"], "spec.nodeAffinity")
        present = [s for s in SOURCES if spec.get(s) is not None]
        for s in present[1:]:
            errs.append(v.forbidden(f"spec.{s}", "may not specify more than 1 volume type"))
        if not present:
            errs.append(required_detail("spec", "must specify a volume type"))
        if "hostPath" in present and not (spec["hostPath"] or {}).get("path"):
            errs.append(v.required("spec.hostPath.path"))
        if "local" in present:
            if not (spec["local"] or {}).get("path"):
                errs.append(v.required("spec.local.path"))
            if not spec.get("nodeAffinity"):
                errs.append(required_detail("spec.nodeAffinity", "Local volume requires node affinity"))
        errs += check_class_name(spec.get("storageClassName"), "spec.storageClassName")
        mode = spec.get("volumeMode")
        if mode is not None and mode not in VOLUME_MODES:
            errs.append(v.not_supported("spec.volumeMode", mode, VOLUME_MODES))
        return errs

    def validate_status(self, obj: dict) -> list[v.FieldError]:
        return []

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
        errs = []
        if {s: spec.get(s) for s in SOURCES} != {s: old_spec.get(s) for s in SOURCES}:
            errs.append(v.forbidden("spec.persistentvolumesource",
                                    "spec.persistentvolumesource is immutable after creation"))
        if spec.get("volumeMode") != old_spec.get("volumeMode"):
            errs.append(v.invalid("volumeMode", spec.get("volumeMode"), "field is immutable"))
        if old_spec.get("nodeAffinity") and spec.get("nodeAffinity") != old_spec.get("nodeAffinity"):
            errs.append(v.invalid("nodeAffinity", spec.get("nodeAffinity"), "field is immutable"))
        return errs

    def row(self, pv: dict) -> list[Any]:
        spec, st, meta = pv.get("spec") or {}, pv.get("status") or {}, pv["metadata"]
        ref = spec.get("claimRef")
        claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
        phase = "Terminating" if meta.get("deletionTimestamp") else st.get("phase", "")
        cls = (meta.get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class",
                                                   spec.get("storageClassName", ""))
        return [meta["name"], (spec.get("capacity") or {}).get("storage", "0"),
                access_modes_text(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""), phase,
                claim, cls, spec.get("volumeAttributesClassName") or "<unset>", st.get("reason", ""),
                tables.age(meta.get("creationTimestamp")), spec.get("volumeMode") or "<unset>"]


def _go_map(m: dict) -> str:
    """A map as Go's %v prints it in a NotSupported error: map[storage:{...}]."""
    return "map[" + " ".join(f"{k}:{val}" for k, val in sorted(m.items())) + "]"
