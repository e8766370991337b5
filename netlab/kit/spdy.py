"""SPDY/3.1, as far as Kubernetes' streaming uses it (exec, attach and port-forward before WebSocket,
and port-forward's SPDY tunnelled over WebSocket): frames, name/value header blocks compressed
with zlib and the SPDY/3 dictionary, and a session of streams over any byte stream.

Written here because PyPI has no well-kept SPDY library (python-spdylay and spdy-py are unmaintained
since 2012 and 2021). Like moby/spdystream, which client-go and the kubelet use, it does no flow
control: WINDOW_UPDATE and SETTINGS are read and ignored, and nothing waits for a window.

Frames (all integers big-endian):
    control: 1 bit set, 15 bits version (3), 16 bits type; 8 bits flags, 24 bits length; data
    data:    1 bit clear, 31 bits stream id;               8 bits flags, 24 bits length; data
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections.abc import Awaitable, Callable

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN, FLAG_UNIDIRECTIONAL = 0x01, 0x02
PROTOCOL_ERROR, CANCEL = 1, 5
MAX_DATA = 0xFFFFFF
HEADER = struct.Struct("!II")

_WORDS = (*(
    "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges age "
    "allow authorization cache-control connection content-base content-encoding content-language content-length "
    "content-location content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status").split(), "200 OK",
    *"version HTTP/1.1 url public set-cookie keep-alive origin".split())
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
# The SPDY/3 spec's header dictionary: its words, each after its length in 4 bytes, then the tail.
DICTIONARY = b"".join(struct.pack("!I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


class SPDYError(Exception):
    pass


def control(kind: int, flags: int, data: bytes) -> bytes:
    return HEADER.pack(0x80000000 | VERSION << 16 | kind, flags << 24 | len(data)) + data


def data_frame(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    return HEADER.pack(stream_id & 0x7FFFFFFF, (FLAG_FIN if fin else 0) << 24 | len(data)) + data


class HeaderCodec:
    """One direction's header compression (each direction of a session keeps one zlib stream)."""

    def __init__(self):
        self._out = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY,
                                     DICTIONARY)
        self._in = zlib.decompressobj(zdict=DICTIONARY)

    def encode(self, headers: dict[str, list[str]]) -> bytes:
        block = struct.pack("!I", len(headers))
        for name, values in headers.items():
            n, v = name.lower().encode(), "\0".join(values).encode()
            block += struct.pack("!I", len(n)) + n + struct.pack("!I", len(v)) + v
        return self._out.compress(block) + self._out.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, data: bytes) -> dict[str, list[str]]:
        try:
            block = self._in.decompress(data)
        except zlib.error as e:
            raise SPDYError(f"bad header block: {e}") from None
        try:
            (count,), pos, out = struct.unpack_from("!I", block), 4, {}
            for _ in range(count):
                (n,) = struct.unpack_from("!I", block, pos)
                name = block[pos + 4:pos + 4 + n].decode()
                pos += 4 + n
                (n,) = struct.unpack_from("!I", block, pos)
                out.setdefault(name.lower(), []).extend(block[pos + 4:pos + 4 + n].decode().split("\0"))
                pos += 4 + n
        except (struct.error, UnicodeDecodeError) as e:
            raise SPDYError(f"bad header block: {e}") from None
        return out


class Stream:
    """One SPDY stream: its headers, what the peer sends (read() returns b"" once the peer is done),
    and writes until close() (a FIN) or reset()."""

    def __init__(self, session: Session, stream_id: int, headers: dict[str, list[str]]):
        self.session, self.id, self.headers = session, stream_id, headers
        self._data: asyncio.Queue[bytes] = asyncio.Queue()
        self.remote_done = self.local_done = False
        self.replied = asyncio.Event()

    def header(self, name: str, default: str = "") -> str:
        return (self.headers.get(name.lower()) or [default])[0]

    async def read(self) -> bytes:
        if self.remote_done and self._data.empty():
            return b""
        return await self._data.get()

    async def write(self, data: bytes) -> None:
        if self.local_done:
            raise SPDYError(f"stream {self.id} is closed")
        for i in range(0, len(data), MAX_DATA):
            await self.session.send(data_frame(self.id, data[i:i + MAX_DATA]))

    async def close(self) -> None:
        if not self.local_done:
            self.local_done = True
            with contextlib.suppress(ConnectionError):
                await self.session.send(data_frame(self.id, b"", fin=True))

    async def reset(self, status: int = CANCEL) -> None:
        self.local_done = True
        self._remote_end()
        with contextlib.suppress(ConnectionError):
            await self.session.send(control(RST_STREAM, 0, struct.pack("!II", self.id, status)))

    def _feed(self, data: bytes, fin: bool) -> None:
        if data and not self.remote_done:
            self._data.put_nowait(data)
        if fin:
            self._remote_end()

    def _remote_end(self) -> None:
        if not self.remote_done:
            self.remote_done = True
            self._data.put_nowait(b"")


