"""The Informer against a real aiohttp server on loopback: a watch event far longer than aiohttp's
line limit (a 600 KB ConfigMap, or 4 MB of annotations), a line that is not JSON and an error in
the middle of a stream each break only that watch: the informer relists with backoff, says it is
not healthy meanwhile, and keeps going."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from netlab.api.client import Client, Informer


def cm(name: str, rv: int, size: int = 10) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv)},
            "data": {"big": "x" * size}}


class FakeApi:
    """GET /api/v1/configmaps lists `objects`; with ?watch=true it streams the next script of
    `watches` (lines to send; then the stream ends, as a watch's timeout ends it, but the last
    stays open until the test ends)."""

    def __init__(self, objects: list[dict], watches: list[list[bytes]]):
        self.objects, self.watches = objects, watches
        self.lists = 0
        self.done = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            self.lists += 1
            return web.json_response({"kind": "ConfigMapList", "apiVersion": "v1",
                                      "metadata": {"resourceVersion": str(max(
                                          [int(o["metadata"]["resourceVersion"]) for o in self.objects] or [1]))},
                                      "items": self.objects})
        resp = web.StreamResponse()
        await resp.prepare(request)
        script = self.watches.pop(0) if self.watches else []
        for line in script:
            await resp.write(line)
            if line.startswith(b'{"type": "ADDED"'):  # what a relist would list from now on
                self.objects.append(json.loads(line)["object"])
        if not self.watches:
            await self.done.wait()
        await resp.write_eof()
        return resp


def event(kind: str, obj: dict) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


async def serve(api: FakeApi) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/api/v1/configmaps", api.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def until(cond, timeout: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.02)


def test_informer_reads_events_of_any_size_and_survives_what_it_cannot_parse():
    async def main():
        big = cm("big", 2, 600_000)          # past aiohttp's 128-512 KiB line limit
        huge = cm("huge", 3, 4_000_000)      # past the API's 3 MiB request limit, still read
        api = FakeApi([cm("small", 1)], [
            [event("ADDED", big), event("ADDED", huge)],
            [b"this is not json\n"],           # the watch breaks; relist; watch again
            [event("MODIFIED", cm("small", 4, 700_000))],
        ])
        runner, url = await serve(api)
        client = Client(url)
        inf = Informer(client, "configmaps")
        seen = []
        inf.add_handler(lambda o: seen.append(("add", o["metadata"]["name"])),
                        lambda old, new: seen.append(("update", new["metadata"]["name"])))
        task = asyncio.create_task(inf.run())
        try:
            await inf.wait_synced(5)
            await until(lambda: inf.get("default", "huge") is not None)
            assert len(inf.get("default", "big")["data"]["big"]) == 600_000
            await until(lambda: ("update", "small") in seen)
            assert len(inf.get("default", "small")["data"]["big"]) == 700_000
            assert api.lists == 2 and not task.done() and inf.healthy
            assert "not json" in inf.last_error or inf.last_error == ""  # (cleared by the relist)
        finally:
            api.done.set()
            task.cancel()
            await client.close()
            await runner.cleanup()
        return seen
    seen = asyncio.run(main())
    assert seen[:3] == [("add", "small"), ("add", "big"), ("add", "huge")]


def test_informer_is_not_healthy_while_it_cannot_list():
    async def main():
        api = FakeApi([cm("small", 1)], [[b'{"type": "ERROR", "object": {"code": 500, "message": "boom"}}\n']])
        runner, url = await serve(api)
        client = Client(url)
        inf = Informer(client, "configmaps")
        task = asyncio.create_task(inf.run())
        try:
            await inf.wait_synced(5)
            api.done.set()
            await runner.cleanup()  # the API server goes away: relists fail
            await until(lambda: not inf.healthy)
            await asyncio.sleep(0.5)
            assert not inf.healthy and not task.done() and inf.synced
        finally:
            task.cancel()
            await client.close()
    asyncio.run(main())
