"""`netlab ui`'s model and its answers to bad requests (the page itself, in a browser against a
real lab: tests/test_ui_lab.py)."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

from aiohttp.test_utils import TestClient, TestServer

from netlab.tools.ui import server


def _slice(svc: str, *eps: tuple[str, bool, str]) -> dict:
    return {"metadata": {"namespace": "default", "name": f"{svc}-abc", "labels": {"kubernetes.io/service-name": svc}},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}, "nodeName": "worker",
                           "targetRef": {"kind": "Pod", "namespace": "default", "name": pod}} for ip, ready, pod in eps]}


def test_a_service_with_its_endpoints_from_its_slices_only():
    svc = {"metadata": {"namespace": "default", "name": "web"},
           "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}], "selector": {"app": "web"}}}
    slices = [_slice("web", ("10.244.1.3", True, "web-1"), ("10.244.2.2", False, "web-2")),
              _slice("other", ("10.244.1.9", True, "other-1"))]
    s = server._service(svc, slices)
    assert s["name"] == "default/web" and s["type"] == "ClusterIP" and s["ports"] == ["80/TCP"]
    assert s["endpoints"] == [{"ip": "10.244.1.3", "ready": True, "pod": "default/web-1", "node": "worker"},
                              {"ip": "10.244.2.2", "ready": False, "pod": "default/web-2", "node": "worker"}]


def test_counters_are_the_kernels():
    c = server.counters(None)
    assert "lo" in c and all(isinstance(v, int) and v >= 0 for v in c["lo"])


def test_the_page_needs_nothing_from_outside_the_package():
    for f in server.STATIC.iterdir():
        text = f.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), f"{f.name} loads something from outside"
    assert (server.STATIC / "index.html").exists() and "/static/app.js" in (server.STATIC / "index.html").read_text()


def test_bad_requests_name_what_is_missing():
    lab = SimpleNamespace(cluster=SimpleNamespace(proxy_mode="iptables", nodes=[]))

    async def go():
        async with TestClient(TestServer(server.Ui(lab).app())) as c:
            r = await c.get("/api/rules")
            assert r.status == 400 and "NAMESPACE/NAME" in (await r.json())["error"]
            r = await c.post("/api/trace", json={})
            assert r.status == 400 and "src" in (await r.json())["error"]
            r = await c.get("/")
            assert r.status == 200 and "<title>netlab ui</title>" in await r.text()
            # what another site could send: a form post, or a name rebound to the loopback
            r = await c.post("/api/trace", data='{"src": "a", "dst": "b"}', headers={"Content-Type": "text/plain"})
            assert r.status == 415
            r = await c.get("/api/snapshot", headers={"Host": "evil.example:8765"})
            assert r.status == 403 and "127.0.0.1" in (await r.json())["error"]
    asyncio.run(go())
