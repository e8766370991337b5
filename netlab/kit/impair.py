"""A link's impairments (what Mininet's TCLink offers, as netem and tbf make them): delay and jitter
in milliseconds, loss in percent, a rate as tc writes it (10mbit, 512kbit). Parsed from the cluster
file's `nodes[i].link`, the CLI's `netlab link` and the Python API alike; the kernel side (tc) is in
netlab.kit.net."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

_RATE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$")


class ImpairError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Impairment:
    delay_ms: float = 0
    jitter_ms: float = 0
    loss_pct: float = 0
    rate: str = ""  # tc's units: 10mbit, 512kbit; empty: no limit

    @property
    def none(self) -> bool:
        return not (self.delay_ms or self.jitter_ms or self.loss_pct or self.rate)

    def to_dict(self) -> dict[str, str]:
        out = {}
        if self.delay_ms:
            out["delay"] = f"{self.delay_ms:g}ms"
        if self.jitter_ms:
            out["jitter"] = f"{self.jitter_ms:g}ms"
        if self.loss_pct:
            out["loss"] = f"{self.loss_pct:g}%"
        if self.rate:
            out["rate"] = self.rate
        return out

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.to_dict().items()) or "none"


def _number(value: Any, unit: str, field: str, most: float | None = None) -> float:
    text = str(value).strip().removesuffix(unit).strip() if isinstance(value, str) else value
    try:
        n = float(text)
    except (TypeError, ValueError):
        raise ImpairError(f"{field}: expected a number of {'percent' if unit == '%' else unit}, like "
                          f"{'10%' if unit == '%' else '50' + unit}; got {value!r}") from None
    if n < 0 or (most is not None and n > most):
        raise ImpairError(f"{field}: {value!r} is out of range (0 to {most:g})" if most is not None
                          else f"{field}: {value!r} must not be negative")
    return n


def impairment(delay: Any = None, jitter: Any = None, loss: Any = None, rate: Any = None, where: str = "") -> Impairment:
    """From the cluster file's or the CLI's values: numbers, or strings with their unit (50ms, 10%)."""
    rate_s = "" if rate in (None, "", 0) else str(rate).strip().lower()
    if rate_s and not _RATE.match(rate_s):
        raise ImpairError(f"{where}rate: expected a rate as tc writes it, like 10mbit or 512kbit; got {rate!r}")
    imp = Impairment(
        delay_ms=_number(delay, "ms", f"{where}delay") if delay not in (None, "") else 0,
        jitter_ms=_number(jitter, "ms", f"{where}jitter") if jitter not in (None, "") else 0,
        loss_pct=_number(loss, "%", f"{where}loss", most=100) if loss not in (None, "") else 0,
        rate=rate_s,
    )
    if imp.jitter_ms and not imp.delay_ms:
        raise ImpairError(f"{where}jitter: needs a delay to vary around (netem's jitter is +- around the delay)")
    return imp


def from_dict(doc: Any, where: str) -> Impairment:
    if not isinstance(doc, dict):
        raise ImpairError(f"{where}: expected a mapping like {{delay: 50ms, loss: 10%}}")
    unknown = set(doc) - {"delay", "jitter", "loss", "rate"}
    if unknown:
        raise ImpairError(f"{where}.{sorted(unknown)[0]}: not a link setting (delay, jitter, loss, rate)")
    return impairment(doc.get("delay"), doc.get("jitter"), doc.get("loss"), doc.get("rate"), where=f"{where}.")
