"""The object operations every kind has, as upstream's generic registry does them: get, list,
create, update, patch, delete (grace periods, finalizers, propagation), deletecollection and
watch, and the subresources status, scale, binding and finalize. What differs by kind is asked of
the kind's strategy; the objects live in the store."""

from __future__ import annotations

import base64
import copy
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from netlab.api.resources import Resource, lookup
from netlab.api.selectors import field_value, parse_selector
from netlab.control.apiserver import codec, definitions, fieldmanager, kinds, patch, tables
from netlab.control.apiserver.admission import (defaultstorageclass, limitranger, resourcequota,
                                                storageobjectinuseprotection)
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.errors import (APIError, Invalid, already_exists, bad_request, conflict, invalid,
                                             not_found)
from netlab.control.apiserver.store import Conflict, Exists, Gone, NotFound, Store, TooLarge, key
from netlab.control.apiserver.strategies import base
from netlab.kit import clock

SCALE = "io.k8s.api.autoscaling.v1.Scale"
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream's utilrand alphabet (no vowels, no 0/1/3)
# metadata the server owns: an update keeps what the stored object has
OWNED_METADATA = ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation")


@dataclass
class ListOptions:
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_: str = ""
    resource_version: str = ""


def too_large(e: TooLarge) -> APIError:
    return APIError(413, "RequestEntityTooLarge", f"Request entity too large: {e}")


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(NAME_ALPHABET) for _ in range(n))


