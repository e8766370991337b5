"""The DNS server's answering engine: answers kept ready as wire bytes.

The hot path does not build messages: it reads the query's header and question, looks the
question up in the answer cache (coredns/cache.py: bounded, entries built once with dnslib,
dropped whenever the cluster state changes), and sends back the query's ID, the ready header
(with the query's RD bit), the query's own question bytes (case kept) and the ready answer
sections, their TTLs counted down with the entry's age. EDNS0 payload sizes are honoured; an
answer too large for UDP goes out truncated (TC) and whole over TCP. Malformed queries (a name
longer than 255 bytes included) get FORMERR, or are dropped when not even a header is there.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import struct
import threading
import time

from dnslib import EDNS0, QTYPE, RCODE, DNSHeader, DNSQuestion, DNSRecord

from coredns.cache import AnswerCache, CacheConfig
from coredns.records import Kubernetes
from netlab.kit.logs import RateLimited
from netlab.kit.metrics import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

log = logging.getLogger("netlab.dns")
limited = RateLimited(log, period=10.0)  # what a sender can cause per packet is said once in 10 s
EDNS_SIZE = 1232  # what we advertise, as CoreDNS does
MAX_NAME = 255    # a name's wire length (RFC 1035 2.3.4)


class Metrics:
    """CoreDNS's metric names; counters kept as plain dict increments on the hot path and handed
    to prometheus_client as a collector (no lock per query)."""

    BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024]
    SERVER = "dns://:53"

    def __init__(self, zone: str = "."):
        self.zone = zone
        self.requests: dict[tuple, int] = {}
        self.responses: dict[int, int] = {}
        self.cache_hits = {"success": 0, "denial": 0}
        self.cache_misses = 0
        self.durations = [0] * (len(self.BUCKETS) + 1)
        self.duration_sum = 0.0
        self.cache: AnswerCache | None = None  # its sizes: coredns_cache_entries

    def observe(self, proto: str, qtype: int, rcode: int, seconds: float) -> None:
        k = (proto, qtype)
        self.requests[k] = self.requests.get(k, 0) + 1
        self.responses[rcode] = self.responses.get(rcode, 0) + 1
        self.duration_sum += seconds
        self.durations[bisect.bisect_left(self.BUCKETS, seconds)] += 1

    def collect(self):
        zone, server = self.zone, self.SERVER
        req = CounterMetricFamily("coredns_dns_requests_total",
                                  "Counter of DNS requests made per zone, protocol and family.",
                                  labels=["server", "zone", "view", "proto", "family", "type"])
        for (proto, qtype), n in sorted(self.requests.items()):
            req.add_metric([server, zone, "", proto, "1", str(QTYPE.get(qtype, qtype))], n)
        yield req
        resp = CounterMetricFamily("coredns_dns_responses_total", "Counter of response status codes.",
                                   labels=["server", "zone", "view", "rcode", "plugin"])
        for rcode, n in sorted(self.responses.items()):
            resp.add_metric([server, zone, "", str(RCODE.get(rcode, rcode)), ""], n)
        yield resp
        hist = HistogramMetricFamily("coredns_dns_request_duration_seconds",
                                     "Histogram of the time (in seconds) each request took.",
                                     labels=["server", "zone", "view", "type"])
        acc, buckets = 0, []
        for b, n in zip(self.BUCKETS, self.durations, strict=False):
            acc += n
            buckets.append((str(b), acc))
        buckets.append(("+Inf", sum(self.durations)))
        hist.add_metric([server, zone, "", "other"], buckets, self.duration_sum)
        yield hist
        hits = CounterMetricFamily("coredns_cache_hits_total", "The count of cache hits.",
                                   labels=["server", "type", "view", "zones"])
        for kind, n in self.cache_hits.items():
            hits.add_metric([server, kind, "", zone], n)
        yield hits
        misses = CounterMetricFamily("coredns_cache_misses_total", "The count of cache misses.",
                                     labels=["server", "view", "zones"])
        misses.add_metric([server, "", zone], self.cache_misses)
        yield misses
        if self.cache is not None:
            entries = GaugeMetricFamily("coredns_cache_entries", "The number of elements in the cache.",
                                        labels=["server", "type", "view", "zones"])
            for kind in ("success", "denial"):
                entries.add_metric([server, kind, "", zone], self.cache.size(kind))
            yield entries


class Ready:
    """A ready answer: header bytes after the ID, and the sections after the question; several
    rotations of the answer section when `loadbalance` shuffles A records. `ttls`: where each
    record's TTL is in each rotation, to serve them counted down; `aged`: the last age served."""

    __slots__ = ("flags", "counts", "rests", "rotor", "rcode", "qtype", "ttls", "aged")

    def __init__(self, flags: int, counts: bytes, rests: list[bytes], rcode: int, qtype: int):
        self.flags, self.counts, self.rests, self.rcode, self.qtype = flags, counts, rests, rcode, qtype
        self.rotor = itertools.cycle(range(len(rests)))
        records = sum(struct.unpack("!HHH", counts[2:8]))
        self.ttls = [ttl_offsets(r, records) for r in rests]
        self.aged: tuple[int, list[bytes]] = (0, rests)

    def min_ttl(self) -> int:
        ttls = [struct.unpack_from("!I", self.rests[0], o)[0] for o in self.ttls[0]]
        return min(ttls) if ttls else 0

    def rest(self, age: int = 0) -> bytes:
        rests = self.rests if age <= 0 else self._aged(age)
        return rests[next(self.rotor)] if len(rests) > 1 else rests[0]

    def _aged(self, age: int) -> list[bytes]:
        done, rests = self.aged
        if done != age:
            rests = []
            for rest, offsets in zip(self.rests, self.ttls, strict=True):
                b = bytearray(rest)
                for o in offsets:
                    ttl = struct.unpack_from("!I", b, o)[0]
                    struct.pack_into("!I", b, o, max(0, ttl - age))
                rests.append(bytes(b))
            self.aged = (age, rests)
        return rests


