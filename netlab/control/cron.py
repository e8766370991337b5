"""CronJob schedules as upstream reads them (robfig/cron's standard parser): five fields (minute,
hour, day of month, month, day of week, with names, ranges, lists and steps), the descriptors
@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly and `@every <duration>`, and an
optional `TZ=`/`CRON_TZ=` prefix. The parser's own error words are kept (they are what the API
server answers with); the next times come from croniter, in the schedule's time zone."""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
               "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                          "dec"))}
DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (min, max, names) of minute, hour, day of month, month, day of week
BOUNDS = ((0, 59, None), (0, 23, None), (1, 31, None), (1, 12, MONTHS), (0, 6, DAYS))
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")


class ScheduleError(ValueError):
    """A schedule the parser refuses, worded as robfig/cron words it."""


def local_zone() -> datetime.tzinfo:
    """The controller manager's own time zone (upstream schedules without a timeZone in it)."""
    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        try:
            name = str(Path("/etc/localtime").resolve()).split("/zoneinfo/", 1)[1]
        except (OSError, IndexError):
            name = ""
    try:
        return ZoneInfo(name) if name else datetime.timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return datetime.timezone.utc


def load_zone(name: str) -> datetime.tzinfo:
    """Go's time.LoadLocation: "" and "UTC" are UTC; raises ScheduleError("unknown time zone X")."""
    if name in ("", "UTC"):
        return datetime.timezone.utc
    if name == "Local":
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name}") from None


@dataclass
class Schedule:
    fields: str  # five fields, or "" for an @every schedule
    zone: datetime.tzinfo
    every: float = 0.0  # seconds, for @every

    def next(self, t: datetime.datetime) -> datetime.datetime:
        """The first activation strictly after `t` (an aware datetime), to the second."""
        if self.every:
            return t.replace(microsecond=0) + datetime.timedelta(seconds=self.every)
        start = t.astimezone(self.zone).replace(microsecond=0)
        try:
            return croniter(self.fields, start).get_next(datetime.datetime)
        except Exception as e:  # noqa: BLE001 - croniter finds no date (`0 0 31 2 *`)
            raise ScheduleError(str(e)) from None


def parse(spec: str, zone: datetime.tzinfo | None = None) -> Schedule:
    """cron.ParseStandard: the Schedule, or ScheduleError with the parser's message. Without a TZ=
    prefix the schedule runs in `zone` (default: the local zone, as upstream's controller does)."""
    if not spec:
        raise ScheduleError("empty spec string")
    zone = zone or local_zone()
    if spec.startswith("TZ=") or spec.startswith("CRON_TZ="):
        i, eq = spec.find(" "), spec.index("=")
        name = spec[eq + 1:i] if i >= 0 else spec[eq + 1:]
        try:
            zone = load_zone(name)
        except ScheduleError as e:
            raise ScheduleError(f"provided bad location {name}: {e}") from None
        spec = spec[i:].strip() if i >= 0 else ""
    if spec.startswith("@"):
        if spec.startswith("@every "):
            return Schedule("", zone, every=_every(spec))
        if spec not in DESCRIPTORS:
            raise ScheduleError(f"unrecognized descriptor: {spec}")
        return Schedule(DESCRIPTORS[spec], zone)
    fields = spec.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    normal = []
    for text, (lo, hi, names) in zip(fields, BOUNDS, strict=True):
        normal.append(",".join(_range(part, lo, hi, names) for part in text.split(",")))
    return Schedule(" ".join(normal), zone)


def parse_error(spec: str) -> str | None:
    """Why ParseStandard refuses `spec`, or None."""
    try:
        parse(spec, datetime.timezone.utc)
    except ScheduleError as e:
        return str(e)
    return None


def _every(spec: str) -> float:
    text = spec[len("@every "):]
    seconds = _go_duration(text)
    if seconds is None:
        raise ScheduleError(f'failed to parse duration {spec}: time: invalid duration "{text}"')
    return max(1.0, float(int(seconds)))  # robfig: at least a second, whole seconds


def _go_duration(text: str) -> float | None:
    """time.ParseDuration, in seconds."""
    s, sign = text, 1.0
    if s and s[0] in "+-":
        sign, s = (-1.0 if s[0] == "-" else 1.0), s[1:]
    if s == "0":
        return 0.0
    if not s:
        return None
    total, pos = 0.0, 0
    for m in _DURATION.finditer(s):
        if m.start() != pos or m.group(1) in ("", "."):
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total if pos == len(s) else None


def _number(text: str, names: dict[str, int] | None) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ScheduleError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    n = int(text)
    if n < 0:
        raise ScheduleError(f"negative number ({n}) not allowed: {text}")
    return n


def _range(expr: str, lo: int, hi: int, names: dict[str, int] | None) -> str:
    """robfig's getRange checks for one comma-separated part; returns it with names as numbers,
    in croniter's syntax."""
    range_step = expr.split("/")
    low_high = range_step[0].split("-")
    star = low_high[0] in ("*", "?")
    if star:
        start, end = lo, hi
    else:
        start = _number(low_high[0], names)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _number(low_high[1], names)
        else:
            raise ScheduleError(f"too many hyphens: {expr}")
    step = 1
    if len(range_step) == 2:
        step = _number(range_step[1], None)
        if len(low_high) == 1:
            end = hi  # "N/step" means "N-max/step"
    elif len(range_step) > 2:
        raise ScheduleError(f"too many slashes: {expr}")
    if start < lo:
        raise ScheduleError(f"beginning of range ({start}) below minimum ({lo}): {expr}")
    if end > hi:
        raise ScheduleError(f"end of range ({end}) above maximum ({hi}): {expr}")
    if start > end:
        raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ScheduleError(f"step of range should be a positive number: {expr}")
    if star and step == 1:
        return "*"
    if step > 1:
        return f"{start}-{end}/{step}"
    return str(start) if start == end else f"{start}-{end}"
