"""CoreDNS's /ready as upstream's ready plugin reports the kubernetes plugin: netlab-dns against a
stand-in API server on loopback is ready once its informers have synced, unready while it cannot
watch (the API server gone: its answers may be stale), and ready again once they have relisted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from aiohttp import web

from tests.test_dns import free_port

PATHS = ["/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/pods", "/api/v1/namespaces"]


class StandIn:
    """An API server that lists nothing and holds watches open, in a thread of its own."""

    def __init__(self, port: int):
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            return web.json_response({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                      "items": []})
        resp = web.StreamResponse()
        await resp.prepare(request)
        await asyncio.sleep(3600)
        return resp

    def start(self) -> None:
        async def go():
            app = web.Application()
            for p in PATHS:
                app.router.add_get(p, self.handle)
            self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()
        asyncio.run_coroutine_threadsafe(go(), self.loop).result(5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)


def ready(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def until(cond, timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_ready_only_while_the_informers_are_in_step(tmp_path):
    api_port, dns_port, ready_port = free_port(), free_port(), free_port()
    api = StandIn(api_port)
    api.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{api_port}"}}}}]
users: [{{name: u, user: {{}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    conf = tmp_path / "Corefile"
    conf.write_text(f".:53 {{\n    ready 127.0.0.1:{ready_port}\n    kubernetes cluster.local {{\n"
                    f"        kubeconfig {kubeconfig}\n    }}\n}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "coredns", "--conf", str(conf), "--listen", f"127.0.0.1:{dns_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert until(lambda: ready(ready_port) == 200), "never ready"
        api.stop()  # the watches break and every relist fails
        assert until(lambda: ready(ready_port) == 503), "still ready without an API server"
        time.sleep(1)
        assert ready(ready_port) == 503 and proc.poll() is None
        api.start()
        assert until(lambda: ready(ready_port) == 200, timeout=15), "not ready again after the API server came back"
    finally:
        proc.kill()
        _, err = proc.communicate()
        api.loop.call_soon_threadsafe(api.loop.stop)
    assert "watch broke" in err.decode() or "watch failed" in err.decode(), err.decode()[-2000:]
