"""What a pod refers to by name: the Secrets, ConfigMaps, PersistentVolumeClaims and the
ServiceAccount of its spec (volumes, projections, env, envFrom, imagePullSecrets). The Node
authorizer lets a kubelet read exactly these, and the kubelet watches exactly these."""

from __future__ import annotations


def pod_refs(pod: dict) -> dict[str, set[str]]:
    """What a pod refers to by name: secrets, configmaps, persistentvolumeclaims, serviceaccounts."""
    spec = pod.get("spec") or {}
    out: dict[str, set[str]] = {"secrets": set(), "configmaps": set(), "persistentvolumeclaims": set(),
                                "serviceaccounts": {spec.get("serviceAccountName") or "default"}}
    for ref in spec.get("imagePullSecrets") or []:
        out["secrets"].add(ref.get("name", ""))
    for vol in spec.get("volumes") or []:
        if "secret" in vol:
            out["secrets"].add(vol["secret"].get("secretName", ""))
        if "configMap" in vol:
            out["configmaps"].add(vol["configMap"].get("name", ""))
        if "persistentVolumeClaim" in vol:
            out["persistentvolumeclaims"].add(vol["persistentVolumeClaim"].get("claimName", ""))
        for src in (vol.get("projected") or {}).get("sources") or []:
            if "secret" in src:
                out["secrets"].add(src["secret"].get("name", ""))
            if "configMap" in src:
                out["configmaps"].add(src["configMap"].get("name", ""))
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []) + \
            (spec.get("ephemeralContainers") or []):
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "secretKeyRef" in vf:
                out["secrets"].add(vf["secretKeyRef"].get("name", ""))
            if "configMapKeyRef" in vf:
                out["configmaps"].add(vf["configMapKeyRef"].get("name", ""))
        for ef in c.get("envFrom") or []:
            if "secretRef" in ef:
                out["secrets"].add(ef["secretRef"].get("name", ""))
            if "configMapRef" in ef:
                out["configmaps"].add(ef["configMapRef"].get("name", ""))
    return out
