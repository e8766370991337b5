"""The shared daemon kit: the bounded-frequency runner (upstream's BoundedFrequencyRunner
semantics: burst, min interval, max interval, retry_after), the rate-limited log, the side
listener and Prometheus text."""

from __future__ import annotations

import asyncio
import logging
import urllib.request

import pytest

from netlab.kit import logs, serving
from netlab.kit.metrics import Registry, exponential_buckets
from netlab.kit.runner import BoundedFrequencyRunner


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_runner_burst_then_min_interval_then_max_interval():
    async def main():
        clock, ran = Clock(), []
        r = BoundedFrequencyRunner("t", lambda: ran.append(clock.t), min_interval=1.0, max_interval=10.0, burst=2,
                                   clock=clock)
        task = asyncio.create_task(r.loop())
        await _settle()
        assert ran == []  # nothing until asked (or max_interval)
        r.run()
        await _settle()
        r.run()
        await _settle()
        assert ran == [1000.0, 1000.0]  # the burst
        r.run()
        r.run()  # folded into the same pending run
        await _settle()
        assert len(ran) == 2 and 0 < r.remaining() <= 1.0  # waits for a token
        clock.t += 1.0
        r._wake.set()  # (the timer's wake-up, at the fake clock's time)
        await _settle()
        assert ran == [1000.0, 1000.0, 1001.0]
        clock.t += 10.0  # nobody asks: max_interval runs it anyway
        r._wake.set()
        await _settle()
        assert ran[-1] == 1011.0 and len(ran) == 4
        assert r.remaining() == pytest.approx(10.0)
        r.retry_after(3.0)  # sooner than the timer: taken
        await _settle()
        assert r.remaining() == pytest.approx(3.0)
        r.retry_after(7.0)  # later than the timer: ignored
        await _settle()
        assert r.remaining() == pytest.approx(3.0)
        task.cancel()
    asyncio.run(main())


def test_runner_real_time_batches_a_burst_of_requests():
    async def main():
        ran = []

        async def fn():
            ran.append(asyncio.get_running_loop().time())
            await asyncio.sleep(0.01)
        r = BoundedFrequencyRunner("t", fn, min_interval=0.2, max_interval=60, burst=1)
        task = asyncio.create_task(r.loop())
        for _ in range(50):
            r.run()
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
        task.cancel()
        assert 2 <= len(ran) <= 3  # 50 requests over 0.25 s: one run now, the rest in one or two
        assert all(b - a >= 0.19 for a, b in zip(ran, ran[1:], strict=False))
    asyncio.run(main())


def test_runner_survives_a_failing_run(caplog):
    async def main():
        n = []

        def fn():
            n.append(1)
            raise RuntimeError("boom")
        r = BoundedFrequencyRunner("t", fn, min_interval=0, max_interval=60)
        task = asyncio.create_task(r.loop())
        r.run()
        await _settle()
        r.run()
        await _settle()
        task.cancel()
        return len(n)
    assert asyncio.run(main()) == 2 and "t: run failed" in caplog.text


def test_rate_limited_log_counts_what_it_drops(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    limited = logs.RateLimited(logging.getLogger("t"), period=1.0, burst=1, clock=clock)
    assert limited.warning("bad packet from %s", "a")
    assert not any(limited.warning("bad packet from %s", "b") for _ in range(99))
    clock.t += 1.0
    assert limited.warning("bad packet from %s", "c")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["bad packet from a", "bad packet from c (99 more like it not logged)"]


def test_side_listener_serves_probes_and_metrics():
    reg = Registry()
    reg.counter("kubeproxy_sync_proxy_rules_iptables_restore_failures_total", "Cumulative proxy iptables restore "
                "failures").inc()
    reg.histogram("kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds",
                  exponential_buckets(0.001, 2, 15)).observe(0.003)
    state = {"ok": False}

    async def main():
        runner = await serving.serve("127.0.0.1:0", {"/ready": serving.check(lambda: state["ok"]),
                                                    "/metrics": serving.metrics(reg)})
        port = runner.addresses[0][1]

        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    return r.status, r.read().decode(), r.headers["Content-Type"]
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode(), ""
        out = [await asyncio.to_thread(get, "/ready")]
        state["ok"] = True
        out += [await asyncio.to_thread(get, "/ready"), await asyncio.to_thread(get, "/metrics")]
        await runner.cleanup()
        return out
    (s1, b1, _), (s2, b2, _), (s3, text, ctype) = asyncio.run(main())
    assert (s1, b1, s2, b2) == (503, "not ready", 200, "OK")
    assert s3 == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1.0" in text
    assert 'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.004"} 1.0' in text
    assert 'le="16.384"' in text and "_created" not in text
