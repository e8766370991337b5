"""Containers' logs as the kubelet serves them (`GET /containerLogs/...`): the CRI log files the
spawner's relays write (`<RFC3339Nano> stdout|stderr F|P <content>`, one record a line) read back
with the PodLogOptions kubectl sends: previous, tailLines, limitBytes, sinceSeconds or sinceTime,
timestamps, follow (until the container's log is complete: its relay has let go of the file's
lock once the container's last writer is gone)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import fcntl
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import BinaryIO

POLL = 0.1  # how often a follow looks for more


class LogError(Exception):
    """The log cannot be served; `code` is the HTTP status upstream's kubelet answers with."""

    def __init__(self, message: str, code: int = 400):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass
class Options:
    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_ns: int | None = None  # records before this time (ns since the epoch) are left out
    timestamps: bool = False

    @classmethod
    def from_query(cls, q, now_ns: int | None = None) -> Options:
        def flag(name: str) -> bool:
            return q.get(name, "false").lower() in ("1", "true")

        def number(name: str) -> int | None:
            if q.get(name) in (None, ""):
                return None
            try:
                return int(q[name])
            except ValueError:
                raise LogError(f"{name}: invalid value {q[name]!r}") from None
        since = None
        if number("sinceSeconds") is not None:
            since = (now_ns if now_ns is not None else time.time_ns()) - number("sinceSeconds") * 1_000_000_000
        elif q.get("sinceTime"):
            since = parse_time(q["sinceTime"].encode())
            if since is None:
                raise LogError(f"sinceTime: invalid value {q['sinceTime']!r}")
        return cls(flag("follow"), flag("previous"), number("tailLines"), number("limitBytes"), since, flag("timestamps"))


def parse_time(ts: bytes) -> int | None:
    """RFC 3339 with up to nanoseconds -> ns since the epoch."""
    try:
        text = ts.decode()
        main, _, frac_zone = text.partition(".")
        if frac_zone:
            digits = len(frac_zone) - len(frac_zone.lstrip("0123456789"))
            frac, zone = frac_zone[:digits], frac_zone[digits:]
        else:
            main, frac, zone = text[:19], "", text[19:]
        dt = datetime.datetime.fromisoformat(main + (zone.replace("Z", "+00:00") or "+00:00"))
        return int(dt.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
    except (ValueError, UnicodeDecodeError):
        return None


def parse(line: bytes) -> tuple[bytes, int, bool, bytes] | None:
    """One CRI log record: (timestamp, its time in ns, full line?, content); None if malformed."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3 or parts[2] not in (b"F", b"P"):
        return None
    ts = parse_time(parts[0])
    if ts is None:
        return None
    return parts[0], ts, parts[2] == b"F", parts[3] if len(parts) > 3 else b""


def render(records: Iterable[bytes], opts: Options) -> bytes:
    """What the records show as, with the options that apply per record (since, timestamps)."""
    out = []
    for line in records:
        rec = parse(line)
        if rec is None or (opts.since_ns is not None and rec[1] < opts.since_ns):
            continue
        stamp, _, full, content = rec
        out.append((stamp + b" " if opts.timestamps else b"") + content + (b"\n" if full else b""))
    return b"".join(out)


def tail(records: list[bytes], n: int) -> list[bytes]:
    """The records of the last `n` lines (a line logged in parts, P records then an F, is one)."""
    if n <= 0:
        return []
    start, lines = len(records), 0
    for i in range(len(records) - 1, -1, -1):
        ends_a_line = records[i].split(b" ", 3)[2:3] != [b"P"] or i == len(records) - 1
        if ends_a_line:
            if lines == n:
                break
            lines += 1
        start = i
    return records[start:]


def complete(f: BinaryIO) -> bool:
    """Whether nobody writes this log any more (its relay held an exclusive flock while it did)."""
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return True


class Limit:
    """limitBytes: the bytes still to send (None: no limit)."""

    def __init__(self, n: int | None):
        self.left = n

    def take(self, data: bytes) -> bytes:
        if self.left is None:
            return data
        data = data[:self.left]
        self.left -= len(data)
        return data

    @property
    def reached(self) -> bool:
        return self.left is not None and self.left <= 0


async def serve(path: os.PathLike, opts: Options, write: Callable[[bytes], Awaitable[None]],
                stop: Callable[[], bool], plain: bool = False, span: tuple[int, int | None] = (0, None)) -> None:
    """Send the log at `path` through `write`; with follow, keep sending what is added until the
    log is complete or `stop()` (the pod is gone, the client went away). `plain`: a log of plain
    lines (a node agent's, as the supervisor keeps it), only its `span` (start, end or None), not
    timed, so sinceSeconds and timestamps do not apply, and never complete while its pod is there."""
    limit = Limit(opts.limit_bytes)
    show = (lambda records, _opts: b"".join(records)) if plain else render
    with open(path, "rb") as f:
        f.seek(span[0])
        data = f.read() if span[1] is None else f.read(max(0, span[1] - span[0]))
        records = data.splitlines(keepends=True)
        rest = records.pop() if records and not records[-1].endswith(b"\n") else b""  # a record being written
        if opts.tail_lines is not None:
            records = (records[-opts.tail_lines:] if opts.tail_lines > 0 else []) if plain \
                else tail(records, opts.tail_lines)
        chunk = limit.take(show(records, opts))
        if chunk:
            await write(chunk)
        if not opts.follow or span[1] is not None:
            return
        while not limit.reached:
            more = f.read()
            if not more:
                if stop():
                    return
                done = not plain and complete(f)  # then a last read takes what was written before it let go
                more = f.read()
                if not more and done:
                    return
                if not more:
                    await asyncio.sleep(POLL)
                    continue
            records = (rest + more).splitlines(keepends=True)
            rest = records.pop() if not records[-1].endswith(b"\n") else b""
            chunk = limit.take(show(records, opts))
            if chunk:
                await write(chunk)