class Session:
    """A SPDY session over a byte stream: `read(n)` gives exactly n bytes (asyncio's readexactly),
    `write(data)` sends bytes. A server's new streams come from accept() (already replied to, as
    the kubelet replies at once); a client opens its own with open()."""

    def __init__(self, readexactly: Callable[[int], Awaitable[bytes]], write: Callable[[bytes], Awaitable[None]],
                 server: bool):
        self._read, self._write = readexactly, write
        self.server = server
        self._next_id = 2 if server else 1
        self._codec = HeaderCodec()
        self._lock = asyncio.Lock()
        self.streams: dict[int, Stream] = {}
        self._new: asyncio.Queue[Stream | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.last_seen = 0

    async def send(self, frame: bytes) -> None:
        async with self._lock:
            await self._write(frame)

    async def _send_headers(self, build: Callable[[bytes], bytes], headers: dict[str, list[str]]) -> None:
        async with self._lock:  # compressed in the order sent: one zlib stream for the session
            await self._write(build(self._codec.encode(headers)))

    async def accept(self) -> Stream | None:
        """The next stream the peer opened; None once the session is over."""
        if self.closed.is_set() and self._new.empty():
            return None
        return await self._new.get()

    async def open(self, headers: dict[str, str], fin: bool = False) -> Stream:
        sid, self._next_id = self._next_id, self._next_id + 2
        stream = self.streams[sid] = Stream(self, sid, {k.lower(): [v] for k, v in headers.items()})
        await self._send_headers(lambda block: control(SYN_STREAM, FLAG_FIN if fin else 0,
                                                       struct.pack("!IIH", sid, 0, 0) + block), stream.headers)
        stream.local_done = fin
        return stream

    async def goaway(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.send(control(GOAWAY, 0, struct.pack("!II", self.last_seen, 0)))

    async def run(self) -> None:
        """Read frames until the byte stream ends (or a GOAWAY); then every stream is ended."""
        try:
            while True:
                first, second = HEADER.unpack(await self._read(HEADER.size))
                flags, length = second >> 24, second & 0xFFFFFF
                payload = await self._read(length) if length else b""
                if first & 0x80000000:
                    if not await self._control(first & 0xFFFF, flags, payload):
                        break
                else:
                    stream = self.streams.get(first & 0x7FFFFFFF)
                    if stream is not None:
                        stream._feed(payload, bool(flags & FLAG_FIN))
        except (asyncio.IncompleteReadError, ConnectionError, SPDYError, struct.error):
            pass
        finally:
            self.closed.set()
            for s in self.streams.values():
                s._remote_end()
                s.replied.set()
            self._new.put_nowait(None)

    async def _control(self, kind: int, flags: int, p: bytes) -> bool:
        if kind == SYN_STREAM:
            sid = struct.unpack_from("!I", p)[0] & 0x7FFFFFFF
            stream = Stream(self, sid, self._codec.decode(p[10:]))
            self.streams[sid], self.last_seen = stream, max(self.last_seen, sid)
            if flags & FLAG_FIN:
                stream._remote_end()
            await self._send_headers(lambda block: control(SYN_REPLY, 0, struct.pack("!I", sid) + block), {})
            stream.replied.set()
            self._new.put_nowait(stream)
        elif kind in (SYN_REPLY, HEADERS):
            sid = struct.unpack_from("!I", p)[0] & 0x7FFFFFFF
            self._codec.decode(p[4:])  # the zlib stream goes on whatever the headers say
            if (stream := self.streams.get(sid)) is not None:
                stream.replied.set()
                if flags & FLAG_FIN:
                    stream._remote_end()
        elif kind == RST_STREAM:
            sid = struct.unpack_from("!I", p)[0] & 0x7FFFFFFF
            if (stream := self.streams.get(sid)) is not None:
                stream.local_done = True
                stream._remote_end()
                stream.replied.set()
        elif kind == PING:
            (ping,) = struct.unpack_from("!I", p)
            if ping % 2 != self._next_id % 2:  # the peer's ping: answered; ours coming back: nothing to do
                await self.send(control(PING, 0, p))
        elif kind == GOAWAY:
            return False
        return True  # SETTINGS, WINDOW_UPDATE and anything newer: read and ignored
