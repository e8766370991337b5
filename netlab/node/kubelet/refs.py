"""The ConfigMaps, Secrets and PersistentVolumeClaims this node's pods refer to, each watched on
its own (a list and watch with fieldSelector metadata.name, in its namespace), as upstream's
kubelet watches them: the Node authorizer lets a kubelet read those, and no others. A watch lives while a pod of the node
refers to its object."""

from __future__ import annotations

import asyncio
import contextlib

from netlab.api.client import Client, Informer
from netlab.api.podrefs import pod_refs

SYNC_WAIT = 5.0  # how long a new pod's worker waits for its objects before it starts anyway


class Referenced:
    def __init__(self, client: Client, resource: str, on_change):
        self.client, self.resource, self.on_change = client, resource, on_change
        self.watches: dict[tuple[str, str], tuple[Informer, asyncio.Task]] = {}
        self.users: dict[tuple[str, str], set[str]] = {}

    async def ensure(self, pod: dict) -> None:
        """Watch what `pod` refers to, and wait (a little) until each is listed."""
        meta = pod["metadata"]
        ns, uid = meta["namespace"], meta["uid"]
        new = []
        for name in sorted(n for n in pod_refs(pod)[self.resource] if n):
            key = (ns, name)
            self.users.setdefault(key, set()).add(uid)
            if key not in self.watches:
                inf = Informer(self.client, self.resource, namespace=ns, field_selector=f"metadata.name={name}")
                inf.add_handler(self.on_change, lambda old, obj: self.on_change(obj), None)
                self.watches[key] = (inf, asyncio.create_task(inf.run()))
            new.append(self.watches[key][0])
        if new:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(inf.wait_synced() for inf in new)), SYNC_WAIT)

    def release(self, uid: str) -> None:
        for key in [k for k, users in self.users.items() if uid in users]:
            self.users[key].discard(uid)
            if not self.users[key]:
                del self.users[key]
                _, task = self.watches.pop(key)
                task.cancel()

    def objects(self, ns: str) -> dict[str, dict]:
        out = {}
        for (wns, name), (inf, _) in self.watches.items():
            if wns == ns:
                obj = inf.get(ns, name)
                if obj is not None:
                    out[name] = obj
        return out
