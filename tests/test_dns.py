"""Cluster DNS: the Kubernetes DNS specification answered by `netlab-dns --state`, checked with
dig and dnspython; TCP and truncation; malformed input; Corefile errors; a fuzz run.

The in-lab checks (pods resolving through their resolv.conf) are in test_dns_lab.py.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

DATA = Path(__file__).parent / "data" / "dns_state.yaml"
Z = "cluster.local."

# (name, type) -> (rcode, sorted answer rdata, or None to skip the rdata check)
CONFORMANCE = [
    # 2.2 the schema version
    (f"dns-version.{Z}", "TXT", "NOERROR", ['"1.1.0"']),
    # 2.3.1 ClusterIP Service: A, and NOERROR with no answer for AAAA
    (f"web.default.svc.{Z}", "A", "NOERROR", ["10.96.12.34"]),
    (f"web.default.svc.{Z}", "AAAA", "NOERROR", []),
    ("WEB.Default.SVC.cluster.LOCAL.", "A", "NOERROR", ["10.96.12.34"]),
    # SRV for each named port, target the Service name
    (f"_http._tcp.web.default.svc.{Z}", "SRV", "NOERROR", [f"0 100 80 web.default.svc.{Z}"]),
    (f"_dns._udp.web.default.svc.{Z}", "SRV", "NOERROR", [f"0 100 53 web.default.svc.{Z}"]),
    (f"_http._udp.web.default.svc.{Z}", "SRV", "NXDOMAIN", []),
    # PTR for a ClusterIP
    ("34.12.96.10.in-addr.arpa.", "PTR", "NOERROR", [f"web.default.svc.{Z}"]),
    # 2.4 headless: A per ready endpoint; per-endpoint names (hostname, else from the IP)
    (f"db.testns.svc.{Z}", "A", "NOERROR", ["10.244.2.7", "10.244.2.8"]),
    (f"db-0.db.testns.svc.{Z}", "A", "NOERROR", ["10.244.2.7"]),
    (f"10-244-2-8.db.testns.svc.{Z}", "A", "NOERROR", ["10.244.2.8"]),
    (f"10-244-2-9.db.testns.svc.{Z}", "A", "NXDOMAIN", []),
    (f"_pg._tcp.db.testns.svc.{Z}", "SRV", "NOERROR",
     [f"0 50 5432 10-244-2-8.db.testns.svc.{Z}", f"0 50 5432 db-0.db.testns.svc.{Z}"]),
    ("7.2.244.10.in-addr.arpa.", "PTR", "NOERROR", [f"db-0.db.testns.svc.{Z}"]),
    ("8.2.244.10.in-addr.arpa.", "PTR", "NOERROR", [f"10-244-2-8.db.testns.svc.{Z}"]),
    # publishNotReadyAddresses: not-ready endpoints are published
    (f"notready.testns.svc.{Z}", "A", "NOERROR", ["10.244.3.3"]),
    # ExternalName: a CNAME
    (f"ext.default.svc.{Z}", "A", "NOERROR", ["example.com."]),
    (f"ext.default.svc.{Z}", "CNAME", "NOERROR", ["example.com."]),
    # names that do not exist, and names that exist without records
    (f"nope.default.svc.{Z}", "A", "NXDOMAIN", []),
    (f"web.nons.svc.{Z}", "A", "NXDOMAIN", []),
    (f"testns.svc.{Z}", "A", "NOERROR", []),
    (f"svc.{Z}", "A", "NOERROR", []),
    (Z, "SOA", "NOERROR", None),
    (Z, "NS", "NOERROR", None),
    # pod records (pods insecure in the default Corefile)
    (f"10-244-1-5.default.pod.{Z}", "A", "NOERROR", ["10.244.1.5"]),
    # other zones: no forward in the lab
    ("example.com.", "A", "REFUSED", []),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "coredns", "--state", str(DATA), "--listen", f"127.0.0.1:{port}",
                             "--no-http"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                dns.query.udp(dns.message.make_query(f"dns-version.{Z}", "TXT"), "127.0.0.1", port=port, timeout=0.2)
                break
            except dns.exception.Timeout:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"netlab-dns did not start: {proc.stderr.read().decode()}") from None
        yield port
    finally:
        proc.kill()
        proc.wait()


def rdata(msg: dns.message.Message) -> list[str]:
    return sorted(r.to_text() for rrset in msg.answer for r in rrset)


@pytest.mark.parametrize(("name", "qtype", "rcode", "want"), CONFORMANCE, ids=[f"{c[1]} {c[0]}" for c in CONFORMANCE])
def test_conformance_dnspython(server, name, qtype, rcode, want):
    r = dns.query.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=server, timeout=2)
    assert dns.rcode.to_text(r.rcode()) == rcode
    if want is not None:
        assert rdata(r) == sorted(want)
    if rcode in ("NOERROR", "NXDOMAIN") and want == []:
        # negative answers carry the zone's SOA, so resolvers can cache them
        assert any(rr.rdtype == dns.rdatatype.SOA for rr in r.authority)
    if rcode != "REFUSED":
        assert r.flags & dns.flags.AA
        assert all(rr.ttl == 30 for rr in r.answer)  # the default Corefile's `ttl 30`


@pytest.mark.parametrize(("name", "qtype", "rcode", "want"), CONFORMANCE, ids=[f"{c[1]} {c[0]}" for c in CONFORMANCE])
def test_conformance_dig(server, name, qtype, rcode, want):
    out = subprocess.run(["dig", "-p", str(server), "@127.0.0.1", name, qtype, "+noall", "+comments", "+answer",
                          "+tries=1", "+time=2"], capture_output=True, text=True, check=True).stdout
    assert f"status: {rcode}" in out
    if want is not None:
        got = sorted(" ".join(line.split()[4:]) for line in out.splitlines() if line and not line.startswith(";"))
        assert got == sorted(want)


def test_tcp_and_truncation(server):
    # A headless Service with 100 endpoints does not fit 512 bytes: TC over UDP, whole over TCP.
    q = dns.message.make_query(f"big.default.svc.{Z}", "A")
    udp = dns.query.udp(q, "127.0.0.1", port=server, timeout=2, ignore_trailing=True)
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = dns.query.tcp(q, "127.0.0.1", port=server, timeout=2)
    assert not tcp.flags & dns.flags.TC and len(rdata(tcp)) == 100
    # EDNS0 with a 4096-byte payload: the whole answer over UDP
    q = dns.message.make_query(f"big.default.svc.{Z}", "A", use_edns=0, payload=4096)
    big = dns.query.udp(q, "127.0.0.1", port=server, timeout=2)
    assert not big.flags & dns.flags.TC and len(rdata(big)) == 100


def test_loadbalance_rotates(server):
    q = dns.message.make_query(f"db.testns.svc.{Z}", "A")
    firsts = {dns.query.udp(q, "127.0.0.1", port=server, timeout=2).answer[0][0].to_text() for _ in range(4)}
    assert firsts == {"10.244.2.7", "10.244.2.8"}


def test_query_id_and_case_are_echoed(server):
    q = dns.message.make_query("Web.Default.Svc.Cluster.Local.", "A")
    q.id = 4242
    r = dns.query.udp(q, "127.0.0.1", port=server, timeout=2)
    assert r.id == 4242 and r.question[0].name.to_text() == "Web.Default.Svc.Cluster.Local."


def _exchange(port: int, data: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def test_malformed_gets_formerr(server):
    q = dns.message.make_query(f"web.default.svc.{Z}", "A").to_wire()
    broken = q[:-3]  # the question cut short
    r = _exchange(server, broken)
    assert r is not None and r[:2] == q[:2] and (r[3] & 0xF) == dns.rcode.FORMERR
    assert _exchange(server, b"\x00\x01", timeout=0.3) is None  # not even a header: dropped
    r = _exchange(server, q)  # and the server still answers
    assert dns.message.from_wire(r).rcode() == dns.rcode.NOERROR


def test_fuzz_never_crashes(server):
    """100,000 random and mutated packets; every query that dnspython can parse is answered."""
    rnd = random.Random(1)
    seeds = [dns.message.make_query(n, t).to_wire() for n, t, *_ in CONFORMANCE]
    answered = parsable = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        for i in range(100_000):
            if i % 4 == 0:
                pkt = rnd.randbytes(rnd.randrange(0, 80))
            else:
                pkt = bytearray(rnd.choice(seeds))
                for _ in range(rnd.randrange(1, 4)):
                    pkt[rnd.randrange(len(pkt))] = rnd.randrange(256)
                pkt = bytes(pkt)
            try:
                m = dns.message.from_wire(pkt)
                ok = (not m.flags & dns.flags.QR) and len(m.question) == 1 and m.opcode() == 0
            except Exception:  # noqa: BLE001 - any parse failure means "not a query"
                ok = False
            s.sendto(pkt, ("127.0.0.1", server))
            if ok:
                parsable += 1
                while True:  # skip any late answer to an earlier, unparsable packet
                    r = s.recv(65535)
                    if r[:2] == pkt[:2]:
                        break
                answered += 1
    assert parsable > 1000 and answered == parsable
    r = dns.query.udp(dns.message.make_query(f"web.default.svc.{Z}", "A"), "127.0.0.1", port=server, timeout=2)
    assert rdata(r) == ["10.96.12.34"]


@pytest.mark.parametrize(("corefile", "error"), [
    (".:53 {\n    kubernetes cluster.local\n    bogus\n}\n", "line 3: unknown plugin 'bogus'"),
    (".:53 {\n    kubernetes cluster.local {\n        ttl forever\n    }\n}\n", "line 3: ttl must be"),
    (".:53 {\n    kubernetes cluster.local\n", "line 1: the '{' opened here is never closed"),
    (".:53 {\n    kubernetes cluster.local {\n        pods maybe\n    }\n}\n", "line 3: pods must be"),
])
def test_corefile_errors(tmp_path, corefile, error):
    conf = tmp_path / "Corefile"
    conf.write_text(corefile)
    r = subprocess.run([sys.executable, "-m", "coredns", "--conf", str(conf), "--state", str(DATA), "--listen",
                        f"127.0.0.1:{free_port()}", "--no-http"], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert error in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_reload_applies_a_changed_corefile_and_keeps_the_old_on_error(tmp_path):
    conf = tmp_path / "Corefile"
    corefile = ".:53 {{\n    kubernetes cluster.local in-addr.arpa {{\n        ttl {ttl}\n    }}\n    reload {every}\n}}\n"
    conf.write_text(corefile.format(ttl=5, every="200ms"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "coredns", "--conf", str(conf), "--state", str(DATA), "--listen",
                             f"127.0.0.1:{port}", "--no-http"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    q = dns.message.make_query(f"web.default.svc.{Z}", "A")

    def ttl() -> int | None:
        try:
            return dns.query.udp(q, "127.0.0.1", port=port, timeout=0.5).answer[0].ttl
        except (dns.exception.Timeout, IndexError):
            return None

    def until(value: int) -> bool:
        end = time.monotonic() + 5
        while time.monotonic() < end:
            if ttl() == value:
                return True
            time.sleep(0.05)
        return False
    try:
        assert until(5)
        conf.write_text(corefile.format(ttl=17, every="200ms"))
        assert until(17)  # applied, the ready answers dropped
        conf.write_text("this is not a Corefile {\n")
        time.sleep(0.6)
        assert ttl() == 17 and proc.poll() is None  # the broken one reported, the running one kept
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert "Reloading complete" in err.decode() and "Corefile changed but reload failed" in err.decode()
