"""The rules of a kind, as upstream's registry strategies hold them: the API defaults, the
validation, what an update may change, whether the kind has a status subresource and a
generation, its table columns, and its hooks on create, delete and presentation. This base gives
every kind the defaults; a kind with rules of its own overrides what differs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netlab.api.resources import Resource
from netlab.control.apiserver import schema, tables
from netlab.control.apiserver.store import Store
from netlab.control.apiserver.validation import FieldError
from netlab.kit import clock

# What a delete does to the object: remove it now, write it marked for deletion, or neither.
DELETE, UPDATE, KEEP = "delete", "update", "keep"


@dataclass
class Context:
    """What a strategy may consult besides the object: other objects in the store, the cluster's
    service range."""
    store: Store
    service_subnet: str


class Strategy:
    name_rule = "subdomain"  # how metadata.name is checked: validation.check_name's rules
    generation = False  # whether metadata.generation counts the changes of the spec
    # whether it may be created in a namespace being deleted (Events about the deletion may)
    in_terminating_namespace = False
    columns: list[dict] = [tables.NAME, tables.AGE]
    # the fields a field selector may name beside metadata.name and metadata.namespace
    field_labels: tuple[str, ...] = ()
    # whether a delete that names no propagation policy orphans the dependents (upstream's
    # DefaultGarbageCollectionPolicy: batch/v1 Jobs and v1 ReplicationControllers, for compatibility)
    orphan_by_default = False
    # whether PATCH takes a strategic merge patch (custom resources do not)
    strategic_merge = True

    def __init__(self, resource: Resource, ctx: Context):
        self.resource, self.ctx = resource, ctx

    @property
    def status_subresource(self) -> bool:
        """A main update keeps the status, which only the status subresource changes."""
        return "status" in self.resource.subresources

    @property
    def storage_resource(self) -> str:
        """The resource part of the kind's store keys (`/registry/<this>/<namespace>/<name>`)."""
        return self.resource.plural

    @property
    def list_kind(self) -> str:
        return f"{self.resource.kind}List"

    # --- decoding, defaults and validation -----------------------------------------------

    def field_problems(self, obj: dict, strict: bool) -> list[str]:
        """What decoding finds wrong with the fields, as upstream's decoder words it: wrong types
        always, `unknown field "..."` when strict (schema.check against the kind's model)."""
        return schema.check(self.resource.model, obj, strict)

    def decode(self, obj: dict) -> None:
        """What decoding does beyond the schema, as upstream's conversion into the internal type
        does; raises errors.cannot_decode."""

    def prepare_create(self, obj: dict) -> None:
        """What a create sets beside the metadata the server owns (an initial status)."""

    def generation_changed(self, obj: dict, old: dict) -> bool:
        """Whether an update is a new generation: for most kinds, a change of the spec."""
        return obj.get("spec") != old.get("spec")

    def defaults(self, obj: dict) -> None:
        """The API defaults, on create and on every update."""

    def prepare_update(self, obj: dict, old: dict) -> None:
        """What a main update sets from the object it replaces (upstream's PrepareForUpdate), after
        the defaults and the generation."""

    def validate(self, obj: dict) -> list[FieldError]:
        """The kind's own fields (metadata's name and labels are checked for every kind)."""
        return []

    def validate_status(self, obj: dict) -> list[FieldError]:
        """An update of the status subresource (for most kinds: the object's validation)."""
        return self.validate(obj)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        """What an update may not change."""
        return []

    def validate_create(self, obj: dict) -> list[FieldError]:
        """What only a create checks, after the rest."""
        return []

    def allocate(self, obj: dict, old: dict | None = None) -> None:
        """Take what the object needs from shared pools, on create and main updates; raises
        errors.Invalid."""

    def field_label_error(self, label: str) -> str | None:
        """Why a field selector may not name `label` (None: it may), as upstream's conversions say."""
        if label in ("metadata.name", "metadata.namespace") or label in self.field_labels:
            return None
        if self.field_labels:
            return f"field label not supported: {label}"
        return f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"'

    def refusal(self, verb: str) -> str:
        """Why a verb the kind does not serve now is refused (a 405)."""
        return "the server does not allow this method on the requested resource"

    # --- deletion ------------------------------------------------------------------------

    def delete(self, obj: dict, grace: int | None, finalizers: list[str]) -> tuple[str, dict]:
        """What a delete does: with finalizers the object stays, marked, until they are gone."""
        meta = obj["metadata"]
        if finalizers:
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = clock.now()
                meta["deletionGracePeriodSeconds"] = 0
            meta["finalizers"] = finalizers
            return UPDATE, obj
        return DELETE, obj

    def deletion_done(self, obj: dict) -> bool:
        """Whether an object marked for deletion may go, once an update has left it so."""
        return not obj["metadata"].get("finalizers")

    # --- the scale subresource -------------------------------------------------------------

    def to_scale(self, obj: dict) -> dict:
        """The object as an autoscaling/v1 Scale (spec.replicas and the selector's labels)."""
        sel = (obj.get("spec") or {}).get("selector") or {}
        return scale_of(obj, (obj.get("spec") or {}).get("replicas", 1), (obj.get("status") or {}).get("replicas", 0),
                        ",".join(f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()))

    def scaled(self, obj: dict, replicas: int) -> dict:
        """The object with the replicas a Scale asks for."""
        obj.setdefault("spec", {})["replicas"] = replicas
        return obj

    # --- presentation --------------------------------------------------------------------

    def present(self, obj: dict) -> dict:
        """The stored object as this kind's version shows it."""
        return obj

    def row(self, obj: dict) -> list[Any]:
        return tables.name_age_row(obj)


def scale_of(o: dict, replicas: int, status_replicas: int, selector: str) -> dict:
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: o["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                       "creationTimestamp") if k in o["metadata"]},
            "spec": {"replicas": replicas}, "status": {"replicas": status_replicas, "selector": selector}}
