"""PersistentVolumeClaims: upstream's defaults (volumeMode Filesystem, phase Pending), the
claim spec's validation, a spec fixed once made except volumeName (set once, by the binder) and a
larger storage request, and kubectl's columns."""

from __future__ import annotations

import copy
from typing import Any

from netlab.api import quantity
from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base
from netlab.control.apiserver.strategies.persistentvolumes import (VOLUME_MODES, access_modes_text,
                                                                    check_access_modes, check_class_name,
                                                                    check_positive)

BETA_CLASS = "volume.beta.kubernetes.io/storage-class"


def claim_spec_defaults(spec: dict) -> None:
    spec.setdefault("volumeMode", "Filesystem")
    requests = (spec.get("resources") or {}).get("requests")
    if isinstance(requests, dict):
        for k, q in requests.items():
            if quantity.valid(q):
                requests[k] = quantity.canonical(q)


def validate_claim_spec(spec: Any, path: str) -> list[v.FieldError]:
    """upstream's ValidatePersistentVolumeClaimSpec (also a StatefulSet's claim templates')."""
    if not isinstance(spec, dict):
        return [v.required(path)]
    errs = check_access_modes(spec.get("accessModes"), f"{path}.accessModes", "at least 1 access mode is required")
    requests = (spec.get("resources") or {}).get("requests") or {}
    if "storage" not in requests:
        errs.append(v.required(f"{path}.resources[storage]"))
    else:
        errs += check_positive(requests["storage"], f"{path}.resources[storage]")
    errs += check_class_name(spec.get("storageClassName"), f"{path}.storageClassName")
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        errs.append(v.not_supported(f"{path}.volumeMode", mode, VOLUME_MODES))
    return errs


def claim_class(pvc: dict) -> str:
    """The claim's class: the beta annotation first, as upstream's helper reads it."""
    annotations = pvc["metadata"].get("annotations") or {}
    if BETA_CLASS in annotations:
        return annotations[BETA_CLASS]
    return (pvc.get("spec") or {}).get("storageClassName") or ""


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("Status"), tables.col("Volume"), tables.col("Capacity"),
               tables.col("Access Modes"), tables.col("StorageClass", desc="StorageClass of the pvc"),
               tables.col("VolumeAttributesClass", desc="VolumeAttributesClass of the pvc"), tables.AGE,
               tables.col("VolumeMode", priority=1)]

    def prepare_create(self, obj: dict) -> None:
        obj["status"] = {"phase": "Pending"}

    def defaults(self, obj: dict) -> None:
        if isinstance(obj.get("spec"), dict):
            claim_spec_defaults(obj["spec"])

    def validate(self, obj: dict) -> list[v.FieldError]:
        return validate_claim_spec(obj.get("spec"), "spec")

    def validate_status(self, obj: dict) -> list[v.FieldError]:
        return []

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        new_spec, old_spec = copy.deepcopy(obj.get("spec") or {}), copy.deepcopy(old.get("spec") or {})
        if not old_spec.get("volumeName"):
            old_spec["volumeName"] = new_spec.get("volumeName")  # set once, by the binder
        if old_spec.get("storageClassName") is None and new_spec.get("storageClassName") is not None \
                and BETA_CLASS not in (old["metadata"].get("annotations") or {}):
            old_spec["storageClassName"] = new_spec.get("storageClassName")  # set once from nil
        new_size = ((new_spec.get("resources") or {}).get("requests") or {}).get("storage")
        old_size = ((old_spec.get("resources") or {}).get("requests") or {}).get("storage")
        bound = (obj.get("status") or {}).get("phase") == "Bound"
        if bound and new_size is not None:
            new_spec.setdefault("resources", {}).setdefault("requests", {})["storage"] = old_size
        for s in (new_spec, old_spec):
            s.pop("volumeAttributesClassName", None)
            if s.get("volumeName") is None:
                s.pop("volumeName", None)
        errs = []
        if new_spec != old_spec:
            errs.append(v.forbidden("spec", "spec is immutable after creation except resources.requests and "
                                    "volumeAttributesClassName for bound claims"))
        try:
            if new_size is not None and old_size is not None and quantity.parse(new_size) < quantity.parse(old_size):
                errs.append(v.forbidden("spec.resources.requests.storage", "field can not be less than previous value"))
        except ValueError:
            pass
        return errs

    def row(self, pvc: dict) -> list[Any]:
        spec, st, meta = pvc.get("spec") or {}, pvc.get("status") or {}, pvc["metadata"]
        phase = "Terminating" if meta.get("deletionTimestamp") else st.get("phase", "")
        capacity = modes = ""
        if spec.get("volumeName"):
            modes = access_modes_text(st.get("accessModes"))
            capacity = (st.get("capacity") or {}).get("storage", "0")
        return [meta["name"], phase, spec.get("volumeName", ""), capacity, modes, claim_class(pvc),
                spec.get("volumeAttributesClassName") or "<unset>", tables.age(meta.get("creationTimestamp")),
                spec.get("volumeMode") or "<unset>"]
