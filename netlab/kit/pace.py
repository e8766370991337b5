"""How much slower than an ordinary machine this one runs netlab: NETLAB_SLOWDOWN, a factor (default
1). The test VM sets it where it runs under emulation (TCG: some 4-10 times slower), so that the
waits bounding a lab's start and a test's conditions stretch with the machine instead of failing."""

from __future__ import annotations

import os


def slowdown() -> float:
    try:
        return max(1.0, float(os.environ.get("NETLAB_SLOWDOWN", "1")))
    except ValueError:
        return 1.0


def scaled(seconds: float) -> float:
    """`seconds` of an ordinary machine, on this one."""
    return seconds * slowdown()
