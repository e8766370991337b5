"""The kubelet's API, served over HTTPS on the node's address, port 10250 (what the Node's
status.daemonEndpoints.kubeletEndpoint names), as upstream's kubelet serves the API server:

    GET /healthz                                         ok
    GET /pods                                            the pods this kubelet runs (a PodList)
    GET /containerLogs/{namespace}/{pod}/{container}     follow, previous, tailLines, limitBytes,
                                                         sinceSeconds, sinceTime, timestamps
    GET|POST /exec/{namespace}/{pod}/{container}         ?command=...&stdin=&stdout=&stderr=&tty=
                                                         (WebSocket v5/v4.channel.k8s.io, or SPDY/3.1)
    GET|POST /attach/{namespace}/{pod}/{container}       ?stdin=&stdout=&stderr=&tty= (the same streams:
                                                         the container's own stdio from now on)
    GET|POST /portForward/{namespace}/{pod}              SPDY/3.1 (portforward.k8s.io), or WebSocket
                                                         with ?port=N... (portforward.py)

Every request needs the lab's bearer token (the API server's credential; upstream's kubelet runs
with anonymous auth off, as kubeadm configures it): without it, 401 Unauthorized. Errors are
plain text with upstream's status codes and messages."""

from __future__ import annotations

import hmac
import logging
import socket
import ssl
from pathlib import Path

from aiohttp import web

from netlab.node.kubelet import exec as exec_mod
from netlab.node.kubelet import logs, portforward, runtime, streams
from netlab.node.kubelet.agents import AgentWorker
from netlab.node.kubelet.pods import Container, PodWorker

log = logging.getLogger("netlab.kubelet")
PORT = 10250


