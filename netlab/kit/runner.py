"""Upstream's BoundedFrequencyRunner (k8s.io/kubernetes pkg/util/async), in asyncio: one function
run on request, but never more often than a token bucket of `burst` runs refilled one per
`min_interval` allows, and at least once every `max_interval` even when nobody asks.

    runner = BoundedFrequencyRunner("sync-runner", sync, min_interval=1.0, max_interval=30.0, burst=2)
    asyncio.create_task(runner.loop())
    runner.run()                 # "something changed": runs now, or as soon as the bucket allows
    runner.retry_after(1.0)      # run again within a second (unless a run comes sooner)

Requests that arrive while a run is not allowed are folded into one run, as upstream folds them:
`run()` never blocks and never queues more than one. `fn` may be a coroutine function; a run that
raises is logged and the loop goes on (upstream's fn cannot fail; a caller that wants a retry
asks with retry_after)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("netlab.kit.runner")


class TokenBucket:
    """flowcontrol's token bucket: `burst` tokens, refilled at `qps` a second, starting full."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.qps, self.burst, self.clock = qps, burst, clock
        self.tokens, self.at = float(burst), clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.qps)
        self.at = now

    def try_accept(self) -> bool:
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until the next token."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.qps


class BoundedFrequencyRunner:
    def __init__(self, name: str, fn: Callable[[], Any], min_interval: float, max_interval: float,
                 burst: int = 1, clock: Callable[[], float] = time.monotonic):
        if max_interval < min_interval:
            raise ValueError(f"{name}: max_interval ({max_interval}) must be >= min_interval ({min_interval})")
        if burst < 1:
            raise ValueError(f"{name}: burst must be at least 1")
        self.name, self.fn, self.clock = name, fn, clock
        self.min_interval, self.max_interval = min_interval, max_interval
        # min_interval 0: no limit at all (upstream's nullLimiter)
        self.limiter = TokenBucket(1 / min_interval, burst, clock) if min_interval > 0 else None
        self.last_run = -math.inf
        self.runs = 0
        self._wake = asyncio.Event()
        self._requested = False
        self._retry: float | None = None  # the shortest retry interval asked for since the last look
        self._due = math.inf              # the timer: when the next run falls due (clock time)

    def run(self) -> None:
        """Ask for a run; returns at once."""
        self._requested = True
        self._wake.set()

    def retry_after(self, interval: float) -> None:
        """Make sure a run happens no later than `interval` from now (rate limits still apply)."""
        self._retry = interval if self._retry is None else min(self._retry, interval)
        self._wake.set()

    def remaining(self) -> float:
        """Seconds until the timer fires."""
        return max(0.0, self._due - self.clock())

    async def loop(self) -> None:
        """Run until cancelled. The timer starts at max_interval, as upstream's Loop does."""
        self._due = self.clock() + self.max_interval
        while True:
            timeout = self.remaining()
            if not self._wake.is_set() and timeout > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout if math.isfinite(timeout) else None)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            if self._retry is not None:
                retry, self._retry = self._retry, None
                if retry < self.remaining():  # the retry applies only if sooner than the next run
                    self._due = self.clock() + retry
            if self._requested or self.clock() >= self._due:
                self._requested = False
                await self._try_run()

    async def _try_run(self) -> None:
        if self.limiter is None or self.limiter.try_accept():
            self.last_run = self.clock()
            self._due = self.last_run + self.max_interval
            self.runs += 1
            try:
                out = self.fn()
                if inspect.isawaitable(out):
                    await out
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop outlives one failed run
                log.exception("%s: run failed", self.name)
            return
        # not allowed now: the timer fires when the bucket next has a token, if that is sooner
        next_possible = max(self.limiter.wait_time(), self.min_interval - (self.clock() - self.last_run))
        if next_possible < self.remaining():
            self._due = self.clock() + next_possible
