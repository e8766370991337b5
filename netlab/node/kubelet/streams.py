"""The streams of an exec or attach, over either protocol kubectl speaks, behind one interface
(`Channels`): `send(stream, data)` for stdout and stderr, `inputs()` for what the client sends
(stdin data, a terminal resize as JSON, and (CLOSE, b"\\0") at the end of stdin), and
`finish(status)` for the final Status on the error stream.

- WebSocket (kubectl 1.30+, the Python client): v5.channel.k8s.io, v4 or channel.k8s.io, messages
  whose first byte is the stream (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize, v5's 255 closes
  one). Binary and text messages alike: the Python client sends `write_stdin(str)` as text.
  v4 and v5 end with the Status as JSON on the error stream, channel.k8s.io with its message.
- SPDY/3.1 (kubectl before 1.30, and its fallback after; the e2e framework): the protocol chosen
  from the client's `X-Stream-Protocol-Version` (v5.channel.k8s.io, v4, v3, v2, channel.k8s.io), then the client opens
  one stream per `streamType` (error, stdin, stdout, stderr, resize for a terminal); stdin's end
  is its FIN, resizes are JSON objects one after another. v4 and v5 write the Status as JSON on
  the error stream, the older versions its message as text."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from aiohttp import WSMsgType, web

from netlab.kit import spdy, upgrade

WS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
JSON_STATUS = ("v5.channel.k8s.io", "v4.channel.k8s.io")  # before v4, the error stream has the message as text
# v5 over SPDY is v4 (its close signal is WebSocket's), as upstream's kubelet serves it
SPDY_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                  "channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
STREAM_TYPES = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR, "resize": RESIZE}
STREAM_WAIT = 30.0  # upstream's streamCreationTimeout


class StreamError(Exception):
    """A request that cannot be upgraded: the kubelet's plain-text answer and its code."""

    def __init__(self, message: str, code: int = 400):
        super().__init__(message)
        self.code = code


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    return default if value is None else value in ("1", "true", "True")


def is_spdy(request: web.Request) -> bool:
    return "spdy/3.1" in request.headers.get("Upgrade", "").lower()


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def negotiate(request: web.Request, supported: tuple[str, ...]) -> str:
    """The first of the client's X-Stream-Protocol-Version that the server speaks (upstream's
    httpstream.Handshake)."""
    offered = [p.strip() for h in request.headers.getall("X-Stream-Protocol-Version", []) for p in h.split(",")]
    for p in offered:
        if p in supported:
            return p
    raise StreamError(f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server "
                      f"supports {list(supported)}", 403)


class WebSocketChannels:
    def __init__(self, ws: web.WebSocketResponse):
        self.ws = self.response = ws

    async def send(self, stream: int, data: bytes) -> None:
        await self.ws.send_bytes(bytes([stream]) + data)

    async def inputs(self) -> AsyncIterator[tuple[int, bytes]]:
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                data = msg.data
            elif msg.type == WSMsgType.TEXT:
                data = msg.data.encode()
            else:
                continue
            if data:
                yield data[0], data[1:]

    async def finish(self, status: dict) -> None:
        with contextlib.suppress(ConnectionError):
            if self.ws.ws_protocol in JSON_STATUS:
                await self.ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
            elif status.get("status") != "Success":
                await self.ws.send_bytes(bytes([ERROR]) + status.get("message", "").encode())
        await self.ws.close()


class SPDYChannels:
    def __init__(self, conn: upgrade.Upgraded, session: spdy.Session, streams: dict[int, spdy.Stream],
                 protocol: str, runner: asyncio.Task):
        self.conn, self.session, self.streams, self.protocol = conn, session, streams, protocol
        self.runner, self.response = runner, conn.response

    async def send(self, stream: int, data: bytes) -> None:
        if (s := self.streams.get(stream)) is not None and not s.local_done:
            await s.write(data)

    async def inputs(self) -> AsyncIterator[tuple[int, bytes]]:
        q: asyncio.Queue = asyncio.Queue()

        async def read(stream: spdy.Stream, kind: int) -> None:
            buf = b""
            while data := await stream.read():
                if kind == RESIZE:  # JSON objects one after another: each one a resize
                    buf += data
                    text = buf.decode(errors="replace")
                    dec, pos = json.JSONDecoder(), 0
                    with contextlib.suppress(ValueError):
                        while pos < len(text):
                            obj, end = dec.raw_decode(text, pos)
                            q.put_nowait((RESIZE, json.dumps(obj).encode()))
                            pos = end
                            while pos < len(text) and text[pos].isspace():
                                pos += 1
                    buf = text[pos:].encode()
                else:
                    q.put_nowait((kind, data))
            if kind == STDIN:
                q.put_nowait((CLOSE, bytes([STDIN])))

        readers = [asyncio.ensure_future(read(s, k)) for k, s in self.streams.items() if k in (STDIN, RESIZE)]
        closed = asyncio.ensure_future(self.session.closed.wait())
        closed.add_done_callback(lambda _: q.put_nowait(None))
        try:
            while (item := await q.get()) is not None:
                yield item
        finally:
            closed.cancel()
            for r in readers:
                r.cancel()

    async def finish(self, status: dict) -> None:
        with contextlib.suppress(ConnectionError, spdy.SPDYError):
            for kind in (STDOUT, STDERR):
                if (s := self.streams.get(kind)) is not None:
                    await s.close()
            if (s := self.streams.get(ERROR)) is not None:
                if self.protocol in JSON_STATUS:
                    await s.write(json.dumps(status).encode())
                elif status.get("status") != "Success":
                    await s.write(status.get("message", "").encode())
                await s.close()
            await self.session.goaway()
        # the client closes the connection once it has read the error stream
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.runner), 5)
        self.conn.close()


async def spdy_session(request: web.Request, protocol: str) -> tuple[upgrade.Upgraded, spdy.Session, asyncio.Task]:
    """Answer the SPDY upgrade with `protocol` and serve a session on the connection."""
    conn = await upgrade.take_over(request, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                             "X-Stream-Protocol-Version": protocol})
    session = spdy.Session(conn.reader.readexactly, conn.write, server=True)
    return conn, session, asyncio.ensure_future(session.run())


async def open_channels(request: web.Request, stdin: bool, stdout: bool, stderr: bool, tty: bool):
    """The client's streams, over the protocol it asked for (StreamError if neither)."""
    if is_websocket(request):
        ws = web.WebSocketResponse(protocols=WS_PROTOCOLS, max_msg_size=0)
        await ws.prepare(request)
        return WebSocketChannels(ws)
    if not is_spdy(request):
        raise StreamError("Upgrade request required")
    protocol = negotiate(request, SPDY_PROTOCOLS)
    conn, session, runner = await spdy_session(request, protocol)
    expected = 1 + stdin + stdout + stderr + (tty and protocol not in ("v2.channel.k8s.io", "channel.k8s.io"))
    streams: dict[int, spdy.Stream] = {}
    loop = asyncio.get_running_loop()
    end = loop.time() + STREAM_WAIT
    while len(streams) < expected:
        try:
            s = await asyncio.wait_for(session.accept(), max(0.0, end - loop.time()))
        except asyncio.TimeoutError:
            break
        if s is None:
            break
        if (kind := STREAM_TYPES.get(s.header("streamType"))) is not None:
            streams[kind] = s
        else:
            await s.reset(spdy.PROTOCOL_ERROR)
    return SPDYChannels(conn, session, streams, protocol, runner)
