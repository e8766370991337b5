"""DefaultStorageClass: a PersistentVolumeClaim that names no class gets the default
StorageClass (annotated `storageclass.kubernetes.io/is-default-class: "true"`; the newest if
several, as upstream picks); with none, it stays without one."""

from __future__ import annotations

from netlab.api.resources import Resource, lookup
from netlab.control.apiserver.store import Store, key
from netlab.control.apiserver.strategies.persistentvolumeclaims import BETA_CLASS
from netlab.control.apiserver.strategies.storageclasses import is_default


def default_class(classes: list[dict]) -> str | None:
    """upstream's GetDefaultClass: of the default classes the newest, then by name."""
    defaults = [c for c in classes if is_default(c)]
    if not defaults:
        return None
    return max(defaults, key=lambda c: (c["metadata"].get("creationTimestamp") or "",
                                        [-ord(ch) for ch in c["metadata"]["name"]]))["metadata"]["name"]


class Plugin:
    def __init__(self, store: Store):
        self.store = store
        self.classes = lookup("storage.k8s.io", "v1", "storageclasses")

    def admit(self, r: Resource, obj: dict) -> None:
        if r.plural != "persistentvolumeclaims" or r.group:
            return
        spec = obj.setdefault("spec", {})
        if spec.get("storageClassName") is not None or BETA_CLASS in (obj["metadata"].get("annotations") or {}):
            return  # named, or "" for no class at all
        items, _ = self.store.list(key(self.classes.plural, None))
        name = default_class(items)
        if name is not None:
            spec["storageClassName"] = name

    def validate(self, r: Resource, obj: dict) -> None:
        pass
