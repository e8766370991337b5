"""apiextensions.k8s.io/v1 CustomResourceDefinition: upstream's defaults (singular, listKind,
conversion None), validation (crdvalidation.py), the stored versions, and, as the names and
establishing controllers of apiextensions-apiserver would set them moments later, the accepted
names and the NamesAccepted and Established conditions (computed here, on the write itself). A
delete marks the CRD Terminating with the finalizer customresourcecleanup.apiextensions.k8s.io;
crdcontroller.py then deletes its custom resources and the finalizer."""

from __future__ import annotations

import copy
from typing import Any

from netlab.control.apiserver import crdvalidation, tables
from netlab.control.apiserver.store import key
from netlab.control.apiserver.strategies import base
from netlab.control.apiserver.validation import FieldError
from netlab.kit import clock

FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
NAME_FIELDS = ("plural", "singular", "shortNames", "kind", "listKind", "categories")


def condition(crd: dict, type_: str) -> dict | None:
    return next((c for c in (crd.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def is_true(crd: dict, type_: str) -> bool:
    c = condition(crd, type_)
    return c is not None and c.get("status") == "True"


def set_condition(crd: dict, type_: str, status: str, reason: str, message: str) -> None:
    """upstream's SetCRDCondition: the transition time changes only with the status."""
    conds = crd.setdefault("status", {}).setdefault("conditions", [])
    new = {"type": type_, "status": status, "lastTransitionTime": clock.now(), "reason": reason, "message": message}
    for i, c in enumerate(conds):
        if c.get("type") == type_:
            if c.get("status") == status:
                new["lastTransitionTime"] = c.get("lastTransitionTime")
            conds[i] = new
            return
    conds.append(new)


def _in_use(requested: Any, accepted: Any, used: set) -> str | None:
    if requested == accepted or requested not in used:
        return None
    return f'"{requested}" is already in use'


def accept_names(crd: dict, others: list[dict]) -> None:
    """What upstream's naming controller (and, names accepted, its establishing controller) make
    of the CRD's status: the names it may have, given the names the group's other CRDs hold."""
    group = (crd.get("spec") or {}).get("group")
    resources: set = set()
    kinds: set = set()
    for o in others:
        if (o.get("spec") or {}).get("group") != group or o["metadata"].get("name") == crd["metadata"].get("name"):
            continue
        acc = (o.get("status") or {}).get("acceptedNames") or {}
        resources |= {acc.get("plural"), acc.get("singular"), *(acc.get("shortNames") or [])}
        kinds |= {acc.get("kind"), acc.get("listKind")}
    resources.discard(None)
    kinds.discard(None)
    want = (crd.get("spec") or {}).get("names") or {}
    status = crd.setdefault("status", {})
    have = status.get("acceptedNames") or {}
    new = dict(have)
    problem: tuple[str, str] | None = None
    for field_, reason in (("plural", "PluralConflict"), ("singular", "SingularConflict")):
        if (msg := _in_use(want.get(field_), have.get(field_), resources)) is not None:
            problem = (reason, msg)
        elif want.get(field_) is not None:
            new[field_] = want[field_]
    if (want.get("shortNames") or []) != (have.get("shortNames") or []):
        mine = set(have.get("shortNames") or [])
        msgs = [m for s in want.get("shortNames") or [] if s not in mine and s not in (have.get("plural"),
                                                                                        have.get("singular"))
                if (m := _in_use(s, "", resources)) is not None]
        if msgs:
            problem = ("ShortNamesConflict", msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]")
        elif want.get("shortNames"):
            new["shortNames"] = want["shortNames"]
        else:
            new.pop("shortNames", None)
    for field_, reason in (("kind", "KindConflict"), ("listKind", "ListKindConflict")):
        if (msg := _in_use(want.get(field_), have.get(field_), kinds)) is not None:
            problem = (reason, msg)
        elif want.get(field_) is not None:
            new[field_] = want[field_]
    if want.get("categories"):
        new["categories"] = want["categories"]
    else:
        new.pop("categories", None)
    status["acceptedNames"] = {k: new[k] for k in NAME_FIELDS if k in new}
    if problem:
        set_condition(crd, "NamesAccepted", "False", *problem)
        if not is_true(crd, "Established"):
            set_condition(crd, "Established", "False", "NotAccepted", "not all names are accepted")
    else:
        set_condition(crd, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
        if not is_true(crd, "Established"):
            # naming says Installing; establishing makes it True once served, which here is at once
            set_condition(crd, "Established", "True", "InitialNamesAccepted", "the initial names have been accepted")
    _approval_condition(crd)


def _approval_condition(crd: dict) -> None:
    """upstream's API approval controller, for the protected groups (*.k8s.io, *.kubernetes.io)."""
    if not crdvalidation.protected_group((crd.get("spec") or {}).get("group") or ""):
        return
    state, reason = crdvalidation.approval_state(crd["metadata"].get("annotations") or {})
    status, why = {"Approved": ("True", "ApprovedAnnotation"), "Bypassed": ("False", "UnapprovedAnnotation"),
                   "Missing": ("False", "MissingAnnotation"), "Invalid": ("False", "InvalidAnnotation")}[state]
    set_condition(crd, "KubernetesAPIApprovalPolicyConformant", status, why, reason)


def storage_version(crd: dict) -> str | None:
    return next((ver.get("name") for ver in (crd.get("spec") or {}).get("versions") or [] if ver.get("storage")),
                None)


class Strategy(base.Strategy):
    generation = True
    columns = [tables.NAME, tables.col("Created At", "date", desc="CreationTimestamp is a timestamp representing the "
                                       "server time when this object was created.")]

    def others(self) -> list[dict]:
        return self.ctx.store.list(key(self.storage_resource))[0]

    def defaults(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        names = spec.get("names")
        if isinstance(names, dict):
            if not names.get("singular") and names.get("kind"):
                names["singular"] = str(names["kind"]).lower()
            if not names.get("listKind") and names.get("kind"):
                names["listKind"] = f"{names['kind']}List"
        if not spec.get("conversion"):
            spec["conversion"] = {"strategy": "None"}

    def _store_version(self, obj: dict) -> None:
        stored = obj.setdefault("status", {}).setdefault("storedVersions", [])
        if (ver := storage_version(obj)) and ver not in stored:
            stored.append(ver)

    def prepare_create(self, obj: dict) -> None:
        obj["status"] = {}
        self.defaults(obj)
        self._store_version(obj)
        accept_names(obj, self.others())

    def prepare_update(self, obj: dict, old: dict) -> None:
        self.defaults(obj)
        self._store_version(obj)
        names = (obj.get("spec") or {}).get("names") or {}
        if {k: names.get(k) for k in NAME_FIELDS} != {k: obj["status"].get("acceptedNames", {}).get(k)
                                                        for k in NAME_FIELDS}:
            accept_names(obj, self.others())

    def validate(self, obj: dict) -> list[FieldError]:
        return crdvalidation.validate(obj)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        # the whole of the update's checks (crdvalidation.validate with the old object) run there
        return [e for e in crdvalidation.validate(obj, old) if e.message.endswith("field is immutable")]

    def delete(self, obj: dict, grace: int | None, finalizers: list[str]) -> tuple[str, dict]:
        """As upstream's CRD REST Delete: the finalizer and a Terminating condition; the custom
        resources go first (crdcontroller.py), then the CRD."""
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = clock.now()
            meta["deletionGracePeriodSeconds"] = 0
        if FINALIZER not in finalizers:
            finalizers = [*finalizers, FINALIZER]
        meta["finalizers"] = finalizers
        set_condition(obj, "Terminating", "True", "InstanceDeletionPending",
                      "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon")
        return base.UPDATE, obj

    def row(self, obj: dict) -> list[Any]:
        return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp") or ""]
