"""The one seam through which the API server reaches a pod on its node: pods/log, exec, attach
and port-forward, as upstream's API server asks the pod's kubelet. It reads the
pod's Node, takes its address (InternalIP, then ExternalIP, then Hostname: kubeadm's
--kubelet-preferred-address-types) and kubelet port (status.daemonEndpoints.kubeletEndpoint), and
calls the kubelet's API there (netlab.node.kubelet.server) over HTTPS with the lab's token: a log
is relayed as a stream, exec WebSocket to WebSocket, a SPDY upgrade byte for byte. Like upstream's API server without
--kubelet-certificate-authority, it does not verify the kubelet's serving certificate (a joined
machine's kubelet signs its own).

The API server runs in the host's namespace, where the node network is not: its client sockets
are made in the control-plane node's namespace (a socket stays in the namespace it was made in),
as its :6443 listener is. On a machine made a node by `netlab init`, the machine's namespace is the
node's, and node addresses are reached directly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from aiohttp import WSMsgType, web

from netlab.control.apiserver.errors import APIError
from netlab.kit import net
from netlab.kit.cluster import Cluster
from netlab.kit.layout import Layout

ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname")
KUBELET_PORT = 10250
LOG_OPTIONS = ("follow", "previous", "tailLines", "limitBytes", "sinceSeconds", "sinceTime", "timestamps")
EXEC_OPTIONS = ("command", "stdin", "stdout", "stderr", "tty")
CHANNEL_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
ERROR_STREAM = 3


class NodeError(Exception):
    """What the node answers when it cannot serve the request (a container not started, ...);
    `code` is the status the kubelet (or the dial) gave, which upstream passes on."""

    def __init__(self, message: str, code: int = 400):
        super().__init__(message)
        self.code = code


class Kubelets:
    """The pods' nodes, as the API server reaches them."""

    def __init__(self, state_dir: Path, get_node: Callable[[str], dict]):
        """`get_node(name)`: the Node from the server's own store (raising its APIError)."""
        self.layout = Layout(state_dir.name)
        self.get_node = get_node
        self._dial: tuple[str | None, str] | None = None  # the namespace to dial from, and the token

    # --- where the kubelet is ----------------------------------------------------------------

    def _dial_config(self) -> tuple[str | None, str]:
        """Read once: the control-plane node's namespace (None on a machine made a node, or with
        no such namespace), and the lab's token, the API server's credential at the kubelets."""
        if self._dial is None:
            cluster = Cluster.load(self.layout.cluster_file)
            cp = None if cluster.host else cluster.nodes[0].netns
            self._dial = (cp if cp and net.ns_exists(cp) else None, self.layout.token.read_text().strip())
        return self._dial

    async def _kubelet(self, node_name: str) -> str:
        """https://<address>:<port> of the node's kubelet, from its Node."""
        try:
            node = self.get_node(node_name)
        except APIError as e:
            raise NodeError(e.message, e.code) from None
        status = node.get("status") or {}
        addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        address = next((addresses[t] for t in ADDRESS_TYPES if addresses.get(t)), None)
        if address is None:
            raise NodeError(f"no preferred addresses found; known addresses: {status.get('addresses') or []}", 500)
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or KUBELET_PORT
        return f"https://{address}:{port}"

    def _session(self, kubelet: bool = True) -> aiohttp.ClientSession:
        """A client whose sockets are made where the node network is; with the lab's token for a
        kubelet, without for a pod or a Service's endpoint (the proxy subresources)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        netns, token = self._dial_config()
        connector = aiohttp.TCPConnector(ssl=ctx, force_close=True, socket_factory=(
            lambda ai: net.socket_in(netns, ai[0], ai[1], ai[2])))
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                     headers={"Authorization": f"Bearer {token}"} if kubelet else None,
                                     auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())

    async def kubelet_url(self, node_name: str) -> str:
        return await self._kubelet(node_name)

    def session(self, kubelet: bool = True) -> aiohttp.ClientSession:
        return self._session(kubelet)

    @staticmethod
    def path(kind: str, pod: dict, container: str) -> str:
        meta = pod["metadata"]
        return f"/{kind}/{meta['namespace']}/{meta['name']}/{container}"

    @staticmethod
    def _dial_error(url: str, e: aiohttp.ClientConnectorError) -> NodeError:
        why = (e.os_error.strerror or str(e.os_error)).lower() if e.os_error else str(e)
        return NodeError(f'Get "{url}": dial tcp {e.host}:{e.port}: connect: {why}', 500)

    # --- pods/log ----------------------------------------------------------------------------

    async def logs(self, request: web.Request, pod: dict, container: str, same_pod) -> web.StreamResponse:
        """The container's log from its kubelet, streamed as it comes; a follow ends when the
        kubelet's stream does (the container's log is complete, or the pod is gone from the node),
        when `same_pod()` says the pod is gone, or when the client goes."""
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:  # upstream: no host, no location, an empty log
            return web.Response(body=b"", content_type="text/plain")
        url = await self._kubelet(node) + self.path("containerLogs", pod, container)
        params = [(k, v) for k, v in request.query.items() if k in LOG_OPTIONS]
        async with self._session() as session:
            try:
                resp = await session.get(url, params=params)
            except aiohttp.ClientConnectorError as e:
                raise self._dial_error(url, e) from None
            except aiohttp.ClientError as e:
                raise NodeError(f'Get "{url}": {e}', 500) from None
            async with resp:
                if resp.status != 200:
                    raise NodeError((await resp.text()).strip(), resp.status)
                out = web.StreamResponse(headers={"Content-Type": resp.headers.get("Content-Type", "text/plain")})
                await out.prepare(request)
                read = asyncio.ensure_future(resp.content.readany())
                try:
                    while True:
                        done, _ = await asyncio.wait({read}, timeout=1.0)
                        if not done:
                            transport = request.transport
                            if transport is None or transport.is_closing() or not same_pod():
                                break
                            continue
                        chunk = read.result()
                        if not chunk:
                            break
                        await out.write(chunk)
                        read = asyncio.ensure_future(resp.content.readany())
                except (ConnectionError, aiohttp.ClientError):
                    pass
                finally:
                    read.cancel()
                with contextlib.suppress(ConnectionError):
                    await out.write_eof()
                return out

    # --- pods/exec, attach, portforward over WebSocket ----------------------------------------

    async def websocket(self, request: web.Request, pod: dict, path: str, params: list,
                        status_stream: bool = True) -> web.WebSocketResponse:
        """The kubelet's WebSocket (exec, attach, portForward), relayed to the client's: each
        message both ways as it is (binary or text), and the close (with its code) from either side
        to the other. What stops an exec or attach before the kubelet's upgrade comes to a
        WebSocket client as the final Status on the error stream (as the kubelet reports a command
        that cannot start), where kubectl shows it: a refused upgrade would send kubectl back to
        SPDY, with the message lost. Port-forward has no such stream (`status_stream=False`): its
        upgrade is refused with the NodeError."""
        node = (pod.get("spec") or {}).get("nodeName")
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        async with self._session() as session:
            try:
                if not node:
                    raise NodeError(f"pod {pod['metadata']['name']} does not have a host assigned")
                kubelet = await self._exec_ws(session, await self._kubelet(node) + path, params, protocols)
            except NodeError as e:
                if request.headers.get("Upgrade", "").lower() != "websocket" or not status_stream:
                    raise
                client = web.WebSocketResponse(protocols=CHANNEL_PROTOCOLS)
                await client.prepare(request)
                await client.send_bytes(bytes([ERROR_STREAM]) + json.dumps(failure(e)).encode())
                await client.close()
                return client
            client = web.WebSocketResponse(protocols=(kubelet.protocol,) if kubelet.protocol else (), max_msg_size=0)
            try:
                await client.prepare(request)
                await relay(client, kubelet)
            finally:
                await kubelet.close()
            return client

    async def _exec_ws(self, session: aiohttp.ClientSession, url: str, params: list, protocols: list[str]):
        try:
            return await session.ws_connect(url, params=params, protocols=protocols, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            # refused before the upgrade: the same request without one gets the kubelet's message
            async with session.get(url, params=params) as r:
                raise NodeError((await r.text()).strip() or f"the kubelet answered {e.status}", e.status) from None
        except aiohttp.ClientConnectorError as e:
            raise self._dial_error(url, e) from None
        except aiohttp.ClientError as e:
            raise NodeError(f'Get "{url}": {e}', 500) from None


    # --- SPDY/3.1 upgrades ------------------------------------------------------------------

    async def upgrade(self, pod: dict, path: str, params: list, protocols: list[str]):
        """An upgrade to SPDY/3.1 at the pod's kubelet, offering `protocols`: the kubelet's 101
        headers and the connection (reader, writer) from then on; what it answers instead, as a
        NodeError."""
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise NodeError(f"pod {pod['metadata']['name']} does not have a host assigned")
        base = await self._kubelet(node)
        url = base + path + ("?" + urlencode(params) if params else "")
        host, _, port = base.removeprefix("https://").rpartition(":")
        netns, token = self._dial_config()
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        sock = net.socket_in(netns, socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host.strip("[]"), int(port))), 10)
            reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname=host.strip("[]"),
                                                           limit=2 ** 24)
        except (OSError, asyncio.TimeoutError) as e:
            sock.close()
            why = os.strerror(e.errno).lower() if isinstance(e, OSError) and e.errno else "i/o timeout"
            raise NodeError(f'Post "{url}": dial tcp {host}:{port}: connect: {why}', 500) from None
        head = "".join(f"X-Stream-Protocol-Version: {p}\r\n" for p in protocols)
        writer.write((f"POST {url.removeprefix(base)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Authorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                      f"{head}Content-Length: 0\r\n\r\n").encode())
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, OSError) as e:
            writer.close()
            raise NodeError(f'Post "{url}": {e}', 500) from None
        lines = raw.decode("latin-1").split("\r\n")
        code = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        if code != 101:
            try:
                body = await asyncio.wait_for(reader.read(int(headers.get("content-length", 65536))), 5)
            except (asyncio.TimeoutError, OSError):
                body = b""
            writer.close()
            raise NodeError(body.decode(errors="replace").strip() or f"the kubelet answered {code}", code)
        return headers, reader, writer


def failure(e: NodeError) -> dict:
    """A Status for the error stream."""
    reason = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}.get(e.code, "InternalError")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": str(e),
            "reason": reason, "code": e.code}


async def relay(a, b) -> None:
    """Messages from each WebSocket to the other until one closes; then the other is closed with
    its code. The other direction's read is stopped first, so that the close waits for the peer's
    answering close frame (a close made while a read is pending drops the connection at once)."""
    async def pump(src, dst) -> None:
        async for msg in src:
            if msg.type == WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await dst.send_str(msg.data)

    pumps = {asyncio.ensure_future(pump(a, b)): (a, b), asyncio.ensure_future(pump(b, a)): (b, a)}
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for p in pumps:
            p.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
    src, dst = pumps[next(iter(done))]
    code = src.close_code or aiohttp.WSCloseCode.OK
    if code in (1005, 1006, 1015):  # a peer gone without a close frame: codes never sent on the wire
        code = aiohttp.WSCloseCode.GOING_AWAY
    with contextlib.suppress(ConnectionError):
        await dst.close(code=code)