class KubeletServer:
    def __init__(self, kubelet, token: str):
        """`kubelet`: the Kubelet whose pod workers (`workers`, by uid) this serves."""
        self.k, self.token = kubelet, token
        self.app = web.Application(middlewares=[self.authenticate])
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/pods", self.pods)
        self.app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        self.app.router.add_route("GET", "/exec/{namespace}/{pod}/{container}", self.exec)
        self.app.router.add_route("POST", "/exec/{namespace}/{pod}/{container}", self.exec)
        self.app.router.add_route("GET", "/attach/{namespace}/{pod}/{container}", self.attach)
        self.app.router.add_route("POST", "/attach/{namespace}/{pod}/{container}", self.attach)
        self.app.router.add_route("GET", "/portForward/{namespace}/{pod}", self.port_forward)
        self.app.router.add_route("POST", "/portForward/{namespace}/{pod}", self.port_forward)
        self.runner: web.AppRunner | None = None

    async def start(self, host: str, port: int, cert: str, key: str) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        if self.runner is None:
            self.runner = web.AppRunner(self.app, access_log=None)
            await self.runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        await web.SockSite(self.runner, sock, ssl_context=ctx).start()
        log.info("serving the kubelet API on https://%s:%d", host, port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @web.middleware
    async def authenticate(self, request: web.Request, handler):
        auth = request.headers.get("Authorization", "")
        if not (auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode())):
            return web.Response(status=401, text="Unauthorized")
        return await handler(request)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def pods(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                                  "items": [w.pod for w in self.k.workers.values()]})

    # --- lookups, with upstream's answers ----------------------------------------------------

    def _worker(self, request: web.Request) -> PodWorker:
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        found = [w for w in self.k.workers.values() if w.ns == ns and w.name == name]
        if not found:
            raise logs.LogError(f'pod "{name}" does not exist', 404)
        # a pod of that name being replaced: the new one (not being deleted) is the one meant
        return sorted(found, key=lambda w: bool(w.pod["metadata"].get("deletionTimestamp")))[0]

    @staticmethod
    def _container(w: PodWorker, name: str) -> Container:
        for c in w.containers:
            if c.name == name:
                return c
        raise logs.LogError(f'container "{name}" not found in pod "{w.name}"', 404)

    # --- logs ------------------------------------------------------------------------------

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        try:
            w = self._worker(request)
            c = self._container(w, request.match_info["container"])
            opts = logs.Options.from_query(request.query)
            if isinstance(w, AgentWorker):  # a node agent: the supervisor's log of the component's run
                path, span, plain = w.log_path, agent_log_span(w, c, opts.previous), True
            else:
                path, span, plain = log_file(w, c, opts.previous), (0, None), False
        except logs.LogError as e:
            return web.Response(status=e.code, text=str(e))
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)

        def stop() -> bool:  # the pod is gone from this node, or the client from us
            transport = request.transport
            return self.k.workers.get(w.uid) is not w or transport is None or transport.is_closing()
        try:
            await logs.serve(path, opts, resp.write, stop, plain, span)
        except FileNotFoundError:  # the pod was torn down meanwhile
            pass
        except ConnectionError:
            return resp
        await resp.write_eof()
        return resp

    # --- exec ------------------------------------------------------------------------------

    async def exec(self, request: web.Request) -> web.StreamResponse:
        try:
            w = self._worker(request)
            c = self._container(w, request.match_info["container"])
        except logs.LogError as e:
            return web.Response(status=e.code, text=str(e))
        if not request.query.getall("command", []):
            return web.Response(status=400, text="you must specify at least 1 command")
        if c.proc is None or not c.proc.alive():
            return web.Response(status=500, text=f'container not found ("{c.name}")')
        stdin, tty = streams.flag(request, "stdin"), streams.flag(request, "tty")
        try:
            chans = await streams.open_channels(request, stdin, streams.flag(request, "stdout", True),
                                                streams.flag(request, "stderr", True) and not tty, tty)
        except streams.StreamError as e:
            return web.Response(status=e.code, text=str(e))
        await exec_mod.serve(chans, request.query.getall("command"), stdin, tty, c.proc.pid, c.env or None,
                             runtime.enter_argv(c.proc, c.security), runtime.joiner(c.cgroup))
        return chans.response

    async def attach(self, request: web.Request) -> web.StreamResponse:
        try:
            w = self._worker(request)
            c = self._container(w, request.match_info["container"])
        except logs.LogError as e:
            return web.Response(status=e.code, text=str(e))
        if c.proc is None or not c.proc.alive():
            return web.Response(status=500, text=f'container not found ("{c.name}")')
        stdin, tty = streams.flag(request, "stdin"), streams.flag(request, "tty")
        want = {streams.STDOUT: streams.flag(request, "stdout", True),
                streams.STDERR: streams.flag(request, "stderr", True) and not tty}
        try:
            chans = await streams.open_channels(request, stdin, want[streams.STDOUT], want[streams.STDERR], tty)
        except streams.StreamError as e:
            return web.Response(status=e.code, text=str(e))
        await exec_mod.attach(chans, self.k.node_layout.attach_socket(w.uid, c.name), stdin, want)
        return chans.response

    # --- port-forward ----------------------------------------------------------------------

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        try:
            w = self._worker(request)
        except logs.LogError as e:
            return web.Response(status=e.code, text=str(e))
        try:
            return await portforward.serve(request, getattr(w, "netns", None), w.name, w.uid)
        except streams.StreamError as e:
            return web.Response(status=e.code, text=str(e))


def agent_log_span(w: AgentWorker, c, previous: bool) -> tuple[int, int | None]:
    span = w.log_span(previous)
    if span is None:
        if previous:
            raise logs.LogError(f'previous terminated container "{c.name}" in pod "{w.name}" not found')
        raise logs.LogError(f'container "{c.name}" in pod "{w.name}" is waiting to start: ContainerCreating')
    return span


def log_file(w: PodWorker, c: Container, previous: bool) -> Path:
    """The file of the container's run that `kubectl logs` (or `--previous`) means, as upstream's
    kubelet picks the container from its status; upstream's message when there is none."""
    state, last = c.state, c.last_state
    where = w.where
    if previous:
        if not last.get("terminated"):
            raise logs.LogError(f'previous terminated container "{c.name}" in pod "{w.name}" not found')
        # waiting to be restarted, the last run's log has not been moved aside yet
        return where.log(c.name) if c.proc is None and "waiting" in state else where.log(c.name, previous=True)
    if c.proc is None and "terminated" not in state and not last.get("terminated"):
        reason = (state.get("waiting") or {}).get("reason", "")
        reason = {"ErrImagePull": "image can't be pulled",
                  "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        raise logs.LogError(f'container "{c.name}" in pod "{w.name}" is waiting to start: {reason or "ContainerCreating"}')
    path = where.log(c.name)
    if not path.exists():
        raise logs.LogError(f'container "{c.name}" in pod "{w.name}" is terminated')
    return path
