"""The DNS server: UDP and TCP, answers kept ready as wire bytes.

The hot path does not build messages: it reads the query's header and question, looks the
question up in a table of ready answers (built once with dnslib, dropped whenever the cluster
state changes), and sends back the query's ID, the ready header (with the query's RD bit), the
query's own question bytes (case kept) and the ready answer sections. EDNS0 payload sizes are
honoured; an answer too large for UDP goes out truncated (TC) and whole over TCP. Malformed
queries get FORMERR (or are dropped when not even a header is there).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import struct
import threading
import time

from dnslib import EDNS0, QTYPE, RCODE, DNSHeader, DNSQuestion, DNSRecord

from coredns.records import Kubernetes

log = logging.getLogger("netlab.dns")
EDNS_SIZE = 1232  # what we advertise, as CoreDNS does


class Metrics:
    """CoreDNS's metric names; counters kept as plain dict increments on the hot path."""

    BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024]

    def __init__(self):
        self.requests: dict[tuple, int] = {}
        self.responses: dict[tuple, int] = {}
        self.cache_hits = 0
        self.cache_misses = 0
        self.durations = [0] * (len(self.BUCKETS) + 1)
        self.duration_sum = 0.0

    def observe(self, proto: str, qtype: int, rcode: int, seconds: float) -> None:
        k = (proto, qtype)
        self.requests[k] = self.requests.get(k, 0) + 1
        self.responses[rcode] = self.responses.get(rcode, 0) + 1
        self.duration_sum += seconds
        self.durations[bisect.bisect_left(self.BUCKETS, seconds)] += 1

    def text(self, zone: str = ".") -> str:
        lines = ["# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.",
                 "# TYPE coredns_dns_requests_total counter"]
        for (proto, qtype), n in sorted(self.requests.items()):
            lines.append(f'coredns_dns_requests_total{{server="dns://:53",zone="{zone}",view="",proto="{proto}",'
                         f'family="1",type="{QTYPE.get(qtype, qtype)}"}} {n}')
        lines += ["# HELP coredns_dns_responses_total Counter of response status codes.",
                  "# TYPE coredns_dns_responses_total counter"]
        for rcode, n in sorted(self.responses.items()):
            lines.append(f'coredns_dns_responses_total{{server="dns://:53",zone="{zone}",view="",'
                         f'rcode="{RCODE.get(rcode, rcode)}",plugin=""}} {n}')
        lines += ["# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took.",
                  "# TYPE coredns_dns_request_duration_seconds histogram"]
        acc = 0
        for b, n in zip(self.BUCKETS, self.durations, strict=False):
            acc += n
            lines.append(f'coredns_dns_request_duration_seconds_bucket{{server="dns://:53",zone="{zone}",view="",'
                         f'type="other",le="{b}"}} {acc}')
        total = sum(self.durations)
        lines.append(f'coredns_dns_request_duration_seconds_bucket{{server="dns://:53",zone="{zone}",view="",'
                     f'type="other",le="+Inf"}} {total}')
        lines.append(f'coredns_dns_request_duration_seconds_sum{{server="dns://:53",zone="{zone}",view="",'
                     f'type="other"}} {self.duration_sum}')
        lines.append(f'coredns_dns_request_duration_seconds_count{{server="dns://:53",zone="{zone}",view="",'
                     f'type="other"}} {total}')
        lines += ["# HELP coredns_cache_hits_total The count of cache hits.", "# TYPE coredns_cache_hits_total counter",
                  f'coredns_cache_hits_total{{server="dns://:53",type="success",view="",zones="{zone}"}} '
                  f"{self.cache_hits}",
                  "# HELP coredns_cache_misses_total The count of cache misses.",
                  "# TYPE coredns_cache_misses_total counter",
                  f'coredns_cache_misses_total{{server="dns://:53",view="",zones="{zone}"}} {self.cache_misses}']
        return "\n".join(lines) + "\n"


class Ready:
    """A ready answer: header bytes after the ID, and the sections after the question; several
    rotations of the answer section when `loadbalance` shuffles A records."""

    __slots__ = ("flags", "counts", "rests", "rotor", "rcode", "qtype")

    def __init__(self, flags: int, counts: bytes, rests: list[bytes], rcode: int, qtype: int):
        self.flags, self.counts, self.rests, self.rcode, self.qtype = flags, counts, rests, rcode, qtype
        self.rotor = itertools.cycle(range(len(rests)))

    def rest(self) -> bytes:
        return self.rests[next(self.rotor)] if len(self.rests) > 1 else self.rests[0]


def parse_question(data: bytes) -> tuple[int, bytes, int, int] | None:
    """(end offset of the question, lower-cased qname wire bytes, qtype, qclass), or None if the
    single question cannot be read."""
    i, n = 12, len(data)
    while True:
        if i >= n:
            return None
        ln = data[i]
        if ln == 0:
            i += 1
            break
        if ln & 0xC0 or i + 1 + ln > n:  # no compression in a question; labels inside the message
            return None
        i += 1 + ln
    if i + 4 > n:
        return None
    qtype, qclass = struct.unpack_from("!HH", data, i)
    return i + 4, data[12:i].lower(), qtype, qclass


def edns_size(data: bytes, qend: int, arcount: int) -> int | None:
    """The EDNS0 UDP payload size from an OPT record right after the question, if any."""
    if arcount != 1 or len(data) < qend + 11:
        return None
    if data[qend] == 0 and struct.unpack_from("!H", data, qend + 1)[0] == QTYPE.OPT:
        return max(512, struct.unpack_from("!H", data, qend + 3)[0])
    return None