class Objects:
    def __init__(self, store: Store, service_subnet: str):
        self.store = store
        self.kinds = kinds.Kinds(base.Context(store, service_subnet))
        self.namespaces = lookup("", "v1", "namespaces")
        self.pods = lookup("", "v1", "pods")
        # the admission plugins a create passes, in upstream's order
        self.admission = [defaultstorageclass.Plugin(store), limitranger.Plugin(store),
                          storageobjectinuseprotection.Plugin(store), resourcequota.Plugin(store)]

    def strategy(self, r: Resource) -> base.Strategy:
        return self.kinds.strategy(r)

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        """The kind served at /apis/<group>/<version>/<plural> (built-in or custom), or None."""
        return self.kinds.lookup(group, version, plural)

    def key(self, r: Resource, namespace: str | None, name: str = "") -> str:
        return key(self.strategy(r).storage_resource, namespace if r.namespaced else None, name)

    def revision(self) -> int:
        return self.store.revision()

    # --- reads -----------------------------------------------------------------------------

    def get(self, r: Resource, namespace: str | None, name: str) -> dict:
        obj = self.store.get(self.key(r, namespace, name))
        if obj is None:
            raise not_found(r, name)
        return self.strategy(r).present(obj)

    def matcher(self, r: Resource, opts: ListOptions) -> Callable[[dict], bool]:
        try:
            labels = parse_selector(opts.label_selector)
            fields = parse_selector(opts.field_selector, field_selector=True)
        except ValueError as e:
            raise bad_request(str(e)) from None
        for label, _, _ in fields.requirements:
            if (problem := self.strategy(r).field_label_error(label)) is not None:
                raise bad_request(problem)

        def match(obj: dict) -> bool:
            obj_labels = obj.get("metadata", {}).get("labels") or {}
            return labels.matches(obj_labels.get) and fields.matches(lambda k: field_value(obj, k))
        return match

    def list(self, r: Resource, namespace: str | None, opts: ListOptions) -> dict:
        items, rev = self.store.list(self.key(r, namespace))
        match = self.matcher(r, opts)
        present = self.strategy(r).present
        items = [present(o) for o in items if match(o)]
        meta: dict[str, Any] = {"resourceVersion": str(rev)}
        start = 0
        if opts.continue_:
            try:
                start = int(json.loads(base64.b64decode(opts.continue_))["start"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("invalid continue token") from None
        if opts.limit and start + opts.limit < len(items):
            meta["continue"] = base64.b64encode(json.dumps({"start": start + opts.limit}).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - opts.limit
            items = items[start:start + opts.limit]
        elif start:
            items = items[start:]
        return {"kind": self.strategy(r).list_kind, "apiVersion": r.group_version, "metadata": meta, "items": items}

    def table(self, r: Resource, objects: list[dict], resource_version: str, include_object: str = "Metadata",
              headers: bool = True) -> dict:
        """The objects as a meta.k8s.io/v1 Table with the kind's columns."""
        s = self.strategy(r)
        return tables.table(s.columns, s.row, objects, resource_version, include_object, headers)

    def watch(self, r: Resource, namespace: str | None, opts: ListOptions) -> AsyncIterator[tuple[str, dict]]:
        """(type, object) for each change after the options' resourceVersion (from "" or "0": the
        current objects first, as ADDED). Bad options are refused here, before the stream starts;
        a compacted resourceVersion ends the stream with a 410 APIError."""
        match = self.matcher(r, opts)
        rv = opts.resource_version
        if rv not in ("", "0") and not rv.isdigit():
            raise bad_request(f"invalid resourceVersion {rv!r}")
        return self._watch(r, namespace, match, rv)

    async def _watch(self, r: Resource, namespace: str | None, match, rv: str) -> AsyncIterator[tuple[str, dict]]:
        present = self.strategy(r).present
        prefix = self.key(r, namespace)
        if rv in ("", "0"):
            current, since = self.store.list(prefix)
            for o in current:
                if match(o):
                    yield "ADDED", present(o)
        else:
            since = int(rv)
        try:
            async for ev in self.store.watch(prefix, since):
                if not r.namespaced and "/" in ev.key[len(prefix):]:
                    continue  # a cluster-scoped kind's prefix may be another kind's too
                # a change into the selection is ADDED for this watch, one out of it DELETED, as
                # upstream's filtered watch has it (a deleted object: as it was)
                now = match(ev.obj)
                if ev.type == "DELETED":
                    kind = "DELETED" if now else None
                else:
                    was = ev.prev is not None and match(ev.prev)
                    kind = ("MODIFIED" if was else "ADDED") if now else "DELETED" if was else None
                if kind:
                    yield kind, present(ev.obj)
        except Gone:
            raise APIError(410, "Expired", f"too old resource version: {rv} ({self.store.revision()})") from None

    # --- create ----------------------------------------------------------------------------

    def create(self, r: Resource, namespace: str | None, body: Any, strict: bool = False,
               dry_run: bool = False) -> dict:
        s = self.strategy(r)
        if "create" not in r.verbs:
            raise APIError(405, "MethodNotAllowed", s.refusal("create"))
        obj = codec.decode(r, s, body, strict)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if r.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
            namespace = namespace or meta.get("namespace")
            if not namespace:
                raise bad_request("a namespace must be specified")
        if not meta.get("name") and not meta.get("generateName"):
            raise invalid(r, "", [v.required("metadata.name")])
        self._check_namespace(r, namespace)
        self.prepare_create(r, obj, namespace, admit=True)
        self._record(r, None, obj)
        self._validate(r, obj)
        for plugin in self.admission:
            plugin.validate(r, obj)
        self._allocate(r, obj, None)
        if dry_run:
            return obj
        try:
            out = self.store.create(self.key(r, namespace, meta["name"]), obj)
        except Exists:
            raise already_exists(r, meta["name"]) from None
        except TooLarge as e:
            raise too_large(e) from None
        self.kinds.changed(r)
        return s.present(out)

    def prepare_create(self, r: Resource, obj: dict, namespace: str | None, admit: bool = False) -> None:
        """The metadata the server owns, the defaults (as decoding gives them), the mutating
        admission plugins (`admit`), then the kind's own fields and defaults."""
        s = self.strategy(r)
        meta = obj.setdefault("metadata", {})
        if r.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{random_suffix()}"
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = clock.now()
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(k, None)
        if s.generation:
            meta["generation"] = 1
        if admit:
            s.defaults(obj)
            for plugin in self.admission:
                plugin.admit(r, obj)
        s.prepare_create(obj)
        s.defaults(obj)

    def _check_namespace(self, r: Resource, namespace: str | None) -> None:
        if not r.namespaced:
            return
        ns = self.store.get(self.key(self.namespaces, None, namespace or ""))
        if ns is None:
            raise APIError(404, "NotFound", f'namespaces "{namespace}" not found',
                           {"name": namespace, "kind": "namespaces"})
        if ns["metadata"].get("deletionTimestamp") and not self.strategy(r).in_terminating_namespace:
            raise APIError(403, "Forbidden", f"{r.plural} is forbidden: unable to create new content in namespace "
                           f"{namespace} because it is being terminated")

    def _validate(self, r: Resource, obj: dict, old: dict | None = None, sub: str | None = None) -> None:
        s = self.strategy(r)
        meta = obj.get("metadata") or {}
        # as upstream's ValidateXUpdate: what may not change first, then the object as it is
        errs = s.validate_update(obj, old) if old is not None else []
        errs += v.check_name(meta.get("name"), s.name_rule)
        errs += v.check_labels(meta.get("labels"), "metadata.labels")
        errs += v.check_annotations(meta.get("annotations"))
        errs += s.validate_status(obj) if sub == "status" else s.validate(obj)
        if old is None:
            errs += s.validate_create(obj)
        if errs:
            raise invalid(r, meta.get("name", ""), errs)

    def _allocate(self, r: Resource, obj: dict, old: dict | None) -> None:
        try:
            self.strategy(r).allocate(obj, old)
        except Invalid as e:
            raise invalid(r, obj["metadata"].get("name", ""), e.errors) from None

    # --- update and patch ------------------------------------------------------------------

    def update(self, r: Resource, namespace: str | None, name: str, body: Any, sub: str | None = None,
               strict: bool = False) -> dict:
        new = codec.decode(r, self.strategy(r), body, strict)
        if (new.get("metadata") or {}).get("name", name) != name:
            raise bad_request(f"the name of the object ({new['metadata']['name']}) does not match the name on the "
                              f"URL ({name})")
        old = self.get(r, namespace, name)
        return self.strategy(r).present(self._store_update(r, namespace, name, new, old, sub, check_rv=True))

    # --- field managers and server-side apply --------------------------------------------------

    def _schema(self, r: Resource) -> Any:
        return definitions.of(r.group, r.version, r.kind) or getattr(self.strategy(r), "schema", None)

    def _record(self, r: Resource, old: dict | None, new: dict, sub: str = "") -> None:
        """managedFields after a write by the request's manager (an apply has set them already)."""
        req = fieldmanager.REQUEST.get()
        if req is None or req.applying:
            return
        fieldmanager.record_update(old, new, self._schema(r), req.manager, sub)

    def apply(self, r: Resource, namespace: str | None, name: str, body: Any, sub: str | None = None,
              strict: bool = False) -> dict:
        """PATCH application/apply-patch+yaml: server-side apply (fieldmanager.py), creating the
        object when it does not exist."""
        req = fieldmanager.REQUEST.get() or fieldmanager.Request()
        if not req.field_manager:
            raise APIError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                           "is required for apply patch",
                           details={"group": "meta.k8s.io", "kind": "PatchOptions",
                                    "causes": [{"reason": "FieldValueRequired", "message":
                                                "Required value: is required for apply patch",
                                                "field": "fieldManager"}]})
        s = self.strategy(r)
        config = codec.decode(r, s, copy.deepcopy(body), strict)
        meta = config.get("metadata") if isinstance(config.get("metadata"), dict) else {}
        if meta.get("name", name) != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if r.namespaced and meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        for _ in range(5):
            try:
                old = self.get(r, namespace, name)
            except APIError as e:
                if e.reason != "NotFound" or sub:
                    raise
                old = None
            try:
                new, entries = fieldmanager.apply(old, config, self._schema(r), req.manager, req.force, sub or "")
            except fieldmanager.ApplyConflict as c:
                raise APIError(409, "Conflict", c.message, details={
                    "causes": [{"reason": "FieldManagerConflict", "message": f"conflict with {m}", "field": p}
                               for m, p in c.conflicts]}) from None
            new.setdefault("metadata", {})["managedFields"] = entries
            new["metadata"]["name"] = name
            token = fieldmanager.REQUEST.set(fieldmanager.Request(req.manager, req.force, req.field_manager, True,
                                                                  req.dry_run))
            try:
                if old is None:
                    req.created = True
                    return self.create(r, namespace, new, strict, dry_run=req.dry_run)
                new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
                try:
                    return s.present(self._store_update(r, namespace, name, new, old, sub, check_rv=True))
                except APIError as e:
                    if e.reason != "Conflict":
                        raise
            finally:
                fieldmanager.REQUEST.reset(token)
        raise conflict(r, name)

    def patch(self, r: Resource, namespace: str | None, name: str, content_type: str, body: Any,
              sub: str | None = None, strict: bool = False) -> dict:
        if content_type.split(";")[0].strip() == patch.APPLY:
            return self.apply(r, namespace, name, body, sub, strict)
        if (fieldmanager.REQUEST.get() or fieldmanager.Request()).force:
            raise APIError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be '
                           "specified for non-apply patch", details={"group": "meta.k8s.io", "kind": "PatchOptions",
                           "causes": [{"reason": "FieldValueForbidden", "message": "Forbidden: may not be specified "
                                       "for non-apply patch", "field": "force"}]})
        for _ in range(5):  # retried on conflicts with other writers, as upstream's GuaranteedUpdate
            old = self.get(r, namespace, name)
            new = self._patched(self.strategy(r), content_type, copy.deepcopy(old), body,
                                definitions.of(r.group, r.version, r.kind))
            new = codec.decode(r, self.strategy(r), new, strict)
            explicit_rv = isinstance(body, dict) and (body.get("metadata") or {}).get("resourceVersion")
            if not explicit_rv:
                new.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
            try:
                out = self._store_update(r, namespace, name, new, old, sub, check_rv=True)
                return self.strategy(r).present(out)
            except APIError as e:
                if e.reason != "Conflict" or explicit_rv:
                    raise
        raise conflict(r, name)

    @staticmethod
    def _patched(s: base.Strategy, content_type: str, target: dict, body: Any, schema: str | None = None) -> dict:
        if not s.strategic_merge and content_type.split(";")[0].strip() == patch.STRATEGIC:
            raise APIError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted "
                           f"media types include: {patch.JSON_PATCH}, {patch.MERGE_PATCH}, {patch.APPLY}")
        try:
            return patch.apply(content_type, target, body, schema)
        except patch.PatchError as e:
            if "unsupported patch type" in str(e):
                raise APIError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                               f"accepted media types include: {patch.JSON_PATCH}, {patch.MERGE_PATCH}, "
                               f"{patch.STRATEGIC}") from None
            raise APIError(422 if "test" in str(e) else 400, "BadRequest", str(e)) from None

    def prepare_update(self, r: Resource, new: dict, old: dict, sub: str | None) -> dict:
        """The object to store: a status update changes only status; a main update keeps the
        status (for kinds with a status subresource) and bumps the generation when the kind says
        it is a new one (most: the spec changed); finalize changes only the namespace's finalizers."""
        s = self.strategy(r)
        if sub == "finalize":
            out = copy.deepcopy(old)
            out.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
            return out
        if sub == "status":
            out = copy.deepcopy(old)
            out["status"] = new.get("status", {})
            # conditions and the like; labels and annotations may change along with status, as upstream allows
            for k in ("labels", "annotations"):
                if k in (new.get("metadata") or {}):
                    out["metadata"][k] = new["metadata"][k]
            return out
        meta_old = old["metadata"]
        out = copy.deepcopy(new)
        meta = out.setdefault("metadata", {})
        for k in OWNED_METADATA:
            if k in meta_old:
                meta[k] = meta_old[k]
            else:
                meta.pop(k, None)
        if meta.get("finalizers") == []:
            del meta["finalizers"]  # an empty list is no list, as Go's omitempty writes it
        if s.status_subresource:
            if "status" in old:
                out["status"] = copy.deepcopy(old["status"])
            else:
                out.pop("status", None)
        s.defaults(out)
        if s.generation and s.generation_changed(out, old):
            meta["generation"] = meta_old.get("generation", 1) + 1
        s.prepare_update(out, old)
        return out

    def _store_update(self, r: Resource, namespace: str | None, name: str, new: dict, old: dict,
                      sub: str | None, check_rv: bool, manager_sub: str = "") -> dict:
        rv = (new.get("metadata") or {}).get("resourceVersion")
        cur_rv = old["metadata"]["resourceVersion"]
        if check_rv and rv and rv != cur_rv:
            raise conflict(r, name)
        out = self.prepare_update(r, new, old, sub)
        self._record(r, old, out, sub or manager_sub)
        self._validate(r, out, old, sub)
        if (fieldmanager.REQUEST.get() or fieldmanager.Request()).dry_run:
            return out  # dryRun=All: validated, not written (nothing allocated)
        if sub is None:
            self._allocate(r, out, old)
        out.setdefault("metadata", {})["resourceVersion"] = cur_rv
        if out == old:
            return old  # a no-op: no write, no new resourceVersion, no watch event (as upstream)
        k = self.key(r, namespace, name)
        if out["metadata"].get("deletionTimestamp") and self.strategy(r).deletion_done(out):
            try:
                gone = self.store.delete(k, int(cur_rv))
            except Conflict:
                raise conflict(r, name) from None
            self.kinds.changed(r)
            return gone
        try:
            written = self.store.update(k, out, int(cur_rv))
            self.kinds.changed(r)
            return written
        except Conflict:
            raise conflict(r, name) from None
        except NotFound:
            raise not_found(r, name) from None
        except TooLarge as e:
            raise too_large(e) from None

    def _write(self, r: Resource, obj: dict, rev: int) -> dict:
        """Store `obj` as it is, over the revision it was read at."""
        name = obj["metadata"]["name"]
        try:
            written = self.store.update(self.key(r, obj["metadata"].get("namespace"), name), obj, rev)
            self.kinds.changed(r)
            return written
        except Conflict:
            raise conflict(r, name) from None
        except TooLarge as e:
            raise too_large(e) from None

    # --- delete ----------------------------------------------------------------------------

    def delete(self, r: Resource, namespace: str | None, name: str, grace: int | None, policy: str | None) -> dict:
        obj = self.get(r, namespace, name)
        meta = obj["metadata"]
        rev = int(meta["resourceVersion"])
        finalizers = list(meta.get("finalizers") or [])
        if policy is None and self.strategy(r).orphan_by_default:
            policy = "Orphan"
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        elif policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        action, obj = self.strategy(r).delete(obj, grace, finalizers)
        if action == base.UPDATE:
            return self._write(r, obj, rev)
        if action == base.KEEP:
            return obj
        try:
            gone = self.store.delete(self.key(r, namespace, name), rev)
        except NotFound:
            raise not_found(r, name) from None
        except Conflict:
            return self.delete(r, namespace, name, grace, policy)
        self.kinds.changed(r)
        return gone

    def delete_collection(self, r: Resource, namespace: str | None, opts: ListOptions, grace: int | None,
                          policy: str | None) -> dict:
        items, _ = self.store.list(self.key(r, namespace))
        match = self.matcher(r, opts)
        out = []
        for o in items:
            if match(o):
                try:
                    out.append(self.delete(r, o["metadata"].get("namespace"), o["metadata"]["name"], grace, policy))
                except APIError as e:
                    if e.code != 404:
                        raise
        return {"kind": self.strategy(r).list_kind, "apiVersion": r.group_version,
                "metadata": {"resourceVersion": str(self.store.revision())}, "items": out}

    # --- subresources ----------------------------------------------------------------------

    def scale(self, r: Resource, namespace: str | None, name: str) -> dict:
        return self.strategy(r).to_scale(self.get(r, namespace, name))

    def update_scale(self, r: Resource, namespace: str | None, name: str, content_type: str | None,
                     body: Any) -> dict:
        """PUT (content_type None) or PATCH of the scale subresource: a new spec.replicas."""
        obj = self.get(r, namespace, name)
        s = self.strategy(r)
        if content_type is not None:
            if not s.strategic_merge and content_type.split(";")[0].strip() == patch.STRATEGIC:
                self._patched(s, content_type, {}, body)  # refused as the object itself refuses it
            try:
                new_scale = patch.apply(content_type, s.to_scale(obj), body, SCALE)
            except patch.PatchError as e:
                raise bad_request(str(e)) from None
        else:
            new_scale = body
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid(r, name, [v.invalid("spec.replicas", replicas, "must be greater than or equal to 0")])
        rv = (new_scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != obj["metadata"]["resourceVersion"]:
            raise conflict(r, name)
        new = s.scaled(copy.deepcopy(obj), replicas)
        return s.to_scale(self._store_update(r, namespace, name, new, obj, None, check_rv=False, manager_sub="scale"))

    def bind(self, namespace: str | None, name: str | None, body: Any) -> None:
        """pods/binding: the scheduler's choice of node."""
        name = name or (body.get("metadata") or {}).get("name")
        node = (body.get("target") or {}).get("name")
        if not node:
            raise invalid(self.pods, name or "", [v.required("target.name")])
        pod = self.get(self.pods, namespace, name)
        if (pod.get("spec") or {}).get("nodeName"):
            raise APIError(409, "Conflict", f"Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is "
                           f"already assigned to node \"{pod['spec']['nodeName']}\"")
        if pod["metadata"].get("deletionTimestamp"):
            raise APIError(409, "Conflict", f"pod {name} is being deleted, cannot be assigned to a host")
        pod["spec"]["nodeName"] = node
        conds = [c for c in (pod.setdefault("status", {}).get("conditions") or []) if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                      "lastTransitionTime": clock.now()})
        pod["status"]["conditions"] = conds
        self._write(self.pods, pod, int(pod["metadata"]["resourceVersion"]))

