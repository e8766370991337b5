"""The side HTTP listener every long-running component has beside its real work: health, readiness
and metrics on their own addresses (kube-proxy's :10256 /healthz and :10249 /metrics, CoreDNS's
:8080 /health, :8181 /ready and :9153 /metrics), each a small aiohttp application.

    await serve("0.0.0.0:8181", {"/ready": check(lambda: informers_synced)})
    await serve("127.0.0.1:10249", {"/metrics": metrics(registry)})
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from netlab.kit.metrics import CONTENT_TYPE, Registry

log = logging.getLogger("netlab.kit.serving")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def split_address(addr: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (every address) or `[V6]:PORT`."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or default_host, int(port)


async def serve(addr: str, routes: dict[str, Handler]) -> web.AppRunner:
    """Start serving `routes` (GET) on `addr`; raises OSError when the address cannot be bound."""
    app = web.Application()
    for path, fn in routes.items():
        app.router.add_get(path, fn)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = split_address(addr)
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


async def serve_or_warn(addr: str, routes: dict[str, Handler], what: str) -> web.AppRunner | None:
    """serve(), logging instead of failing when the address is taken: the component's real work
    goes on without its side listener, as upstream's do."""
    try:
        return await serve(addr, routes)
    except OSError as e:
        log.warning("cannot serve %s on %s: %s", what, addr, e)
        return None


def check(ok: Callable[[], bool], good: str = "OK", bad: str = "not ready") -> Handler:
    """A probe endpoint: 200 with `good` while ok(), else 503 with `bad`."""
    async def handler(_: web.Request) -> web.Response:
        healthy = ok()
        return web.Response(text=good if healthy else bad, status=200 if healthy else 503)
    return handler


def metrics(registry: Registry) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=registry.text().encode(), headers={"Content-Type": CONTENT_TYPE})
    return handler