def ttl_offsets(rest: bytes, records: int) -> list[int]:
    """Where the TTL of each of `records` resource records (not OPT's: it holds flags) is in
    `rest`, the sections after the question."""
    out, i = [], 0
    for _ in range(records):
        while True:  # the owner name: labels, ending in a zero or a compression pointer
            ln = rest[i]
            if ln & 0xC0 == 0xC0:
                i += 2
                break
            i += 1 + ln
            if ln == 0:
                break
        rtype = struct.unpack_from("!H", rest, i)[0]
        if rtype != QTYPE.OPT:
            out.append(i + 4)
        rdlen = struct.unpack_from("!H", rest, i + 8)[0]
        i += 10 + rdlen
    return out


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
    if i - 12 > MAX_NAME or i + 4 > n:
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
    def __init__(self, kube: Kubernetes, loadbalance: bool = False, forward=None, metrics: Metrics | None = None,
                 cache: CacheConfig | None = None):
        self.kube, self.loadbalance, self.forward = kube, loadbalance, forward
        self.metrics = metrics or Metrics()
        self.ready = AnswerCache(cache)
        self.metrics.cache = self.ready
        self.lock = threading.Lock()

    def configure_cache(self, cfg: CacheConfig) -> None:
        """A new `cache` configuration (a reload): entries made under the old one go."""
        self.ready = AnswerCache(cfg)
        self.metrics.cache = self.ready

    def invalidate(self) -> None:
        self.ready.clear()

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
            return self.error(data, RCODE.FORMERR if q is None else RCODE.NOTIMP, q, proto)
        qend, qkey, qtype, qclass = q
        size = edns_size(data, qend, ar)
        if ar and size is None and not (ar == 1 and data[qend:qend + 1] == b"\x00"):
            try:
                DNSRecord.parse(data)  # something else in additional: check it parses at all
            except Exception:  # noqa: BLE001 - dnslib raises many types on garbage
                return self.error(data, RCODE.FORMERR, q, proto)
        key = (qkey, qtype, qclass, size is not None)
        cache = self.ready  # (a reload may replace it meanwhile)
        generation = cache.generation
        hit = cache.get(key)
        if hit is None:
            self.metrics.cache_misses += 1
            try:
                pair = self.build(qkey, qtype, qclass, size is not None)
            except (ValueError, UnicodeError):
                return self.error(data, RCODE.FORMERR, q, proto)
            except Exception as e:  # noqa: BLE001 - a query the records cannot answer: SERVFAIL, said once
                limited.error("cannot answer %s: %s: %s", _labels(qkey), type(e).__name__, e)
                return self.error(data, RCODE.SERVFAIL, q, proto)
            if pair is None:
                if self.forward is not None:
                    return self.forward(data, proto)
                return self.error(data, RCODE.SERVFAIL, q, proto)
            whole, trunc = pair
            # success: NOERROR with answers; denial: NXDOMAIN, NODATA and the rest kept (REFUSED)
            kind = "success" if whole.rcode == RCODE.NOERROR and whole.counts[2:4] != b"\0\0" else "denial"
            cache.put(key, (whole, trunc, kind), kind, whole.min_ttl(), _labels(qkey), generation)
            age = 0
        else:
            (whole, trunc, kind), age = hit
            self.metrics.cache_hits[kind] += 1
        rest = whole.rest(age)
        limit = 65535 if proto == "tcp" else (size or 512)
        r = whole
        if qend + len(rest) > limit:
            r, rest = trunc, trunc.rests[0]
        out = data[:2] + struct.pack("!H", r.flags | (flags & 0x0110)) + r.counts + data[12:qend] + rest
        self.metrics.observe(proto, qtype, r.rcode, time.perf_counter() - t)
        return out

    def error(self, data: bytes, rcode: int, q, proto: str = "udp") -> bytes:
        """A header-only answer (with the question when there is one), e.g. FORMERR."""
        flags = struct.unpack_from("!H", data, 2)[0]
        out_flags = 0x8000 | (flags & 0x7900) | 0x0080 | rcode
        question = data[12:q[0]] if q else b""
        self.metrics.observe(proto, q[2] if q else 0, rcode, 0.0)
        return data[:2] + struct.pack("!HHHHH", out_flags, 1 if q else 0, 0, 0, 0) + question


def _labels(wire: bytes) -> str:
    out, i = [], 0
    while wire[i]:
        ln = wire[i]
        out.append(wire[i + 1:i + 1 + ln].decode("latin-1"))
        i += 1 + ln
    return ".".join(out) + "."
