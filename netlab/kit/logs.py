"""Logging for every component's main: one format, and a rate limit for messages that a peer can
cause at will (a malformed packet per packet must not fill the disk).

    logs.setup()                               # in main(), before anything logs
    limited = logs.RateLimited(log, per_second=1)
    limited.warning("malformed query from %s", addr)   # the rest within the second are counted,
                                                      # and the count is said with the next one
"""

from __future__ import annotations

import logging
import threading
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT)


class RateLimited:
    """At most `burst` messages per `period` seconds through `logger` (per key: the format string),
    the ones dropped counted and reported with the next that passes. Thread-safe: the DNS server
    logs from its UDP worker threads."""

    def __init__(self, logger: logging.Logger, period: float = 1.0, burst: int = 1,
                 clock=time.monotonic):
        self.logger, self.period, self.burst, self.clock = logger, period, burst, clock
        self._state: dict[str, list] = {}  # key -> [window start, sent in window, dropped]
        self._lock = threading.Lock()

    def log(self, level: int, msg: str, *args: object) -> bool:
        """Log unless over the limit; returns whether it was logged."""
        now = self.clock()
        with self._lock:
            st = self._state.setdefault(msg, [now, 0, 0])
            if now - st[0] >= self.period:
                st[0], st[1] = now, 0
            if st[1] >= self.burst:
                st[2] += 1
                return False
            st[1] += 1
            dropped, st[2] = st[2], 0
        if dropped:
            msg += f" ({dropped} more like it not logged)"
        self.logger.log(level, msg, *args)
        return True

    def warning(self, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, msg, *args)

    def error(self, msg: str, *args: object) -> bool:
        return self.log(logging.ERROR, msg, *args)

    def info(self, msg: str, *args: object) -> bool:
        return self.log(logging.INFO, msg, *args)
