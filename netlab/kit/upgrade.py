"""An aiohttp request's connection taken over after `101 Switching Protocols` for an upgrade
aiohttp does not speak itself (`Upgrade: SPDY/3.1`, which kubectl before 1.31 asks for): from the
answer on, the connection's bytes in both directions are the caller's.

aiohttp's parser honours only WebSocket upgrades, so this does what its WebSocketResponse does with
the request's protocol: marks the connection upgraded and puts a feeder where its payload parser
goes. The clients ask for the upgrade before sending anything else, so no byte is parsed as HTTP."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web


class _Feed:
    """What aiohttp's protocol feeds an upgraded connection's bytes into."""

    def __init__(self, reader: asyncio.StreamReader):
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


class Upgraded:
    """The taken-over connection: `reader` (an asyncio.StreamReader), `write(data)`, `close()`."""

    def __init__(self, request: web.Request, response: web.StreamResponse, reader: asyncio.StreamReader):
        self.request, self.response, self.reader = request, response, reader
        self.transport = request.transport

    async def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self.transport.write(data)
        await self.request.protocol._drain_helper()  # aiohttp's flow control: wait while paused

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def take_over(request: web.Request, headers: dict[str, str]) -> Upgraded:
    """Answer 101 with `headers` (Connection and Upgrade among them) and take the connection."""
    proto = request.protocol
    proto._upgraded = True
    with contextlib.suppress(AttributeError):
        proto._parser.set_upgraded(True)
    reader = asyncio.StreamReader(limit=2 ** 24)
    proto.set_parser(_Feed(reader))
    resp = web.StreamResponse(status=101, headers=headers)
    resp.force_close()
    await resp.prepare(request)
    return Upgraded(request, resp, reader)
