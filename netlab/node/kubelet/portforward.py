"""Port-forward as the kubelet serves it (`GET|POST /portForward/{namespace}/{pod}`): each forwarded
connection is a TCP connection to the port on the pod's loopback, made in the pod's network
namespace (as upstream's runtimes dial inside the sandbox's netns).

- SPDY/3.1, protocol `portforward.k8s.io` (kubectl, directly or tunnelled over WebSocket by the
  API server): the client opens two streams per connection, `streamType: error` and `data`, with
  the same `port` and `requestID` headers. The data stream carries the connection both ways (the
  client's FIN half-closes it towards the pod, the pod's end FINs the stream); what goes wrong is
  written as text on the error stream, which is closed when the connection is done.
- WebSocket (v4.channel.k8s.io, the Python client), ports from `?port=`: two channels per port
  (2i data, 2i+1 error), each starting with the port as two bytes, little-endian."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct

from aiohttp import WSMsgType, web

from netlab.kit import net, spdy
from netlab.node.kubelet import streams

SPDY_PROTOCOLS = ("portforward.k8s.io",)
WS_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")


def parse_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise streams.StreamError(f'unable to parse "{text}" as a port: strconv.ParseUint: parsing "{text}": '
                                  "invalid syntax") from None
    if not 1 <= port <= 65535:
        raise streams.StreamError(f'port "{text}" must be > 0' if port < 1 else
                                  f'unable to parse "{text}" as a port: value out of range')
    return port


async def dial(netns: str | None, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to localhost:port in the pod's network namespace (None: this one)."""
    sock = net.socket_in(netns, socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), 10)
    except (OSError, asyncio.TimeoutError):
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


def failure(port: int, pod: str, uid: str, e: BaseException) -> str:
    why = os.strerror(e.errno).lower() if isinstance(e, OSError) and e.errno else "i/o timeout"
    return (f"error forwarding port {port} to pod {pod}, uid {uid}: failed to connect to localhost:{port} inside "
            f"namespace \"{pod}\": dial tcp 127.0.0.1:{port}: connect: {why}")


async def serve(request: web.Request, netns: str | None, pod: str, uid: str) -> web.StreamResponse:
    if streams.is_websocket(request):
        ports = [parse_port(p) for v in request.query.getall("port", []) for p in v.split(",")]
        if not ports:
            raise streams.StreamError('query parameter "port" is required')
        return await serve_websocket(request, ports, netns, pod, uid)
    if not streams.is_spdy(request):
        raise streams.StreamError("Upgrade request required")
    streams.negotiate(request, SPDY_PROTOCOLS)
    conn, session, runner = await streams.spdy_session(request, SPDY_PROTOCOLS[0])
    pairs: dict[str, dict[str, spdy.Stream]] = {}
    tasks: set[asyncio.Task] = set()
    try:
        while (s := await session.accept()) is not None:
            kind, request_id = s.header("streamType"), s.header("requestID")
            if kind not in ("error", "data"):
                await s.reset(spdy.PROTOCOL_ERROR)
                continue
            if not request_id:  # a client before request IDs: upstream's guess from the stream ids
                request_id = str(s.id if kind == "error" else s.id - 2)
            pair = pairs.setdefault(request_id, {})
            pair[kind] = s
            if len(pair) == 2:
                del pairs[request_id]
                t = asyncio.ensure_future(forward_spdy(pair["data"], pair["error"], netns, pod, uid))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
    finally:
        for t in tasks:
            t.cancel()
        runner.cancel()
        conn.close()
    return conn.response


async def forward_spdy(data: spdy.Stream, error: spdy.Stream, netns: str | None, pod: str, uid: str) -> None:
    try:
        port = parse_port(data.header("port"))
        reader, writer = await dial(netns, port)
    except (streams.StreamError, OSError, asyncio.TimeoutError) as e:
        text = str(e) if isinstance(e, streams.StreamError) else failure(int(data.header("port")), pod, uid, e)
        with contextlib.suppress(ConnectionError, spdy.SPDYError):
            await error.write(text.encode())
            await error.close()
            await data.close()
        return

    async def to_pod() -> None:
        while chunk := await data.read():
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def from_pod() -> None:
        while chunk := await reader.read(65536):
            await data.write(chunk)
        await data.close()

    up = asyncio.ensure_future(to_pod())
    try:
        with contextlib.suppress(ConnectionError, spdy.SPDYError):
            await from_pod()
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(asyncio.shield(up), 1)
    finally:
        up.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError, spdy.SPDYError):
            await error.close()


async def serve_websocket(request: web.Request, ports: list[int], netns: str | None, pod: str,
                          uid: str) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=WS_PROTOCOLS, max_msg_size=0)
    await ws.prepare(request)
    writers: dict[int, asyncio.StreamWriter] = {}
    pumps = []

    async def from_pod(i: int, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                await ws.send_bytes(bytes([2 * i]) + chunk)

    for i, port in enumerate(ports):
        prefix = struct.pack("<H", port)
        await ws.send_bytes(bytes([2 * i]) + prefix)
        await ws.send_bytes(bytes([2 * i + 1]) + prefix)
        try:
            reader, writers[i] = await dial(netns, port)
        except (OSError, asyncio.TimeoutError) as e:
            await ws.send_bytes(bytes([2 * i + 1]) + failure(port, pod, uid, e).encode())
            continue
        pumps.append(asyncio.ensure_future(from_pod(i, reader)))

    async def to_pod() -> None:
        async for msg in ws:
            data = msg.data if msg.type == WSMsgType.BINARY else (
                msg.data.encode() if msg.type == WSMsgType.TEXT else b"")
            if len(data) > 1 and data[0] % 2 == 0 and (w := writers.get(data[0] // 2)) is not None:
                w.write(data[1:])
                with contextlib.suppress(ConnectionError):
                    await w.drain()

    reading = asyncio.ensure_future(to_pod())
    try:
        # done when the client goes, or when every port's connection has ended
        await asyncio.wait([reading, asyncio.ensure_future(asyncio.gather(*pumps))],
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        reading.cancel()
        for p in pumps:
            p.cancel()
        for w in writers.values():
            w.close()
        await ws.close()
    return ws
