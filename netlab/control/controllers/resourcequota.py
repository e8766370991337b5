"""The resource quota controller, as upstream's: each ResourceQuota's status is its spec.hard and
what its namespace uses of each of those resources (netlab/api/quota.py counts), recomputed when
a counted object changes and every 5 minutes (upstream's resync)."""

from __future__ import annotations

import asyncio
import copy

from netlab.api import quota
from netlab.control.controllers.base import Controller, split_key

COUNTED = ("pods", "services", "configmaps", "secrets", "persistentvolumeclaims", "replicationcontrollers")
RESYNC = 300.0


def status_of(q: dict, objects: dict[tuple[str, str], list[dict]]) -> dict:
    """The quota's status, given the namespace's objects by (plural, group)."""
    hard = dict((q.get("spec") or {}).get("hard") or {})
    used = {}
    for name, limit in hard.items():
        kind = quota.resource_kind(name)
        total = 0
        for o in objects.get(kind, []) if kind else []:
            total += quota.usage(kind[0], kind[1], o).get(name, 0)
        used[name] = quota.text(name, total, limit)
    return {"hard": hard, "used": used}


class ResourceQuotaController(Controller):
    name = "resourcequota-controller"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.quotas = ctx.informer("resourcequotas")
        self.quotas.add_handler(self.enqueue_obj, lambda old, new: self.enqueue_obj(new), None)
        self.counted = {plural: ctx.informer(plural) for plural in COUNTED}
        for inf in self.counted.values():
            inf.add_handler(self._changed, lambda old, new: self._changed(new), self._changed)
        self.resync_started = False

    def _changed(self, obj: dict) -> None:
        ns = obj["metadata"].get("namespace")
        for q in self.quotas.list():
            if q["metadata"]["namespace"] == ns:
                self.enqueue_obj(q)

    async def run(self) -> None:
        asyncio.get_running_loop().call_later(RESYNC, self._resync)
        await super().run()

    def _resync(self) -> None:
        for q in self.quotas.list():
            self.enqueue_obj(q)
        asyncio.get_running_loop().call_later(RESYNC, self._resync)

    async def objects(self, namespace: str, kinds: set[tuple[str, str]]) -> dict[tuple[str, str], list[dict]]:
        out: dict[tuple[str, str], list[dict]] = {}
        for plural, group in kinds:
            if not group and plural in self.counted:
                out[(plural, group)] = [o for o in self.counted[plural].list()
                                        if o["metadata"].get("namespace") == namespace]
            else:  # a count/<resource> of another kind: read when asked
                resource = f"{plural}.{group}" if group else plural
                out[(plural, group)] = (await self.client.list(resource, namespace)).get("items") or []
        return out

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        q = self.quotas.get(namespace, name)
        if q is None:
            return
        hard = (q.get("spec") or {}).get("hard") or {}
        kinds = {k for k in (quota.resource_kind(r) for r in hard) if k}
        status = status_of(q, await self.objects(namespace or "", kinds))
        if (q.get("status") or {}) == status:
            return
        new = copy.deepcopy(q)
        new["status"] = status
        await self.client.update("resourcequotas", new, "status")
