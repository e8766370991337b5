"""netlab-dns: the cluster DNS server.

    netlab-dns --conf Corefile                  watch the API server (in a pod: its service account;
                                                or the `kubeconfig` option of the kubernetes plugin)
    netlab-dns --state FILE [--listen ADDR:PORT] serve the Services, EndpointSlices, Pods and
                                                Namespaces in a YAML file, with no API server
Also accepted: CoreDNS's own `-conf FILE`. Without a Corefile it serves kubeadm's (less forward).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import re
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml

from coredns import cache
from coredns.corefile import CorefileError, Directive, ServerBlock, parse
from coredns.records import Kubernetes, State
from coredns.server import Engine, limited
from netlab.api.client import ApiError, Client, Informer, manifest_objects
from netlab.kit import logs, serving
from netlab.kit.kubeadm import corefile as default_corefile
from netlab.kit.metrics import Registry
from netlab.kit.runner import BoundedFrequencyRunner

log = logging.getLogger("netlab.dns")
REBUILD_INTERVAL = 0.02  # a burst of changes within this is one rebuild of the index


@dataclass
class Timeouts:
    """The server's TCP timeouts, as CoreDNS's (its `timeouts` plugin sets them): the first query
    must arrive whole within `read`, each later one within `idle` of the last answer, and an answer
    must be written within `write`; then the connection is closed."""
    read: float = 3.0
    write: float = 5.0
    idle: float = 10.0


def timeouts(p: Directive | None) -> Timeouts:
    t = Timeouts()
    if p is None:
        return t
    if not p.block:
        raise CorefileError(f"Corefile line {p.line}: timeouts: at least one of read, write, idle is needed")
    for o in p.block:
        if o.name not in ("read", "write", "idle") or len(o.args) != 1:
            raise CorefileError(f"Corefile line {o.line}: timeouts: expected read, write or idle DURATION")
        setattr(t, o.name, seconds(o, o.args[0]))
    return t


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
        except Exception as e:  # noqa: BLE001 - never let one query take the server down
            limited.error("query from %s failed: %s: %s", addr[0], type(e).__name__, e)
            out = None
        if out is not None:
            try:
                sock.sendto(out, addr)
            except OSError:
                pass


async def read_message(reader: asyncio.StreamReader) -> bytes:
    """One length-prefixed DNS message (RFC 1035 4.2.2)."""
    hdr = await reader.readexactly(2)
    return await reader.readexactly(struct.unpack("!H", hdr)[0])


async def tcp_client(engine: Engine, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     limits: Timeouts) -> None:
    """Queries on one TCP connection, as CoreDNS's server reads them: each whole message (its
    length and its bytes) within the read timeout for the first and the idle timeout for the
    rest; a connection that sends nothing, or only part of a message, is closed."""
    wait = limits.read
    try:
        while True:
            data = await asyncio.wait_for(read_message(reader), wait)
            out = engine.handle(data, "tcp")
            if out is None:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            await asyncio.wait_for(writer.drain(), limits.write)
            wait = limits.idle
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        pass
    except Exception as e:  # noqa: BLE001 - one connection must not take the server down
        limited.error("TCP query failed: %s: %s", type(e).__name__, e)
    finally:
        writer.close()


def configure(engine: Engine | None, text: str) -> tuple[Engine, ServerBlock, dict]:
    """Read a Corefile into an answering engine: a new one, or (on reload) the running one with
    the cluster state it holds. Raises CorefileError and changes nothing if the text is bad."""
    block = parse(text)[0]
    kube, extra = kubernetes_plugin(block)
    fwd = forward_targets(block)
    if block.plugin("reload") is not None:
        duration(block.plugin("reload"))  # checked now, not when the reload loop first needs it
    cache_cfg = cache.parse(block.plugin("cache"))
    timeouts(block.plugin("timeouts"))  # checked now, read by serve()
    loadbalance, forward = block.plugin("loadbalance") is not None, Forwarder(fwd) if fwd else None
    if engine is None:
        return Engine(kube, loadbalance=loadbalance, forward=forward, cache=cache_cfg), block, extra
    kube.state = engine.kube.state
    engine.kube, engine.loadbalance, engine.forward = kube, loadbalance, forward
    engine.configure_cache(cache_cfg)
    return engine, block, extra


class Readiness:
    """The `ready` plugin's answer: ready once the state is loaded and, when it comes from the API
    server, only while every informer's cache is in step (one whose watch broke and cannot
    relist makes the server unready: its answers may be stale)."""

    def __init__(self) -> None:
        self.loaded = False
        self.informers: list = []

    def __call__(self) -> bool:
        return self.loaded and all(inf.healthy for inf in self.informers)


async def serve(args: argparse.Namespace) -> None:
    text = Path(args.conf).read_text() if args.conf else default_corefile()
    engine, block, extra = configure(None, text)
    kube = engine.kube
    ready = Readiness()
    limits = timeouts(block.plugin("timeouts"))
    host, _, port = (args.listen or f"0.0.0.0:{block.port}").rpartition(":")
    host = host or "0.0.0.0"
    workers = []
    for _ in range(args.workers):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, int(port)))
        workers.append(threading.Thread(target=udp_worker, args=(s, engine), daemon=True))
    tcp = await asyncio.start_server(lambda r, w: tcp_client(engine, r, w, limits), host, int(port), reuse_port=True)
    loop = asyncio.get_running_loop()

    background: list[asyncio.Task] = []  # (held: the loop keeps only weak references to tasks)
    if args.state:
        kube.state = await loop.run_in_executor(None, load_state, args.state)
        ready.loaded = True
    else:
        background.append(asyncio.create_task(watch(engine, ready, extra)))
    if args.conf and block.plugin("reload") is not None:
        background.append(asyncio.create_task(reload_loop(Path(args.conf), text, engine,
                                                          duration(block.plugin("reload")))))
    # the hot path allocates little that lives: collect young objects rarely, and never scan
    # what start-up made (fewer collector pauses in the tail latency)
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    for t in workers:
        t.start()

    registry = Registry()
    registry.register(engine.metrics)
    if not args.no_http:
        for name, addr, routes in (("health", ":8080", {"/health": serving.check(lambda: True)}),
                                   ("ready", ":8181", {"/ready": serving.check(ready)}),
                                   ("prometheus", ":9153", {"/metrics": serving.metrics(registry)})):
            p = block.plugin(name)
            if p is not None:
                await serving.serve_or_warn(p.args[0] if p.args else addr, routes, name)
    log.info("serving DNS on %s:%s (udp x%d, tcp)", host, port, args.workers)
    async with tcp:
        # the watch and reload loops end only by raising: then the process does, not silently
        await asyncio.gather(tcp.serve_forever(), *background)


def seconds(p: Directive, word: str) -> float:
    """A Go duration as the Corefile writes them: 30s, 200ms, 1m."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", word)
    if not m:
        raise CorefileError(f"Corefile line {p.line}: {p.name}: {word!r} is not a duration such as 30s")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def duration(p: Directive) -> float:
    """The `reload` plugin's interval: `reload [INTERVAL [JITTER]]`, default 30s."""
    return seconds(p, p.args[0]) if p.args else 30.0


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


