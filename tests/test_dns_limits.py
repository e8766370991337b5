"""The DNS server's bounds: the answer cache holds at most the `cache` plugin's capacity per kind
(a flood of unique names neither grows it nor the process), entries live for their TTL and are
served counted down; a name longer than 255 bytes gets FORMERR and no traceback; TCP connections
that send nothing, or only a length prefix, are closed within CoreDNS's timeouts."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from dnslib import QTYPE

from coredns import cache
from coredns.corefile import CorefileError, parse
from coredns.records import Kubernetes
from coredns.server import Engine
from tests.test_dns import DATA, Z, free_port


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def query(name: bytes, qtype: int = QTYPE.A, qid: int = 0x1234) -> bytes:
    """A query with a name given as wire labels (dnspython will not make one over 255 bytes)."""
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", qtype, 1)


def wire(name: str) -> bytes:
    return b"".join(bytes([len(x)]) + x.encode() for x in name.rstrip(".").split(".")) + b"\0"


def test_cache_options_from_the_corefile():
    d = parse(".:53 {\n  cache 30 example.org {\n    success 5000 60 10\n    denial 100\n  }\n}\n")[0].plugin("cache")
    cfg = cache.parse(d)
    assert cfg.enabled and cfg.zones == ["example.org."]
    assert (cfg.success.capacity, cfg.success.max_ttl, cfg.success.min_ttl) == (5000, 60, 10)
    assert (cfg.denial.capacity, cfg.denial.max_ttl, cfg.denial.min_ttl) == (100, 30, 5)
    default = cache.parse(parse(".:53 {\n  cache\n}\n")[0].plugin("cache"))
    assert (default.success.capacity, default.success.max_ttl, default.denial.max_ttl) == (9984, 3600, 1800)
    with pytest.raises(CorefileError, match="line 3: cache: CAPACITY must be"):
        cache.parse(parse(".:53 {\n  cache {\n    success lots\n  }\n}\n")[0].plugin("cache"))


def _engine(cfg: cache.CacheConfig, clock: Clock | None = None) -> Engine:
    from coredns.__main__ import load_state

    kube = Kubernetes([Z, "in-addr.arpa."], ttl=30)
    kube.state = load_state(str(DATA))
    e = Engine(kube, cache=cfg)
    if clock is not None:
        e.ready.clock = clock
    return e


def test_a_flood_of_unique_names_keeps_the_cache_at_capacity():
    cfg = cache.CacheConfig(True, cache.Kind(50, 3600), cache.Kind(100, 1800))
    e = _engine(cfg)
    for i in range(1000):
        r = e.handle(query(wire(f"nope{i}.default.svc.{Z}")))
        assert r[3] & 0xF == dns.rcode.NXDOMAIN
        e.handle(query(wire(f"nope{i}.example.com."), qid=i))  # REFUSED: a denial too
    assert e.ready.size("denial") == 100 and e.ready.size("success") == 0
    assert e.handle(query(wire(f"web.default.svc.{Z}")))[3] & 0xF == 0
    assert e.ready.size("success") == 1
    # the newest stay, the oldest went
    assert e.ready.get((wire("nope999.example.com."), QTYPE.A, 1, False)) is not None
    assert e.ready.get((wire(f"nope0.default.svc.{Z}"), QTYPE.A, 1, False)) is None


def test_entries_live_for_their_ttl_and_are_served_counted_down():
    clock = Clock()
    e = _engine(cache.CacheConfig(True, cache.Kind(10, 20), cache.Kind(10, 1800)), clock)
    q = dns.message.make_query(f"web.default.svc.{Z}", "A").to_wire()
    first = dns.message.from_wire(e.handle(q))  # built, the record's TTL 30 (kept 20 s: the cache's TTL)
    clock.t += 7.5
    later = dns.message.from_wire(e.handle(q))
    assert first.answer[0].ttl == 30 and later.answer[0].ttl == 23
    assert e.metrics.cache_hits["success"] == 1
    clock.t += 13  # past the cache's TTL of 20: built anew, TTL whole again
    again = dns.message.from_wire(e.handle(q))
    assert again.answer[0].ttl == 30 and e.metrics.cache_misses == 2
    # keepttl serves the TTLs as built
    k = _engine(cache.CacheConfig(True, keepttl=True), clock)
    k.handle(q)
    clock.t += 5
    assert dns.message.from_wire(k.handle(q)).answer[0].ttl == 30


def test_a_name_over_255_bytes_gets_formerr():
    e = _engine(cache.CacheConfig())
    long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x05cluster\x00"  # 264 bytes
    r = e.handle(query(long_name))
    assert r[:2] == b"\x12\x34" and r[3] & 0xF == dns.rcode.FORMERR


# --- a server on loopback ---------------------------------------------------------------------

def rss_kb(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


@pytest.fixture
def server(tmp_path):
    """netlab-dns on loopback with a small cache, metrics and short TCP timeouts; yields
    (dns port, metrics port, process, path of its log)."""
    port, mport = free_port(), free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(f""".:53 {{
    kubernetes cluster.local in-addr.arpa
    cache 30 {{
        success 300
        denial 300
    }}
    timeouts {{
        read 1s
        idle 2s
    }}
    prometheus 127.0.0.1:{mport}
}}
""")
    logf = tmp_path / "dns.log"
    with open(logf, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "coredns", "--conf", str(conf), "--state", str(DATA),
                                 "--listen", f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                dns.query.udp(dns.message.make_query(f"dns-version.{Z}", "TXT"), "127.0.0.1", port=port, timeout=0.2)
                break
            except dns.exception.Timeout:
                assert proc.poll() is None and time.monotonic() < deadline, logf.read_text()
        yield port, mport, proc, logf
    finally:
        proc.kill()
        proc.wait()


def flood(port: int, start: int, n: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for i in range(start, start + n):
            s.sendto(query(wire(f"n{i}.default.svc.{Z}"), qid=i & 0xFFFF), ("127.0.0.1", port))
            s.recv(4096)


def metric(mport: int, name: str, kind: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=2).read().decode()
    m = re.search(rf'^{name}{{[^}}]*type="{kind}"[^}}]*}} (\S+)$', text, re.M)
    assert m, text
    return float(m.group(1))


def test_flood_of_unique_names_leaves_memory_bounded(server):
    port, mport, proc, _ = server
    flood(port, 0, 1000)  # the cache fills up
    assert metric(mport, "coredns_cache_entries", "denial") == 300
    before = rss_kb(proc.pid)
    flood(port, 1000, 10_000)  # unbounded, these took ~8 MB
    after = rss_kb(proc.pid)
    assert metric(mport, "coredns_cache_entries", "denial") == 300
    assert after - before < 2500, f"RSS grew {after - before} KiB over 10,000 unique names"
    r = dns.query.udp(dns.message.make_query(f"web.default.svc.{Z}", "A"), "127.0.0.1", port=port, timeout=2)
    assert r.answer[0][0].to_text() == "10.96.12.34"


def test_malformed_names_get_formerr_without_a_traceback(server):
    port, _, proc, logf = server
    long_name = b"".join(b"\x3f" + b"b" * 63 for _ in range(5)) + b"\x00"  # 321 bytes
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for i in range(200):
            s.sendto(query(long_name, qid=i), ("127.0.0.1", port))
            r = s.recv(4096)
            assert r[:2] == struct.pack("!H", i) and r[3] & 0xF == dns.rcode.FORMERR
    assert proc.poll() is None
    log = logf.read_text()
    assert "Traceback" not in log and len(log) < 2000, log


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closes `sock` (reads EOF); fails past `seconds`."""
    t = time.monotonic()
    sock.settimeout(seconds)
    try:
        assert sock.recv(1) == b""
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {seconds} s")
    except ConnectionResetError:
        pass
    return time.monotonic() - t


