"""`netlab ui`: a live picture of the lab in the browser, served on 127.0.0.1 only.

The model is topology.read()'s (nodes, their uplink, cni0, vxlan and pod veths, from the kernel
and the kubelets' records) plus each node's routes, and the API's pods, Services and
EndpointSlices, kept by Informers (the API's watch). The page gets:

    GET  /                      the page (static/, served from the package: no build step, no CDN)
    GET  /api/snapshot          the lab as it is now (JSON)
    GET  /api/events            server-sent events: `snapshot` on every change the watch brings
                                (and when the kernel's links change), `rates` every second
    GET  /api/rules?service=NS/NAME   the Service's rules on every node in the current proxy mode
    POST /api/trace {"src", "dst", "proto"}   `netlab trace`: the hops of one real probe
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from pathlib import Path

from aiohttp import web

from netlab.api.client import ApiError, Client, Informer
from netlab.kit import net
from netlab.kit.cluster import ClusterError
from netlab.tools import rules, topology
from netlab.tools.testing import Lab

log = logging.getLogger("netlab.tools.ui")
STATIC = Path(__file__).parent / "static"
KINDS = ("nodes", "pods", "services", "endpointslices")


def counters(ns: str | None) -> dict[str, tuple[int, int, int, int]]:
    """Each link's rx/tx packets and bytes in namespace `ns` (the kernel's IFLA_STATS64)."""
    out = {}
    with net.ipr(ns) as ip:
        for link in ip.get_links():
            s = link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS")
            if s is not None:
                out[link.get_attr("IFLA_IFNAME")] = (s["rx_packets"], s["tx_packets"], s["rx_bytes"], s["tx_bytes"])
    return out


def _pod(p: dict) -> dict:
    m, st = p["metadata"], p.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    return {"name": f"{m.get('namespace')}/{m['name']}", "node": (p.get("spec") or {}).get("nodeName"),
            "ip": st.get("podIP") or "", "phase": st.get("phase") or "Pending", "ready": ready,
            "deleting": bool(m.get("deletionTimestamp")), "labels": m.get("labels") or {}}


def _service(s: dict, slices: list[dict]) -> dict:
    m, spec = s["metadata"], s.get("spec") or {}
    key = f"{m.get('namespace')}/{m['name']}"
    eps = []
    for sl in slices:
        sm = sl["metadata"]
        if sm.get("namespace") == m.get("namespace") and \
                (sm.get("labels") or {}).get("kubernetes.io/service-name") == m["name"]:
            for e in sl.get("endpoints") or []:
                ready = (e.get("conditions") or {}).get("ready") is not False
                ref = e.get("targetRef") or {}
                for a in e.get("addresses") or []:
                    eps.append({"ip": a, "ready": ready, "pod": f"{ref.get('namespace', m.get('namespace'))}/"
                                f"{ref['name']}" if ref.get("name") else None, "node": e.get("nodeName")})
    return {"name": key, "type": spec.get("type", "ClusterIP"), "clusterIP": spec.get("clusterIP") or "",
            "ports": [f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []],
            "selector": spec.get("selector") or {}, "endpoints": sorted(eps, key=lambda e: e["ip"])}


@web.middleware
async def _local_only(request: web.Request, handler):
    """Only this machine's own pages: a Host other than the loopback's (a DNS name rebound to
    127.0.0.1) is refused, and a trace must be asked as JSON, which a page elsewhere cannot send
    here without a CORS preflight this server never grants."""
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        return web.json_response({"error": f"Host {request.host!r}: netlab ui answers only 127.0.0.1"}, status=403)
    if request.method == "POST" and request.content_type != "application/json":
        return web.json_response({"error": "Content-Type: must be application/json"}, status=415)
    return await handler(request)


class Ui:
    def __init__(self, lab: Lab):
        self.lab, self.cluster = lab, lab.cluster
        self.client: Client | None = None
        self.informers: dict[str, Informer] = {}
        self.changed = asyncio.Event()
        self.listeners: set[asyncio.Queue] = set()
        self.kernel: tuple[list[topology.NodeView], dict[str, list[dict]]] = ([], {})
        self.rates: dict = {}
        self._tasks: list[asyncio.Task] = []
        self.tracing = asyncio.Lock()  # one trace at a time: each programs the nodes' netlab-trace table

    # --- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.client = Client.from_kubeconfig(self.lab.kubeconfig)
        for kind in KINDS:
            inf = Informer(self.client, kind)
            inf.add_handler(self._poke, lambda *_: self._poke(), self._poke)
            self.informers[kind] = inf
            self._tasks.append(asyncio.create_task(inf.run()))
        await asyncio.gather(*(i.wait_synced(30) for i in self.informers.values()))
        self.kernel = await asyncio.to_thread(self._read_kernel)
        self._tasks += [asyncio.create_task(self._publish()), asyncio.create_task(self._poll())]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.client is not None:
            await self.client.close()

    def _poke(self, *_: object) -> None:
        self.changed.set()

    # --- the model -------------------------------------------------------------------------

    def _read_kernel(self) -> tuple[list[topology.NodeView], dict[str, list[dict]]]:
        views = topology.read(self.cluster)
        routes = {}
        for n in self.cluster.nodes:
            try:
                routes[n.name] = net.route_list(n.netns)
            except Exception:  # noqa: BLE001 - a node going down has no routes to show
                routes[n.name] = []
        return views, routes

    def snapshot(self) -> dict:
        views, routes = self.kernel
        api_nodes = {n["metadata"]["name"]: n for n in self.informers["nodes"].list()}
        slices = self.informers["endpointslices"].list()
        nodes = []
        for v in views:
            an = api_nodes.get(v.name) or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (an.get("status") or {}).get("conditions") or [])
            node = self.cluster.node(v.name)
            links = [{"name": v.uplink, "addr": v.addr, "to": "node network"},
                     {"name": "cni0", "addr": v.cni0, "to": "bridge"}]
            if v.vxlan is not None:
                links.append({"name": topology.VXLAN_DEV, "addr": v.vxlan, "to": "vxlan"})
            links += [{"name": p.veth, "addr": p.ip, "to": p.pod} for p in v.pods]
            nodes.append({"name": v.name, "role": node.role, "ip": node.ip, "podCIDR": node.pod_cidr,
                          "netns": v.netns, "ready": ready, "links": links, "routes": routes.get(v.name, [])})
        pods = sorted((_pod(p) for p in self.informers["pods"].list()), key=lambda p: p["name"])
        services = sorted((_service(s, slices) for s in self.informers["services"].list()), key=lambda s: s["name"])
        c = self.cluster
        network = ({"name": "this machine's network"} if c.host else
                   {"name": topology.NODE_BRIDGE, "gateway": c.node_gateway, "netns": c.netns})
        return {"lab": c.name, "proxyMode": c.proxy_mode, "backend": c.backend, "network": network,
                "nodes": nodes, "pods": pods,
                "services": services, "time": time.time()}

    async def _publish(self) -> None:
        """On every change: re-read the kernel's side (a new pod has a new veth), tell every page."""
        while True:
            await self.changed.wait()
            await asyncio.sleep(0.2)  # a burst of events (a pod and its slice) as one picture
            self.changed.clear()
            self.kernel = await asyncio.to_thread(self._read_kernel)
            self._send("snapshot", self.snapshot())

    async def _poll(self) -> None:
        """Every second: each node link's packet and byte rates, from the kernel's counters."""
        last: dict[str, tuple[float, dict]] = {}
        seen: dict[str, set[str]] = {}
        while True:
            now = time.monotonic()
            rates = {}
            for n in self.cluster.nodes:
                try:
                    c = await asyncio.to_thread(counters, n.netns)
                except Exception:  # noqa: BLE001 - a node that is down has no counters
                    continue
                if n.name in last:
                    t0, c0 = last[n.name]
                    dt = max(now - t0, 1e-3)
                    rates[n.name] = {name: {k: max(0, round((v[i] - c0[name][i]) / dt, 1)) for i, k in
                                            enumerate(("rxPps", "txPps", "rxBps", "txBps"))}
                                     for name, v in c.items() if name in c0}
                last[n.name] = (now, c)
            if rates:
                self.rates = rates
                self._send("rates", rates)
            # the kernel's own changes (a veth gone with its pod) show within a second too
            links = {node: set(r) for node, r in rates.items()}
            if seen and links != seen:
                self.changed.set()
            seen = links
            await asyncio.sleep(max(0.0, 1 - (time.monotonic() - now)))

    def _send(self, event: str, data: dict) -> None:
        msg = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
        for q in list(self.listeners):
            if q.qsize() < 100:  # a page that stopped reading is not kept waiting for
                q.put_nowait(msg)

    # --- HTTP ------------------------------------------------------------------------------

    async def index(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def get_snapshot(self, _: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    async def events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        q: asyncio.Queue = asyncio.Queue()
        self.listeners.add(q)
        try:
            await resp.write(f"event: snapshot\ndata: {json.dumps(self.snapshot())}\n\n".encode())
            if self.rates:  # the last second's, not a blank until the next poll
                await resp.write(f"event: rates\ndata: {json.dumps(self.rates)}\n\n".encode())
            while True:
                try:
                    msg = await asyncio.wait_for(q.get(), 15)
                except asyncio.TimeoutError:
                    msg = b": keep-alive\n\n"
                await resp.write(msg)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.listeners.discard(q)
        return resp

    async def get_rules(self, request: web.Request) -> web.Response:
        service = request.query.get("service", "")
        if "/" not in service:
            return web.json_response({"error": "service: required, as NAMESPACE/NAME"}, status=400)
        mode = self.cluster.proxy_mode
        names = None
        if mode == "ipvs":  # IPVS's virtual servers have no names: the Services give them
            names = rules.service_names(self.informers["services"].list(), [n.ip for n in self.cluster.nodes])

        def read() -> list[dict]:
            out = []
            for n in self.cluster.nodes:
                try:
                    text = rules.format_routes(rules.routes(n.netns, mode, names), service)
                except Exception as e:  # noqa: BLE001 - one node's failure is shown, not fatal
                    text = f"(cannot read: {e})\n"
                out.append({"node": n.name, "text": text or "(no rules)\n"})
            return out
        return web.json_response({"service": service, "proxyMode": mode, "nodes": await asyncio.to_thread(read)})

    async def post_trace(self, request: web.Request) -> web.Response:
        from netlab.tools import trace

        try:
            body = await request.json()
            src, dst = str(body["src"]), str(body["dst"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "body: {\"src\": POD|NODE, \"dst\": DST[:PORT]} required"}, status=400)
        proto = str(body.get("proto") or "tcp")
        dst, _, port = dst.partition(":")
        try:
            async with self.tracing:
                t = await asyncio.to_thread(trace.run, self.lab, src, dst, int(port) if port else None, proto)
        except (ClusterError, ApiError, ValueError, RuntimeError) as e:
            return web.json_response({"error": str(e)}, status=422)
        return web.json_response({"trace": dataclasses.asdict(t), "text": trace.format_trace(t)})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_local_only])
        app.router.add_get("/", self.index)
        app.router.add_get("/api/snapshot", self.get_snapshot)
        app.router.add_get("/api/events", self.events)
        app.router.add_get("/api/rules", self.get_rules)
        app.router.add_post("/api/trace", self.post_trace)
        app.router.add_static("/static/", STATIC)
        return app


async def serve(lab: Lab, port: int = 8765) -> tuple[Ui, web.AppRunner, int]:
    """Start the page on 127.0.0.1:`port` (0: any free port); returns the port it got."""
    ui = Ui(lab)
    await ui.start()
    runner = web.AppRunner(ui.app(), access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)  # loopback only: the page can start traces
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        await ui.stop()
        raise
    return ui, runner, runner.addresses[0][1]


async def run(lab: Lab, port: int, ready=None) -> None:
    ui, runner, got = await serve(lab, port)
    if ready is not None:
        ready(got)
    try:
        await asyncio.Event().wait()
    finally:
        for q in list(ui.listeners):
            q.put_nowait(b"")
        await runner.cleanup()
        await ui.stop()