async def watch(engine: Engine, ready: Readiness, extra: dict) -> None:
    """Keep the state from informers; answers never wait on the API: a change rebuilds the index
    (a burst of changes once, through a bounded-frequency runner) and drops the cached answers."""
    if extra.get("kubeconfig"):
        client = Client.from_kubeconfig(extra["kubeconfig"][0])
    else:
        client = Client.in_cluster()
    infs = {r: Informer(client, r) for r in ("services", "endpointslices", "pods", "namespaces")}
    ready.informers = list(infs.values())

    def rebuild() -> None:
        st = State.build(infs["services"].list(), infs["endpointslices"].list(), infs["pods"].list(),
                         infs["namespaces"].list())
        st.version = engine.kube.state.version + 1
        engine.kube.state = st  # engine.kube: a reload may have replaced it
        engine.invalidate()
        ready.loaded = True

    runner = BoundedFrequencyRunner("dns-state", rebuild, REBUILD_INTERVAL, math.inf)
    for inf in infs.values():
        inf.add_handler(lambda *_: runner.run(), lambda *_: runner.run(), lambda *_: runner.run())
    tasks = [asyncio.create_task(inf.run()) for inf in infs.values()]
    for inf in infs.values():
        await inf.wait_synced()
    runner.run()
    tasks.append(asyncio.create_task(runner.loop()))
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in done:
        t.result()  # (they only end by raising)


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
    logs.setup()
    try:
        asyncio.run(serve(args))
    except CorefileError as e:
        sys.exit(f"netlab-dns: {e}")
    except ApiError as e:  # e.g. not in a pod, and no kubeconfig in the Corefile
        sys.exit(f"netlab-dns: kubernetes: {e}")
    except OSError as e:
        sys.exit(f"netlab-dns: {e}")
    except (ValueError, yaml.YAMLError) as e:  # a --state file that is not a manifest
        sys.exit(f"netlab-dns: cannot read --state {args.state}: {e}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

