"""StatefulSets: the API defaults (OrderedReady, RollingUpdate with partition 0, revision history,
PVC retention Retain, the claim templates as PersistentVolumeClaims), the validation of policy,
strategy and template, the few spec fields an update may change, and kubectl's columns."""

from __future__ import annotations

import copy
from typing import Any

from netlab.control.apiserver import podspec, tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base
from netlab.control.apiserver.strategies.persistentvolumeclaims import claim_spec_defaults, validate_claim_spec

# what ValidateStatefulSetUpdate lets an update change; the rest of the spec is fixed
MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
           "minReadySeconds")
FORBIDDEN_UPDATE = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                    "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")


class Strategy(base.Strategy):
    generation = True
    columns = [tables.NAME, tables.col("Ready", desc="Number of the pod with ready state"), tables.AGE,
               tables.col("Containers", priority=1, desc="Names of each container in the template."),
               tables.col("Images", priority=1, desc="Images referenced by each container in the template.")]

    def prepare_create(self, obj: dict) -> None:
        obj["status"] = {"replicas": 0, "availableReplicas": 0}

    def defaults(self, obj: dict) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        strategy = spec.setdefault("updateStrategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            if isinstance(ru, dict):
                ru.setdefault("partition", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
        if isinstance(retention, dict):
            retention.setdefault("whenDeleted", "Retain")
            retention.setdefault("whenScaled", "Retain")
        podspec.template_defaults(spec)
        for claim in spec.get("volumeClaimTemplates") or []:
            if isinstance(claim, dict):
                claim.setdefault("apiVersion", "v1")
                claim.setdefault("kind", "PersistentVolumeClaim")
                claim.setdefault("metadata", {}).setdefault("creationTimestamp", None)
                claim_spec_defaults(claim.setdefault("spec", {}))
                claim.setdefault("status", {}).setdefault("phase", "Pending")

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec")
        errs = podspec.validate_workload(spec, "statefulset")
        if not isinstance(spec, dict):
            return errs
        policy = spec.get("podManagementPolicy")
        if not policy:
            errs.append(v.required("spec.podManagementPolicy"))
        elif policy not in ("OrderedReady", "Parallel"):
            errs.append(v.invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
        strategy = spec.get("updateStrategy") or {}
        stype, ru = strategy.get("type"), strategy.get("rollingUpdate")
        if not stype:
            errs.append(v.required("spec.updateStrategy"))
        elif stype == "OnDelete":
            if ru is not None:
                errs.append(v.invalid("spec.updateStrategy.rollingUpdate", ru,
                                      "only allowed for updateStrategy 'RollingUpdate'"))
        elif stype == "RollingUpdate":
            partition = (ru or {}).get("partition", 0)
            if not isinstance(partition, int) or partition < 0:
                errs.append(v.invalid("spec.updateStrategy.rollingUpdate.partition", partition,
                                      "must be greater than or equal to 0"))
        else:
            errs.append(v.invalid("spec.updateStrategy", strategy, "must be 'RollingUpdate' or 'OnDelete'"))
        for field in ("minReadySeconds", "revisionHistoryLimit"):
            n = spec.get(field, 0)
            if not isinstance(n, int) or n < 0:
                errs.append(v.invalid(f"spec.{field}", n, "must be greater than or equal to 0"))
        start = (spec.get("ordinals") or {}).get("start", 0)
        if not isinstance(start, int) or start < 0:
            errs.append(v.invalid("spec.ordinals.start", start, "must be greater than or equal to 0"))
        retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        for when in ("whenDeleted", "whenScaled"):
            value = retention.get(when, "Retain")
            if value not in ("Retain", "Delete"):
                errs.append(v.not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{when}", value,
                                            ["Retain", "Delete"]))
        tmpl_spec = (spec.get("template") or {}).get("spec") or {}
        if tmpl_spec.get("activeDeadlineSeconds") is not None:
            errs.append(v.forbidden("spec.template.spec.activeDeadlineSeconds",
                                    "activeDeadlineSeconds in StatefulSet is not Supported"))
        for i, claim in enumerate(spec.get("volumeClaimTemplates") or []):
            errs += v.check_name(((claim or {}).get("metadata") or {}).get("name"),
                                 path=f"spec.volumeClaimTemplates[{i}].metadata.name")
            errs += validate_claim_spec((claim or {}).get("spec"), f"spec.volumeClaimTemplates[{i}].spec")
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        new_spec, old_spec = copy.deepcopy(obj.get("spec") or {}), old.get("spec") or {}
        for k in MUTABLE:
            new_spec.pop(k, None)
        if new_spec != {k: val for k, val in old_spec.items() if k not in MUTABLE}:
            return [v.forbidden("spec", FORBIDDEN_UPDATE)]
        return []

    def row(self, s: dict) -> list[Any]:
        spec, st = s.get("spec") or {}, s.get("status") or {}
        names, images = tables.containers_text((spec.get("template") or {}).get("spec") or {})
        return [s["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
                tables.age(s["metadata"].get("creationTimestamp")), names, images]
