"""The answer cache, bounded as CoreDNS's `cache` plugin bounds its own:

    cache [TTL] [ZONES...] {
        success CAPACITY [TTL] [MINTTL]
        denial CAPACITY [TTL] [MINTTL]
        keepttl
    }

Two kinds of entries, each holding at most CAPACITY answers (default 9984, CoreDNS's): `success`
(NOERROR with records) and `denial` (NXDOMAIN, NODATA, and what else is kept: REFUSED); a full
kind evicts its oldest entry. An entry lives for the answer's smallest TTL (a denial's: its SOA's
TTL and minimum), at most TTL (default 3600 for success, 1800 for denial; `cache 30` sets both)
and at least MINTTL (default 5); it is served with its TTLs counted down (unless `keepttl`).

Without the plugin in the Corefile, the same table (same bounds) only saves building an answer
twice: entries do not expire and TTLs are served as built, as if every query were answered anew.
In both cases a change to the cluster state drops every entry: a new Service resolves at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from coredns.corefile import CorefileError, Directive

CAPACITY = 9984
SUCCESS_TTL, DENIAL_TTL, MIN_TTL = 3600, 1800, 5


@dataclass
class Kind:
    capacity: int
    max_ttl: int
    min_ttl: int = MIN_TTL


@dataclass
class CacheConfig:
    enabled: bool = False  # the `cache` plugin is in the Corefile
    success: Kind = field(default_factory=lambda: Kind(CAPACITY, SUCCESS_TTL))
    denial: Kind = field(default_factory=lambda: Kind(CAPACITY, DENIAL_TTL))
    keepttl: bool = False
    zones: list[str] = field(default_factory=list)  # empty: the server block's


def _number(d: Directive, word: str, what: str, low: int = 0) -> int:
    if not word.isdigit() or int(word) < low:
        raise CorefileError(f"Corefile line {d.line}: cache: {what} must be a whole number >= {low}, not {word!r}")
    return int(word)


def _seconds(d: Directive, word: str, what: str) -> int:
    """A TTL: seconds, or a duration such as 30s, 5m, 1h."""
    units = {"s": 1, "m": 60, "h": 3600}
    if word[-1:] in units and word[:-1].isdigit():
        return int(word[:-1]) * units[word[-1]]
    return _number(d, word, what)


def parse(d: Directive | None) -> CacheConfig:
    cfg = CacheConfig()
    if d is None:
        return cfg
    cfg.enabled = True
    args = list(d.args)
    if args and (args[0].isdigit() or args[0][:-1].isdigit()):
        ttl = _seconds(d, args.pop(0), "TTL")
        cfg.success.max_ttl = cfg.denial.max_ttl = ttl
    cfg.zones = [z.lower().rstrip(".") + "." for z in args]
    for o in d.block:
        if o.name in ("success", "denial"):
            if not 1 <= len(o.args) <= 3:
                raise CorefileError(f"Corefile line {o.line}: cache: {o.name} CAPACITY [TTL] [MINTTL]")
            kind = getattr(cfg, o.name)
            kind.capacity = _number(o, o.args[0], "CAPACITY", 1)
            if len(o.args) > 1:
                kind.max_ttl = _seconds(o, o.args[1], "TTL")
            if len(o.args) > 2:
                kind.min_ttl = _seconds(o, o.args[2], "MINTTL")
        elif o.name == "keepttl":
            cfg.keepttl = True
        else:
            raise CorefileError(f"Corefile line {o.line}: cache: unknown or unsupported option {o.name!r} (netlab "
                                "serves success, denial and keepttl)")
    return cfg


class AnswerCache:
    """(question key) -> (answer, stored at, expires at, counted down, kind), with each kind's keys
    in insertion order for eviction. A lookup is one dict read (and, for entries that expire, a
    clock read): it is on the hot path."""

    def __init__(self, cfg: CacheConfig | None = None, clock=time.monotonic):
        self.cfg = cfg or CacheConfig()
        self.clock = clock
        self.entries: dict[Any, tuple[Any, float, float, bool, str]] = {}
        self.order: dict[str, OrderedDict[Any, None]] = {"success": OrderedDict(), "denial": OrderedDict()}
        self.lock = threading.Lock()  # UDP workers are threads
        self.generation = 0  # counts clear()s: an answer built before one is not kept after it

    def get(self, key: Any) -> tuple[Any, int] | None:
        """The answer for `key` and its age in whole seconds (0 when not counted down), if cached."""
        hit = self.entries.get(key)
        if hit is None:
            return None
        value, stored, expires, counted, kind = hit
        if not counted:
            return value, 0
        now = self.clock()
        if now >= expires:
            with self.lock:
                if self.entries.get(key) is hit:
                    del self.entries[key]
                    self.order[kind].pop(key, None)
            return None
        return value, (0 if self.cfg.keepttl else int(now - stored))

    def put(self, key: Any, value: Any, kind: str, ttl: int, qname: str = ".", generation: int | None = None) -> None:
        """Keep `value` (an answer whose smallest TTL is `ttl`) as `kind`, evicting the oldest
        entry of that kind when it is full. Outside the plugin's zones (or without the plugin)
        it does not expire and is served as built. With `generation` (read before the answer
        was built), nothing is kept if the cache was cleared since: the answer may be stale."""
        spec: Kind = getattr(self.cfg, kind)
        now = self.clock()
        counted = self.cfg.enabled and self.covers(qname)
        life = max(spec.min_ttl, min(ttl, spec.max_ttl)) if counted else float("inf")
        order = self.order[kind]
        with self.lock:
            if generation is not None and generation != self.generation:
                return
            old = self.entries.pop(key, None)
            if old is not None:
                self.order[old[4]].pop(key, None)
            while len(order) >= spec.capacity:
                gone, _ = order.popitem(last=False)
                self.entries.pop(gone, None)
            self.entries[key] = (value, now, now + life, counted, kind)
            order[key] = None

    def clear(self) -> None:
        with self.lock:
            self.generation += 1
            self.entries = {}
            for order in self.order.values():
                order.clear()

    def size(self, kind: str) -> int:
        return len(self.order[kind])

    def covers(self, qname: str) -> bool:
        """Whether the plugin's zones (if it names any) hold `qname`."""
        if not self.cfg.zones:
            return True
        q = qname.lower()
        return any(z == "." or q == z or q.endswith("." + z) for z in self.cfg.zones)
