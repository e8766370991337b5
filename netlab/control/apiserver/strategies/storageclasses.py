"""StorageClasses (storage.k8s.io/v1, cluster-scoped): defaults reclaimPolicy Delete and
volumeBindingMode Immediate, upstream's validation (a qualified provisioner name, at most 512
parameters), what an update may not change, and kubectl's columns (the default class marked)."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base

DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
MAX_PARAMETERS = 512


def is_default(sc: dict) -> bool:
    annotations = sc["metadata"].get("annotations") or {}
    return annotations.get(DEFAULT_CLASS) == "true" or annotations.get(BETA_DEFAULT_CLASS) == "true"


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("Provisioner"), tables.col("ReclaimPolicy"), tables.col("VolumeBindingMode"),
               tables.col("AllowVolumeExpansion"), tables.AGE]

    def defaults(self, obj: dict) -> None:
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")

    def validate(self, obj: dict) -> list[v.FieldError]:
        errs = []
        prov = obj.get("provisioner")
        if not prov:
            errs.append(v.required("provisioner"))
        elif len(prov) > 63 or not v.QUALIFIED_NAME.match(prov.lower().rsplit("/", 1)[-1]):
            errs.append(v.invalid("provisioner", prov, "name part must consist of alphanumeric characters, '-', '_' "
                                  "or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  "
                                  "or 'my.name',  or '123-abc', regex used for validation is "
                                  "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"))
        params = obj.get("parameters") or {}
        if len(params) > MAX_PARAMETERS:
            errs.append(v.too_long("parameters", MAX_PARAMETERS))  # upstream: TooMany
        if obj.get("reclaimPolicy") not in ("Delete", "Retain"):
            errs.append(v.not_supported("reclaimPolicy", obj.get("reclaimPolicy"), ["Delete", "Retain"]))
        if obj.get("volumeBindingMode") not in ("Immediate", "WaitForFirstConsumer"):
            errs.append(v.not_supported("volumeBindingMode", obj.get("volumeBindingMode"),
                                        ["Immediate", "WaitForFirstConsumer"]))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        errs = []
        if (obj.get("parameters") or {}) != (old.get("parameters") or {}):
            errs.append(v.forbidden("parameters", "updates to parameters are forbidden."))
        if obj.get("provisioner") != old.get("provisioner"):
            errs.append(v.forbidden("provisioner", "updates to provisioner are forbidden."))
        if obj.get("reclaimPolicy") != old.get("reclaimPolicy"):
            errs.append(v.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
        if obj.get("volumeBindingMode") != old.get("volumeBindingMode"):
            errs.append(v.invalid("volumeBindingMode", obj.get("volumeBindingMode"), "field is immutable"))
        return errs

    def row(self, sc: dict) -> list[Any]:
        name = sc["metadata"]["name"] + (" (default)" if is_default(sc) else "")
        return [name, sc.get("provisioner", ""), sc.get("reclaimPolicy", "Delete"),
                sc.get("volumeBindingMode", "Immediate"), bool(sc.get("allowVolumeExpansion", False)),
                tables.age(sc["metadata"].get("creationTimestamp"))]
