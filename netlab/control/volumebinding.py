"""The scheduler's VolumeBinding rules, as upstream's plugin has them: a pod's claims must exist;
an unbound claim of an Immediate class holds the pod back; a bound claim's volume must allow the
node (its nodeAffinity: a local volume's node); an unbound WaitForFirstConsumer claim is
provisioned where the pod goes, the scheduler writing `volume.kubernetes.io/selected-node` on it
and binding the pod once the claim is bound."""

from __future__ import annotations

from collections.abc import Callable

from netlab.control import placement

SELECTED_NODE = "volume.kubernetes.io/selected-node"
CONFLICT = "node(s) had volume node affinity conflict"
NO_VOLUMES = "node(s) didn't find available persistent volumes to bind"

Lookup = Callable[[str | None, str], dict | None]


def claim_names(pod: dict) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName")]


def claim_class(pvc: dict) -> str:
    annotations = pvc["metadata"].get("annotations") or {}
    return annotations.get("volume.beta.kubernetes.io/storage-class",
                           (pvc.get("spec") or {}).get("storageClassName") or "")


def bound(pvc: dict) -> bool:
    return bool((pvc.get("spec") or {}).get("volumeName"))


def prefilter(pod: dict, claims: Lookup, classes: Lookup) -> str | None:
    """Why no node can take the pod now (missing or Immediate-unbound claims); None if some may."""
    ns = pod["metadata"]["namespace"]
    for name in claim_names(pod):
        pvc = claims(ns, name)
        if pvc is None:
            return f'persistentvolumeclaim "{name}" not found'
        if pvc["metadata"].get("deletionTimestamp"):
            return f'persistentvolumeclaim "{name}" is being deleted'
        if bound(pvc):
            continue
        cls = classes(None, claim_class(pvc)) if claim_class(pvc) else None
        if cls is None or cls.get("volumeBindingMode", "Immediate") != "WaitForFirstConsumer":
            return "pod has unbound immediate PersistentVolumeClaims"
    return None


def node_reason(pod: dict, node: dict, claims: Lookup, volumes: Lookup, classes: Lookup) -> str | None:
    """Why the pod's volumes rule `node` out, or None."""
    ns = pod["metadata"]["namespace"]
    for name in claim_names(pod):
        pvc = claims(ns, name)
        if pvc is None:
            continue
        if bound(pvc):
            pv = volumes(None, pvc["spec"]["volumeName"])
            required = (((pv or {}).get("spec") or {}).get("nodeAffinity") or {}).get("required")
            if required and not any(placement.term_matches(t, node) for t in required.get("nodeSelectorTerms") or []):
                return CONFLICT
            continue
        selected = (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE)
        if selected and selected != node["metadata"]["name"]:
            return CONFLICT  # being provisioned on another node already
        cls = classes(None, claim_class(pvc)) or {}
        if cls.get("provisioner") in (None, "", "kubernetes.io/no-provisioner"):
            return NO_VOLUMES
    return None


def to_provision(pod: dict, claims: Lookup) -> list[dict]:
    """The pod's unbound (WaitForFirstConsumer) claims: the scheduler selects its node on them."""
    ns = pod["metadata"]["namespace"]
    return [c for c in (claims(ns, n) for n in claim_names(pod)) if c is not None and not bound(c)]
