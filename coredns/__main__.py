"""netlab-dns: the cluster DNS server.

    netlab-dns --conf Corefile                  watch the API server (in a pod: its service account;
                                                or the `kubeconfig` option of the kubernetes plugin)
    netlab-dns --state FILE [--listen ADDR:PORT] serve the Services, EndpointSlices, Pods and
                                                Namespaces in a YAML file, with no API server
Also accepted: CoreDNS's own `-conf FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import re
import socket
import struct
import sys
import threading
from pathlib import Path

import yaml

from coredns.corefile import CorefileError, ServerBlock, parse
from coredns.records import Kubernetes, State
from coredns.server import Engine
from netlab.lab.addons import kubeadm_corefile

log = logging.getLogger("netlab.dns")


def kubernetes_plugin(block: ServerBlock) -> tuple[Kubernetes, dict]:
    k = block.plugin("kubernetes")
    if k is None:
        return Kubernetes(["cluster.local."]), {}
    zones = k.args or block.zones
    opts = {"ttl": 5, "pods": "disabled", "fallthrough": None, "endpoint_pod_names": False}
    extra = {}
    for o in k.block:
        if o.name == "ttl":
            if len(o.args) != 1 or not o.args[0].isdigit() or not 0 <= int(o.args[0]) <= 3600:
                raise CorefileError(f"Corefile line {o.line}: ttl must be a number of seconds between 0 and 3600")
            opts["ttl"] = int(o.args[0])
        elif o.name == "pods":
            if o.args not in (["disabled"], ["insecure"], ["verified"]):
                raise CorefileError(f"Corefile line {o.line}: pods must be disabled, insecure or verified")
            opts["pods"] = o.args[0]
        elif o.name == "fallthrough":
            opts["fallthrough"] = o.args
        elif o.name == "endpoint_pod_names":
            opts["endpoint_pod_names"] = True
        elif o.name in ("kubeconfig", "endpoint", "namespaces", "labels", "noendpoints"):
            extra[o.name] = o.args
        else:
            raise CorefileError(f"Corefile line {o.line}: unknown kubernetes option {o.name!r}")
    return Kubernetes(zones, **opts), extra


def load_state(path: str) -> State:
    """The Services, EndpointSlices, Pods and Namespaces of a YAML file."""
    from netlab.api.client import manifest_objects

    objs = manifest_objects(Path(path).read_text(), namespace="default")

    def of(kind):
        return [o for o in objs if o["kind"] == kind]
    return State.build(of("Service"), of("EndpointSlice"), of("Pod"), of("Namespace"))


class Forwarder:
    """The `forward` plugin: relay queries the cluster zone does not answer to upstream servers
    (only those the Corefile names; in a lab none by default, so nothing leaves it)."""

    def __init__(self, upstreams: list[str]):
        self.upstreams = []
        for u in upstreams:
            host, _, port = u.removeprefix("dns://").partition(":")
            self.upstreams.append((host, int(port or 53)))

    def __call__(self, data: bytes, proto: str) -> bytes | None:
        for host, port in self.upstreams:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(2)
                    s.sendto(data, (host, port))
                    return s.recv(65535)
            except OSError:
                continue
        return None


def forward_targets(block: ServerBlock) -> list[str]:
    f = block.plugin("forward")
    if f is None:
        return []
    targets = []
    for a in f.args[1:]:
        if a.startswith("/"):
            try:
                targets += [ln.split()[1] for ln in Path(a).read_text().splitlines() if ln.startswith("nameserver")]
            except OSError as e:
                raise CorefileError(f"Corefile line {f.line}: cannot read {a}: {e}") from None
        else:
            targets.append(a)
    return targets


def udp_worker(sock: socket.socket, engine: Engine) -> None:
    while True:
        try:
            data, addr = sock.recvfrom(65535)
        except OSError:
            return
        try:
            out = engine.handle(data, "udp")
        except Exception:  # noqa: BLE001 - never let one query take the server down
            log.exception("query failed")
            out = None
        if out is not None:
            try:
                sock.sendto(out, addr)
            except OSError:
                pass


async def tcp_client(engine: Engine, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            hdr = await asyncio.wait_for(reader.readexactly(2), 10)
            data = await reader.readexactly(struct.unpack("!H", hdr)[0])
            out = engine.handle(data, "tcp")
            if out is None:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def http(addr: str, routes: dict) -> None:
    from aiohttp import web

    app = web.Application()
    for path, fn in routes.items():
        app.router.add_get(path, fn)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = addr.rpartition(":")
    await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()


def configure(engine: Engine | None, text: str) -> tuple[Engine, ServerBlock, dict]:
    """Read a Corefile into an answering engine: a new one, or (on reload) the running one with
    the cluster state it holds. Raises CorefileError and changes nothing if the text is bad."""
    block = parse(text)[0]
    kube, extra = kubernetes_plugin(block)
    fwd = forward_targets(block)
    if block.plugin("reload") is not None:
        duration(block.plugin("reload"))  # checked now, not when the reload loop first needs it
    loadbalance, forward = block.plugin("loadbalance") is not None, Forwarder(fwd) if fwd else None
    if engine is None:
        return Engine(kube, loadbalance=loadbalance, forward=forward), block, extra
    kube.state = engine.kube.state
    engine.kube, engine.loadbalance, engine.forward = kube, loadbalance, forward
    engine.invalidate()
    return engine, block, extra


async def serve(args: argparse.Namespace) -> None:
    text = Path(args.conf).read_text() if args.conf else kubeadm_corefile()
    engine, block, extra = configure(None, text)
    kube = engine.kube
    ready = asyncio.Event()
    host, _, port = (args.listen or f"0.0.0.0:{block.port}").rpartition(":")
    host = host or "0.0.0.0"
    workers = []
    for _ in range(args.workers):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, int(port)))
        workers.append(threading.Thread(target=udp_worker, args=(s, engine), daemon=True))
    tcp = await asyncio.start_server(lambda r, w: tcp_client(engine, r, w), host, int(port), reuse_port=True)
    loop = asyncio.get_running_loop()

    if args.state:
        kube.state = await loop.run_in_executor(None, load_state, args.state)
        ready.set()
    else:
        asyncio.create_task(watch(engine, ready, extra))
    if args.conf and block.plugin("reload") is not None:
        asyncio.create_task(reload_loop(Path(args.conf), text, engine, duration(block.plugin("reload"))))
    # the hot path allocates little that lives: collect young objects rarely, and never scan
    # what start-up made (fewer collector pauses in the tail latency)
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    for t in workers:
        t.start()

    async def ok(_):
        from aiohttp import web
        return web.Response(text="OK")

    async def ready_handler(_):
        from aiohttp import web
        return web.Response(text="OK" if ready.is_set() else "not ready", status=200 if ready.is_set() else 503)

    async def metrics(_):
        from aiohttp import web
        return web.Response(text=engine.metrics.text(), content_type="text/plain")

    if not args.no_http:
        for name, addr, routes in (("health", ":8080", {"/health": ok}), ("ready", ":8181", {"/ready": ready_handler}),
                                   ("prometheus", ":9153", {"/metrics": metrics})):
            p = block.plugin(name)
            if p is not None:
                try:
                    await http(p.args[0] if p.args else addr, routes)
                except OSError as e:
                    log.warning("%s on %s: %s", name, addr, e)
    log.info("serving DNS on %s:%s (udp x%d, tcp)", host, port, args.workers)
    async with tcp:
        await tcp.serve_forever()


def duration(p) -> float:
    """The `reload` plugin's interval: `reload [INTERVAL [JITTER]]`, default 30s."""
    if not p.args:
        return 30.0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", p.args[0])
    if not m:
        raise CorefileError(f"Corefile line {p.line}: reload: {p.args[0]!r} is not a duration such as 30s")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


