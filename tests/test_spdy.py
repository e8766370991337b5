"""netlab.kit.spdy on its own: the frames' bytes as the SPDY/3 draft lays them out, header blocks
compressed with the spec's dictionary (zlib checks the dictionary's Adler-32 against the one the
stream names, so a wrong byte fails here), and a client and a server session over a socket pair."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from netlab.kit import spdy


def test_the_dictionary_is_the_specs():
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert b"\x00\x00\x00\x06200 OK\x00\x00\x00\x07version" in spdy.DICTIONARY
    assert spdy.DICTIONARY.endswith(b"utf-,*,enq=0.")


def test_frames_are_laid_out_as_the_draft_says():
    # control: C bit, version 3, type; flags and 24-bit length
    assert spdy.control(spdy.PING, 0, b"\x00\x00\x00\x01") == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"
    assert spdy.data_frame(5, b"hi", fin=True) == b"\x00\x00\x00\x05\x01\x00\x00\x02hi"


def test_header_blocks_round_trip_and_name_the_dictionary():
    a, b = spdy.HeaderCodec(), spdy.HeaderCodec()
    first = a.encode({"streamType": ["error"], "port": ["80"]})
    # zlib's header says a preset dictionary is used, and which (its Adler-32)
    assert first[1] & 0x20 and struct.unpack("!I", first[2:6])[0] == zlib.adler32(spdy.DICTIONARY)
    assert b.decode(first) == {"streamtype": ["error"], "port": ["80"]}
    # one zlib stream per direction: the second block depends on the first
    assert b.decode(a.encode({"requestid": ["0"], "x": ["a", "b"]})) == {"requestid": ["0"], "x": ["a", "b"]}
    with pytest.raises(spdy.SPDYError):
        spdy.HeaderCodec().decode(b"\x00garbage")


def test_a_client_and_a_server_session_over_a_socket_pair():
    async def go():
        async def pair():
            server_side = asyncio.Queue()
            srv = await asyncio.start_server(lambda r, w: server_side.put_nowait((r, w)), "127.0.0.1", 0)
            port = srv.sockets[0].getsockname()[1]
            cr, cw = await asyncio.open_connection("127.0.0.1", port)
            sr, sw = await server_side.get()
            srv.close()
            return (cr, cw), (sr, sw)

        (cr, cw), (sr, sw) = await pair()

        def writer(w):
            async def write(data):
                w.write(data)
                await w.drain()
            return write
        client = spdy.Session(cr.readexactly, writer(cw), server=False)
        server = spdy.Session(sr.readexactly, writer(sw), server=True)
        tasks = [asyncio.ensure_future(client.run()), asyncio.ensure_future(server.run())]

        s1 = await client.open({"streamType": "data", "port": "80"})
        got = await server.accept()
        assert (s1.id, got.id, got.header("streamtype"), got.header("port")) == (1, 1, "data", "80")
        await asyncio.wait_for(s1.replied.wait(), 2)  # the server's SYN_REPLY came back
        await s1.write(b"ping")
        await s1.close()
        assert await got.read() == b"ping" and await got.read() == b""  # then the FIN
        await got.write(b"pong" * 10000)
        await got.close()
        data = b""
        while chunk := await s1.read():
            data += chunk
        assert data == b"pong" * 10000

        s3 = await client.open({"streamType": "error"})
        assert s3.id == 3
        reset = await server.accept()
        await reset.reset()
        assert await asyncio.wait_for(s3.read(), 2) == b"" and s3.local_done

        # a PING from the client comes back (answered by the server's session)
        await client.send(spdy.control(spdy.PING, 0, struct.pack("!I", 1)))
        await server.goaway()  # GOAWAY: the client's session ends, and its streams with it
        await asyncio.wait_for(client.closed.wait(), 2)
        assert await client.accept() is None
        cw.close()
        sw.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(go())
