"""StorageObjectInUseProtection: every new PersistentVolumeClaim gets the finalizer
`kubernetes.io/pvc-protection` and every new PersistentVolume `kubernetes.io/pv-protection`, so
that a claim a pod still uses, or a volume still bound, stays (Terminating) until the protection
controllers let it go."""

from __future__ import annotations

from netlab.api.resources import Resource
from netlab.control.apiserver.store import Store

FINALIZERS = {"persistentvolumeclaims": "kubernetes.io/pvc-protection",
              "persistentvolumes": "kubernetes.io/pv-protection"}


class Plugin:
    def __init__(self, store: Store):
        self.store = store

    def admit(self, r: Resource, obj: dict) -> None:
        finalizer = FINALIZERS.get(r.plural) if not r.group else None
        if finalizer:
            finalizers = obj["metadata"].setdefault("finalizers", [])
            if finalizer not in finalizers:
                finalizers.append(finalizer)

    def validate(self, r: Resource, obj: dict) -> None:
        pass