async def reload_loop(path: Path, text: str, engine: Engine, every: float) -> None:
    """The `reload` plugin: when the Corefile changes (its ConfigMap, through the kubelet), apply
    the new one; a new Corefile that does not parse is reported and the running one kept."""
    while True:
        await asyncio.sleep(every)
        try:
            new = path.read_text()
        except OSError:
            continue
        if new == text:
            continue
        text = new
        try:
            configure(engine, new)
        except CorefileError as e:
            log.error("Corefile changed but reload failed: %s", e)
            continue
        log.info("Reloading complete")


async def watch(engine: Engine, ready: asyncio.Event, extra: dict) -> None:
    """Keep the state from informers; answers never wait on the API: a change rebuilds the index
    and drops the ready answers."""
    from netlab.api.client import Client, Informer

    if extra.get("kubeconfig"):
        client = Client.from_kubeconfig(extra["kubeconfig"][0])
    else:
        client = Client.in_cluster()
    infs = {r: Informer(client, r) for r in ("services", "endpointslices", "pods", "namespaces")}
    pending = asyncio.Event()

    def changed(*_):
        pending.set()
    for inf in infs.values():
        inf.add_handler(changed, changed, changed)
        asyncio.create_task(inf.run())
    for inf in infs.values():
        await inf.wait_synced()
    while True:
        pending.clear()
        st = State.build(infs["services"].list(), infs["endpointslices"].list(), infs["pods"].list(),
                         infs["namespaces"].list())
        st.version = engine.kube.state.version + 1
        engine.kube.state = st  # engine.kube: a reload may have replaced it
        engine.invalidate()
        ready.set()
        await pending.wait()
        await asyncio.sleep(0.02)  # batch a burst of changes


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = ["--conf" if a == "-conf" else a for a in argv]
    p = argparse.ArgumentParser(prog="netlab-dns", description=__doc__.split("\n\n")[0])
    p.add_argument("--conf", help="Corefile (default: kubeadm's, without forward)")
    p.add_argument("--state", help="serve the objects in this YAML file instead of watching the API server")
    p.add_argument("--listen", help="ADDR:PORT (default: the Corefile's, 0.0.0.0:53)")
    p.add_argument("--workers", type=int, default=1, help="UDP worker threads on SO_REUSEPORT sockets")
    p.add_argument("--no-http", action="store_true", help="no health, ready or metrics listeners")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args))
    except CorefileError as e:
        sys.exit(f"netlab-dns: {e}")
    except OSError as e:
        sys.exit(f"netlab-dns: {e}")
    except (ValueError, yaml.YAMLError) as e:  # a --state file that is not a manifest
        sys.exit(f"netlab-dns: cannot read --state {args.state}: {e}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