def test_tcp_connections_that_send_nothing_or_half_a_message_are_closed(server):
    port = server[0]
    with socket.create_connection(("127.0.0.1", port)) as idle:
        assert _closed_within(idle, 4) < 2  # the read timeout: 1s
    with socket.create_connection(("127.0.0.1", port)) as half:
        half.sendall(b"\x00\x40")  # a length, and then nothing
        assert _closed_within(half, 4) < 2
    with socket.create_connection(("127.0.0.1", port)) as c:  # after an answer: the idle timeout, 2s
        q = dns.message.make_query(f"web.default.svc.{Z}", "A").to_wire()
        c.sendall(struct.pack("!H", len(q)) + q)
        n = struct.unpack("!H", c.recv(2))[0]
        assert len(c.recv(n)) == n
        assert 1.5 < _closed_within(c, 5) < 3


def test_default_tcp_read_timeout_is_coredns_s():
    from coredns.__main__ import Timeouts, timeouts

    assert timeouts(None) == Timeouts(read=3.0, write=5.0, idle=10.0)
    block = parse(".:53 {\n  timeouts {\n    idle 1m\n  }\n}\n")[0]
    assert timeouts(block.plugin("timeouts")) == Timeouts(3.0, 5.0, 60.0)


def test_an_answer_built_before_a_state_change_is_not_kept():
    c = cache.AnswerCache(cache.CacheConfig())
    gen = c.generation
    c.clear()  # the state changed while the answer was being built
    c.put("k", "old answer", "success", 30, generation=gen)
    assert c.get("k") is None
    c.put("k", "new answer", "success", 30, generation=c.generation)
    assert c.get("k") == ("new answer", 0)
