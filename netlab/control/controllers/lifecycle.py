"""Object lifecycles: the namespace controller (a deleted namespace's contents go, then the
namespace) and the garbage collector (dependents follow their owners by ownerReferences, with
background, foreground and orphan propagation)."""

from __future__ import annotations

from netlab.api.client import KINDS, RESOURCES, ApiError
from netlab.control.controllers.base import Controller, split_key

# Kinds that may own or be owned, as the garbage collector watches them (an owner of a kind not
# watched here is looked up by its plural, from the served kinds).
GC_RESOURCES = ["deployments", "replicasets", "statefulsets", "daemonsets", "controllerrevisions", "pods",
                "services", "endpointslices", "configmaps", "replicationcontrollers", "jobs", "cronjobs",
                "persistentvolumeclaims"]


class NamespaceController(Controller):
    name = "namespace-controller"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.ns = ctx.informer("namespaces")
        self.ns.add_handler(self.enqueue_obj, self.enqueue_obj, None)

    async def sync(self, key: str) -> None:
        ns = self.ns.get(None, key)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        left = 0
        # custom resources too, found as upstream's namespace controller finds them: by discovery
        served = dict(RESOURCES)
        for k, v in (await self.client.discover()).items():
            if "." in k and "/" not in k and RESOURCES.get(k.split(".", 1)[0]) != v \
                    and k not in self.client.unlisted:  # "<plural>.<group>"
                served[k] = v
        for resource, (_, _, namespaced) in served.items():
            if not namespaced:
                continue
            try:
                items = (await self.client.list(resource, key))["items"]
            except ApiError as e:
                if e.status == 404:  # a custom resource whose CRD is gone since discovery remembered it
                    continue
                raise
            for o in items:
                left += 1
                if not o["metadata"].get("deletionTimestamp"):
                    try:
                        await self.client.delete(resource, o["metadata"]["name"], key,
                                                 propagation_policy="Background")
                    except ApiError as e:
                        if e.status != 404:
                            raise
        if left:
            self.enqueue(key, 0.5)
            return
        if "kubernetes" in ((ns.get("spec") or {}).get("finalizers") or []):
            fin = dict(ns, spec=dict(ns.get("spec") or {}, finalizers=[
                f for f in ns["spec"]["finalizers"] if f != "kubernetes"]))
            await self.client.update("namespaces", fin, subresource="finalize")


class GarbageCollector(Controller):
    """Keys are owner uids (foreground/orphan work) or "check:<resource>:<ns>/<name>" (a dependent
    whose owners must still exist)."""
    name = "garbage-collector"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.infs = {r: ctx.informer(r, "owner") for r in GC_RESOURCES}
        for r, inf in self.infs.items():
            inf.add_handler(self._added(r), lambda old, new, r=r: self._added(r)(new), self._deleted)

    def _added(self, resource: str):
        def handler(obj: dict) -> None:
            if obj["metadata"].get("ownerReferences"):
                ns = obj["metadata"].get("namespace") or ""
                self.enqueue(f"check:{resource}:{ns}/{obj['metadata']['name']}")
            fins = obj["metadata"].get("finalizers") or []
            if obj["metadata"].get("deletionTimestamp") and ("foregroundDeletion" in fins or "orphan" in fins):
                self.enqueue(f"owner:{resource}:{obj['metadata'].get('namespace') or ''}/{obj['metadata']['name']}")
        return handler

    def _deleted(self, obj: dict) -> None:
        uid = obj["metadata"]["uid"]
        for r, inf in self.infs.items():
            for dep in inf.by_index("owner", uid):
                self.enqueue(f"check:{r}:{dep['metadata'].get('namespace') or ''}/{dep['metadata']['name']}")

    def dependents(self, uid: str) -> list[tuple[str, dict]]:
        return [(r, d) for r, inf in self.infs.items() for d in inf.by_index("owner", uid)]

    async def sync(self, key: str) -> None:
        what, resource, rest = key.split(":", 2)
        ns, name = split_key(rest)
        ns = ns or None
        obj = self.infs[resource].get(ns, name)
        if obj is None:
            return
        if what == "owner":
            await self._finalize(resource, obj)
        else:
            await self._check(resource, obj)

    async def _owner_exists(self, ref: dict, ns: str | None) -> bool:
        resource = KINDS.get(ref.get("kind", ""))
        if resource is None:
            return True  # a kind we do not serve: leave it be
        try:
            owner = await self.client.get(resource, ref["name"], ns if RESOURCES[resource][2] else None)
        except ApiError as e:
            if e.status == 404:
                return False
            raise
        return owner["metadata"]["uid"] == ref["uid"]

    async def _check(self, resource: str, obj: dict) -> None:
        """Delete a dependent whose owners are all gone (a live GET confirms, as upstream does)."""
        refs = obj["metadata"].get("ownerReferences") or []
        ns = obj["metadata"].get("namespace")
        gone = [ref for ref in refs if not await self._owner_exists(ref, ns)]
        if not refs or len(gone) < len(refs):
            if gone:  # some owners remain: drop the dangling references only
                keep = [r for r in refs if r not in gone]
                await self.client.patch(resource, obj["metadata"]["name"], {"metadata": {"ownerReferences": keep}}, ns)
            return
        try:
            await self.client.delete(resource, obj["metadata"]["name"], ns, propagation_policy="Background")
        except ApiError as e:
            if e.status != 404:
                raise

    async def _finalize(self, resource: str, owner: dict) -> None:
        fins = owner["metadata"].get("finalizers") or []
        uid = owner["metadata"]["uid"]
        deps = self.dependents(uid)
        if "orphan" in fins:
            for r, d in deps:
                keep = [ref for ref in d["metadata"].get("ownerReferences") or [] if ref["uid"] != uid]
                await self.client.patch(r, d["metadata"]["name"], {"metadata": {"ownerReferences": keep or None}},
                                        d["metadata"].get("namespace"))
            await self._drop_finalizer(resource, owner, "orphan")
            return
        if "foregroundDeletion" in fins:
            blocking = [(r, d) for r, d in deps if any(ref["uid"] == uid and ref.get("blockOwnerDeletion")
                                                       for ref in d["metadata"].get("ownerReferences") or [])]
            for r, d in deps:
                if not d["metadata"].get("deletionTimestamp"):
                    try:
                        await self.client.delete(r, d["metadata"]["name"], d["metadata"].get("namespace"),
                                                 propagation_policy="Foreground")
                    except ApiError as e:
                        if e.status != 404:
                            raise
            if blocking:
                self.enqueue(f"owner:{resource}:{owner['metadata'].get('namespace') or ''}/{owner['metadata']['name']}",
                             0.5)
                return
            await self._drop_finalizer(resource, owner, "foregroundDeletion")

    async def _drop_finalizer(self, resource: str, obj: dict, fin: str) -> None:
        cur = await self.client.get(resource, obj["metadata"]["name"], obj["metadata"].get("namespace"))
        rest = [f for f in cur["metadata"].get("finalizers") or [] if f != fin]
        await self.client.patch(resource, obj["metadata"]["name"],
                                {"metadata": {"finalizers": rest or None,
                                              "resourceVersion": cur["metadata"]["resourceVersion"]}},
                                obj["metadata"].get("namespace"))
