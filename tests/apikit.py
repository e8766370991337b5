"""A control plane for tests: the API server (on SQLite or a real etcd the test starts), and
optionally the controller manager and scheduler, as separate processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from netlab.lab import kubeconfig
from netlab.kit.cluster import Cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def etcd() -> Iterator[str]:
    """Debian's etcd on loopback, on free ports, in a temporary data directory."""
    data = tempfile.mkdtemp(prefix="nlt-etcd-")
    client, peer = free_port(), free_port()
    proc = subprocess.Popen(["etcd", "--data-dir", data, "--listen-client-urls", f"http://127.0.0.1:{client}",
                             "--advertise-client-urls", f"http://127.0.0.1:{client}",
                             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-cluster", f"default=http://127.0.0.1:{peer}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{client}/health")
        yield f"etcd://127.0.0.1:{client}"
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def wait_http(url: str, timeout: float = 20, ctx=None) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1, context=ctx).read()
            return
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


class ControlPlane:
    def __init__(self, name: str, store: str = "sqlite", components: tuple[str, ...] = ()):
        self.cluster = Cluster.from_dict({"store": store}, name=name)
        self.cluster.save()
        self.kubeconfig = kubeconfig.bootstrap(self.cluster)
        self.port = int((self.cluster.state_dir / "apiserver.port").read_text())
        self.token = (self.cluster.state_dir / "token").read_text().strip()
        self.url = f"https://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.components = components
        self.home = Path(tempfile.mkdtemp(prefix="nlt-home-"))

    def start_apiserver(self) -> None:
        self._start("apiserver", "netlab.control.apiserver", "--state-dir", str(self.cluster.state_dir))
        ctx = ssl.create_default_context(cafile=str(self.cluster.state_dir / "pki" / "ca.crt"))
        wait_http(self.url + "/healthz", ctx=ctx)

    def stop(self, name: str) -> None:
        p = self.procs.pop(name)
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def _start(self, name: str, module: str, *args: str) -> None:
        log = open(self.cluster.state_dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", module, *args], stdout=log, stderr=log)
        log.close()

    def __enter__(self) -> ControlPlane:
        self.start_apiserver()
        kc = str(self.kubeconfig)
        if "controllers" in self.components:
            self._start("controllers", "netlab.control.controllers", "--kubeconfig", kc,
                        "--allocate-node-cidrs", "--cluster-cidr", "10.244.0.0/16")
        if "scheduler" in self.components:
            self._start("scheduler", "netlab.control.scheduler", "--kubeconfig", kc)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in list(self.procs):
            self.stop(name)
        shutil.rmtree(self.cluster.state_dir, ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30
                ) -> subprocess.CompletedProcess:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), HOME=str(self.home))
        p = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {p.stderr}")
        return p

    def raw(self, method: str, path: str, data: bytes | None = None,
            content_type: str = "application/json") -> tuple[int, bytes]:
        """One request with the lab's token: (status, the body's bytes)."""
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type})
        ctx = ssl.create_default_context(cafile=str(self.cluster.state_dir / "pki" / "ca.crt"))
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def api(self, method: str, path: str, body=None, content_type: str = "application/json") -> tuple[int, dict | str]:
        """One request with a JSON body: (status, the body as JSON, or text)."""
        status, raw = self.raw(method, path, None if body is None else json.dumps(body).encode(), content_type)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def log(self, name: str) -> str:
        return (self.cluster.state_dir / f"{name}.log").read_text()