class Engine:
    def __init__(self, kube: Kubernetes, loadbalance: bool = False, forward=None, metrics: Metrics | None = None):
        self.kube, self.loadbalance, self.forward = kube, loadbalance, forward
        self.metrics = metrics or Metrics()
        self.ready: dict[tuple, tuple[Ready, Ready]] = {}
        self.lock = threading.Lock()

    def invalidate(self) -> None:
        self.ready = {}

    def build(self, qkey: bytes, qtype: int, qclass: int, edns: bool) -> tuple[Ready, Ready] | None:
        qname = _labels(qkey)
        qlen = len(qkey) + 4  # the question is first in the message, never compressed
        ans = self.kube.answer(qname, qtype) if qclass == 1 else None
        if ans is None or ans.fallthrough or (ans.rcode == RCODE.REFUSED and self.forward):
            return None
        rec = DNSRecord(DNSHeader(id=0, qr=1, aa=ans.authoritative, ra=1, rcode=ans.rcode),
                        q=DNSQuestion(qname, qtype, qclass))
        for rr in ans.answer:
            rec.add_answer(rr)
        for rr in ans.authority:
            rec.add_auth(rr)
        for rr in ans.additional:
            rec.add_ar(rr)
        if edns:
            rec.add_ar(EDNS0(udp_len=EDNS_SIZE))
        rotations = [rec.rr]
        a_recs = [r for r in rec.rr if r.rtype == QTYPE.A]
        if self.loadbalance and len(a_recs) > 1:
            rotations = [a_recs[k:] + a_recs[:k] + [r for r in rec.rr if r.rtype != QTYPE.A] for k in range(len(a_recs))]
        full, packed_rests = None, []
        for rot in rotations:
            rec.rr = rot
            packed = rec.pack()
            full = packed
            packed_rests.append(packed[12 + qlen:])
        flags = struct.unpack_from("!H", full, 2)[0]
        whole = Ready(flags, full[4:12], packed_rests, ans.rcode, qtype)
        trunc = DNSRecord(DNSHeader(id=0, qr=1, aa=ans.authoritative, ra=1, tc=1, rcode=ans.rcode),
                          q=DNSQuestion(qname, qtype, qclass))
        if edns:
            trunc.add_ar(EDNS0(udp_len=EDNS_SIZE))
        tp = trunc.pack()
        return whole, Ready(struct.unpack_from("!H", tp, 2)[0], tp[4:12], [tp[12 + qlen:]], ans.rcode, qtype)

    def handle(self, data: bytes, proto: str = "udp") -> bytes | None:
        """The response to one query (None: drop it, or it was handed to `forward`)."""
        t = time.perf_counter()
        if len(data) < 12:
            return None
        flags = struct.unpack_from("!H", data, 2)[0]
        if flags & 0x8000:
            return None  # a response: never answer those (loops)
        qd, an, ns, ar = struct.unpack_from("!HHHH", data, 4)
        opcode = (flags >> 11) & 0xF
        q = parse_question(data) if qd == 1 else None
        if q is None or opcode != 0:
            return self.error(data, RCODE.FORMERR if q is None else RCODE.NOTIMP, q)
        qend, qkey, qtype, qclass = q
        size = edns_size(data, qend, ar)
        if ar and size is None and not (ar == 1 and data[qend:qend + 1] == b"\x00"):
            try:
                DNSRecord.parse(data)  # something else in additional: check it parses at all
            except Exception:  # noqa: BLE001 - dnslib raises many types on garbage
                return self.error(data, RCODE.FORMERR, q)
        key = (qkey, qtype, qclass, size is not None)
        pair = self.ready.get(key)
        if pair is None:
            self.metrics.cache_misses += 1
            try:
                pair = self.build(qkey, qtype, qclass, size is not None)
            except (ValueError, UnicodeError):
                return self.error(data, RCODE.FORMERR, q)
            if pair is None:
                if self.forward is not None:
                    return self.forward(data, proto)
                return self.error(data, RCODE.SERVFAIL, q)
            self.ready[key] = pair
        else:
            self.metrics.cache_hits += 1
        whole, trunc = pair
        rest = whole.rest()
        limit = 65535 if proto == "tcp" else (size or 512)
        r = whole
        if qend + len(rest) > limit:
            r, rest = trunc, trunc.rests[0]
        out = data[:2] + struct.pack("!H", r.flags | (flags & 0x0110)) + r.counts + data[12:qend] + rest
        self.metrics.observe(proto, qtype, r.rcode, time.perf_counter() - t)
        return out

    def error(self, data: bytes, rcode: int, q) -> bytes:
        """A header-only answer (with the question when there is one), e.g. FORMERR."""
        flags = struct.unpack_from("!H", data, 2)[0]
        out_flags = 0x8000 | (flags & 0x7900) | 0x0080 | rcode
        question = data[12:q[0]] if q else b""
        self.metrics.observe("udp", q[2] if q else 0, rcode, 0.0)
        return data[:2] + struct.pack("!HHHHH", out_flags, 1 if q else 0, 0, 0, 0) + question


def _labels(wire: bytes) -> str:
    out, i = [], 0
    while wire[i]:
        ln = wire[i]
        out.append(wire[i + 1:i + 1 + ln].decode("latin-1"))
        i += 1 + ln
    return ".".join(out) + "."
