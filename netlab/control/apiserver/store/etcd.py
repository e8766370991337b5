"""The store on a real etcd (v3 API, through its HTTP/JSON gateway with etcd3gw), laid out as
upstream's etcd3 storage does: value = object JSON, resourceVersion = the key's mod_revision,
create/update/delete as transactions compared on mod_revision, watch from a revision."""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import threading
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import etcd3gw

from netlab.control.apiserver.store.base import Conflict, Event, Exists, Gone, NotFound, Store, encode, with_rv


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _range_end(prefix: str) -> str:
    b = bytearray(prefix.encode())
    b[-1] += 1
    return _b64(bytes(b))


class EtcdStore(Store):
    def __init__(self, url: str):
        u = urlparse(url)
        self.client = etcd3gw.client(host=u.hostname, port=u.port or 2379)
        self.compacted = 0
        self.fanouts: dict[str, _Fanout] = {}

    def _txn(self, compare: list, success: list, failure: list | None = None) -> dict[str, Any]:
        return self.client.transaction({"compare": compare, "success": success, "failure": failure or []})

    def revision(self) -> int:
        return int(self.client.post(self.client.get_url("/kv/range"), json={"key": _b64("\0"), "limit": 1})
                   ["header"]["revision"])

    def get(self, key: str) -> dict[str, Any] | None:
        r = self.client.post(self.client.get_url("/kv/range"), json={"key": _b64(key)})
        kvs = r.get("kvs") or []
        return with_rv(json.loads(base64.b64decode(kvs[0]["value"])), int(kvs[0]["mod_revision"])) if kvs else None

    def list(self, prefix: str) -> tuple[list[dict[str, Any]], int]:
        r = self.client.post(self.client.get_url("/kv/range"),
                             json={"key": _b64(prefix), "range_end": _range_end(prefix)})
        items = [with_rv(json.loads(base64.b64decode(kv["value"])), int(kv["mod_revision"]))
                 for kv in r.get("kvs") or []]
        return items, int(r["header"]["revision"])

    def _put(self, key: str, obj: dict[str, Any], compare: dict) -> dict[str, Any]:
        obj.get("metadata", {}).pop("resourceVersion", None)
        value = encode(obj)
        r = self._txn([compare], [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
                      [{"request_range": {"key": _b64(key)}}])
        if not r.get("succeeded"):
            return {}
        return with_rv(obj, int(r["header"]["revision"]))

    def create(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        out = self._put(key, obj, {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": 0})
        if not out:
            raise Exists(key)
        return out

    def update(self, key: str, obj: dict[str, Any], expect: int | None = None) -> dict[str, Any]:
        if expect is None:
            cur = self.get(key)
            if cur is None:
                raise NotFound(key)
            expect = int(cur["metadata"]["resourceVersion"])
        out = self._put(key, obj, {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": expect})
        if not out:
            raise NotFound(key) if self.get(key) is None else Conflict(key)
        return out

    def delete(self, key: str, expect: int | None = None) -> dict[str, Any]:
        cur = self.get(key)
        if cur is None:
            raise NotFound(key)
        rev = int(cur["metadata"]["resourceVersion"])
        if expect is not None and expect != rev:
            raise Conflict(key)
        r = self._txn([{"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": rev}],
                      [{"request_delete_range": {"key": _b64(key)}}])
        if not r.get("succeeded"):
            raise Conflict(key)
        return with_rv(cur, int(r["header"]["revision"]))  # as it was, at the deletion's revision

    async def watch(self, prefix: str, since: int) -> AsyncIterator[Event]:
        """Watchers of one prefix share one etcd watch (as the API server's watch cache shares
        one per resource), so fifty clients are not fifty streams through the gateway; a watch
        from before what the shared one holds gets a stream of its own."""
        f = self.fanouts.get(prefix)
        if f is None or f.closed or not f.covers(since):
            self._check_available(prefix, since)
            if f is None or f.closed:
                f = self.fanouts[prefix] = _Fanout(self._watch(prefix, since), since)
            else:
                async for ev in self._watch(prefix, since):
                    yield ev
                return
        async for ev in f.subscribe(since):
            yield ev

    def _check_available(self, prefix: str, since: int) -> None:
        """Gone if etcd has compacted past `since` (it refuses a read at such a revision)."""
        if since < self.compacted:
            raise Gone(since)
        if since > 0:
            try:
                self.client.post(self.client.get_url("/kv/range"), json={"key": _b64(prefix), "revision": since,
                                                                         "limit": 1})
            except Exception as e:  # noqa: BLE001 - etcd3gw raises its own error types
                if "compacted" in f"{e} {getattr(e, 'detail_text', '')}":
                    raise Gone(since) from None
                raise

    async def _watch(self, prefix: str, since: int) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        events, cancel = self.client.watch_prefix(prefix, start_revision=since + 1, prev_kv=True)

        def pump() -> None:
            try:
                for e in events:
                    loop.call_soon_threadsafe(q.put_nowait, e)
            except Exception as err:  # noqa: BLE001 - the stream ended; tell the reader
                loop.call_soon_threadsafe(q.put_nowait, err)
            loop.call_soon_threadsafe(q.put_nowait, None)

        threading.Thread(target=pump, daemon=True).start()
        try:
            while True:
                e = await q.get()
                if e is None or isinstance(e, Exception):
                    return
                kv = e["kv"]
                rev = int(kv["mod_revision"])
                key = kv["key"].decode() if isinstance(kv["key"], bytes) else kv["key"]
                val = (e.get("prev_kv") or {}).get("value")  # etcd3gw decodes kv, not prev_kv
                raw = (base64.b64decode(val) if isinstance(val, str) else val) or b"{}"
                prev = json.loads(raw) if val else None
                if e.get("type") == "DELETE":
                    yield Event("DELETED", key, with_rv(json.loads(raw), rev), rev, prev)
                else:
                    kind = "ADDED" if int(kv.get("create_revision", 0)) == rev else "MODIFIED"
                    yield Event(kind, key, with_rv(json.loads(kv["value"]), rev), rev, prev)
        finally:
            cancel()

    def compact(self) -> None:
        rev = self.revision() - 1000
        if rev > self.compacted:
            self.compact_to(rev)

    def compact_to(self, rev: int) -> None:
        self.client.post(self.client.get_url("/kv/compaction"), json={"revision": rev, "physical": False})
        self.compacted = rev

    def close(self) -> None:
        pass


class _Fanout:
    """One etcd watch, its recent events, and the queues of the watchers that share it."""

    def __init__(self, stream: AsyncIterator[Event], since: int, keep: int = 10_000):
        self.since = since  # every event after this revision is in `recent` (while it is not full)
        self.recent: collections.deque[Event] = collections.deque(maxlen=keep)
        self.subscribers: set[asyncio.Queue] = set()
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._pump(stream))

    def covers(self, since: int) -> bool:
        if since < self.since:
            return False
        return len(self.recent) < (self.recent.maxlen or 0) or since >= self.recent[0].rev - 1

    async def _pump(self, stream: AsyncIterator[Event]) -> None:
        try:
            async for ev in stream:
                self.recent.append(ev)
                for q in self.subscribers:
                    q.put_nowait(ev)
        except Exception:  # noqa: BLE001 - the stream broke: its watchers end, clients relist
            pass
        self.closed = True
        for q in self.subscribers:
            q.put_nowait(None)

    async def subscribe(self, since: int) -> AsyncIterator[Event]:
        q: asyncio.Queue = asyncio.Queue()
        for ev in self.recent:  # what happened since the watcher's revision, then live
            if ev.rev > since:
                q.put_nowait(ev)
        if self.closed:
            q.put_nowait(None)
        self.subscribers.add(q)
        try:
            while (ev := await q.get()) is not None:
                yield ev
        finally:
            self.subscribers.discard(q)
