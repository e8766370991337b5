"""What every controller shares: the informers (one per resource, shared by all controllers of
the process), a de-duplicating work queue of object keys, and retries with backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from netlab.api.client import ApiError, Client, Informer
from netlab.api.selectors import selector_matches

log = logging.getLogger("netlab.controllers")


class Context:
    """The client and the shared informers of one controller-manager process."""

    def __init__(self, client: Client, cluster_cidr: str = "", node_cidr_mask: int = 24, root_ca: bytes = b""):
        self.client = client
        self.cluster_cidr, self.node_cidr_mask = cluster_cidr, node_cidr_mask  # node IPAM, when allocating
        self.root_ca = root_ca  # the CA the root CA publisher puts in every namespace
        self.informers: dict[str, Informer] = {}

    def informer(self, resource: str, *indexes: str) -> Informer:
        """The shared informer of `resource`, with the named INDEXES added."""
        if resource not in self.informers:
            self.informers[resource] = Informer(self.client, resource)
        inf = self.informers[resource]
        for name in indexes:
            inf.add_index(name, INDEXES[name])
        return inf

    async def start(self) -> list[asyncio.Task]:
        tasks = [asyncio.create_task(inf.run()) for inf in self.informers.values()]
        await asyncio.gather(*(inf.wait_synced() for inf in self.informers.values()))
        return tasks


# The indexes controllers share. The informers are shared by every controller of the process, so
# an index name has one meaning here (Informer.add_index refuses a second).
INDEXES: dict[str, Any] = {
    "controller": lambda o: [r["uid"] for r in o["metadata"].get("ownerReferences") or [] if r.get("controller")],
    "owner": lambda o: [r["uid"] for r in o["metadata"].get("ownerReferences") or []],
    "namespace": lambda o: [o["metadata"].get("namespace") or ""],
}


def owner_ref(obj: dict, controller: bool = True) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": True}


def controller_of(obj: dict) -> dict | None:
    return next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def key_of(obj: dict) -> str:
    ns = obj["metadata"].get("namespace")
    return f"{ns}/{obj['metadata']['name']}" if ns else obj["metadata"]["name"]


def split_key(key: str) -> tuple[str | None, str]:
    if "/" in key:
        ns, name = key.split("/", 1)
        return ns, name
    return None, key


class Controller:
    name = "controller"
    workers = 1

    def __init__(self, ctx: Context):
        self.ctx, self.client = ctx, ctx.client
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.pending: set[str] = set()
        self.failures: dict[str, int] = {}

    def enqueue(self, key: str, delay: float = 0.0) -> None:
        if delay:
            asyncio.get_running_loop().call_later(delay, self.enqueue, key)
            return
        if key not in self.pending:
            self.pending.add(key)
            self.queue.put_nowait(key)

    def enqueue_obj(self, obj: dict, *_: Any) -> None:
        self.enqueue(key_of(obj))

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self.workers)))

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            self.pending.discard(key)
            try:
                await self.sync(key)
                self.failures.pop(key, None)
            except ApiError as e:
                n = self.failures[key] = self.failures.get(key, 0) + 1
                if e.status not in (404, 409):
                    log.warning("%s: sync %s failed: %s", self.name, key, e)
                self.enqueue(key, min(0.05 * 2 ** n, 10) * (0.5 + random.random()))
            except Exception:  # noqa: BLE001 - keep the controller alive
                n = self.failures[key] = self.failures.get(key, 0) + 1
                log.exception("%s: sync %s failed", self.name, key)
                self.enqueue(key, min(0.1 * 2 ** n, 30))

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def event(self, obj: dict, reason: str, message: str, type_: str = "Normal") -> None:
        from netlab.api.client import event

        try:
            await self.client.create("events", event(obj, reason, message, type_, component=self.name))
        except ApiError as e:
            log.debug("event %s for %s not recorded: %s", reason, key_of(obj), e)


def pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_active(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") \
        and not pod["metadata"].get("deletionTimestamp")


def matches(selector: dict | None, labels: dict | None) -> bool:
    if not selector:
        return False
    return selector_matches(selector, labels or {})
