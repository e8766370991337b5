"""exec, port-forward and the proxy subresources through the API server (a real one, on loopback)
and the real kubelet API (netlab.node.kubelet.server) over a pod worker made by hand, driven by
kubectl 1.27 and 1.30 (SPDY/3.1), kubectl 1.33 (WebSocket, and port-forward's SPDY tunnelled in
WebSocket), the official Python client, and the small SPDY client of netlab.kit.spdy. The pod's
"container" is a `sleep` of the test's own namespaces; its port is an HTTP server of the test on
127.0.0.1 (the pod's IP here). Exec enters namespaces: root."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import shutil
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from netlab.api.client import Client
from netlab.kit import spdy
from netlab.node.kubelet import runtime
from tests.apikit import ControlPlane, free_port
from tests.test_kubelet_api import NODE, FakeNode

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="exec enters the container's namespaces: root")

SDK = "/usr/lib/google-cloud-sdk/bin"
SPDY_EXEC = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}  # kubectl 1.30+'s fallback, what 1.27-1.29 speak
SPDY_FORWARD = {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}


def cases(*items):
    return [pytest.param(v, env, id=f"{v}-{name}") for v, env, name in items if os.path.exists(f"{SDK}/kubectl.{v}")]


EXEC = cases(("1.27", {}, "spdy"), ("1.30", SPDY_EXEC, "spdy"), ("1.30", {}, "websocket"), ("1.33", {}, "websocket"))
FORWARD = cases(("1.27", {}, "spdy"), ("1.30", {}, "spdy"), ("1.33", SPDY_FORWARD, "spdy"),
                ("1.33", {}, "spdy-in-websocket"))


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = f"hello from {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("streaming")
    web = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    port = web.server_address[1]
    echo = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=until_eof, args=(echo,), daemon=True).start()
    with ControlPlane("nltks") as cp:
        node = FakeNode(tmp, cp.token, cp.cluster.layout.ca_cert, cp.cluster.layout.ca_key)
        sleeper = subprocess.Popen(["sleep", "600"])
        try:
            async def setup():
                async with Client.from_kubeconfig(cp.kubeconfig) as c:
                    n = await c.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
                    n["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                   "daemonEndpoints": {"kubeletEndpoint": {"Port": node.port}}}
                    await c.update("nodes", n, subresource="status")
                    pod = await c.create("pods", {
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "p"}},
                        "spec": {"nodeName": NODE, "containers": [
                            {"name": "c", "image": "busybox", "ports": [{"name": "web", "containerPort": port}]}]}})
                    pod["status"] = {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}
                    pod = await c.update("pods", pod, subresource="status")
                    await c.create("services", {
                        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"},
                        "spec": {"selector": {"app": "p"}, "ports": [{"name": "http", "port": 80, "targetPort": port}]}})
                    await c.create("endpoints", {
                        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "s", "namespace": "default"},
                        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": port}]}]})
                    stopped = await c.create("pods", {
                        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stopped", "namespace": "default"},
                        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]}})
                    return pod, stopped
            pod, stopped = asyncio.run(setup())
            node.add(stopped)
            w = node.add(pod)
            c = w.containers[0]
            c.proc = runtime.Process(sleeper.pid, runtime.proc_start(sleeper.pid))
            c.state, c.env = {"running": {"startedAt": "2024-01-01T00:00:00Z"}}, {"PATH": os.environ["PATH"]}
            yield SimpleNamespace(cp=cp, node=node, port=port, echo=echo.getsockname()[1])
        finally:
            sleeper.kill()
            sleeper.wait()
            node.close()
            web.shutdown()
            echo.close()


def until_eof(server: socket.socket) -> None:
    """Reads a connection to its end, then answers with what it read, reversed: only a half-close
    that reaches the server gets an answer."""
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            conn.sendall(data[::-1])


def kubectl(lab, version: str, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECONFIG=str(lab.cp.kubeconfig), HOME=str(lab.cp.home), **(env or {}))
    return subprocess.run([f"{SDK}/kubectl.{version}", *args], capture_output=True, text=True, env=env,
                          timeout=kw.pop("timeout", 30), **kw)


@pytest.mark.parametrize("version,env", EXEC)
def test_exec_with_stdin_and_the_exit_code_over_spdy_and_websocket(lab, version, env):
    r = kubectl(lab, version, "exec", "-i", "p", "--", "sh", "-c", "cat; echo err >&2; exit 3",
                input="through stdin\n", env=env)
    assert (r.returncode, r.stdout) == (3, "through stdin\n"), r.stderr
    assert r.stderr.strip() == "err\ncommand terminated with exit code 3"
    r = kubectl(lab, version, "exec", "p", "--", "echo", "fine", env=env)
    assert (r.returncode, r.stdout) == (0, "fine\n"), r.stderr
    big = "".join(f"{i:07d}\n" for i in range(400_000))  # 3.2 MB each way
    r = kubectl(lab, version, "exec", "-i", "p", "--", "cat", input=big, env=env)
    assert r.returncode == 0 and r.stdout == big, (len(r.stdout), r.stderr)
    r = kubectl(lab, version, "exec", "p", "-c", "nope", "--", "true", env=env)
    assert r.returncode == 1 and "container nope is not valid for pod p" in r.stderr, r.stderr


@pytest.mark.parametrize("version,env", EXEC)
def test_exec_with_a_terminal_and_its_size(lab, version, env):
    # kubectl -t needs a terminal: a pseudo-terminal of the test's
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(KUBECONFIG=str(lab.cp.kubeconfig), HOME=str(lab.cp.home), **env)
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))  # kubectl sends this size
        os.execv(f"{SDK}/kubectl.{version}", [f"kubectl.{version}", "exec", "-it", "p", "--", "sh", "-c",
                                              "sleep 0.5; stty size; tty; exit 4"])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert b"/dev/pts/" in out and b"33 111" in out and os.waitstatus_to_exitcode(status) == 4, out


def forward(lab, version: str, target: str, ports: str, env: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, KUBECONFIG=str(lab.cp.kubeconfig), HOME=str(lab.cp.home), **(env or {}))
    proc = subprocess.Popen([f"{SDK}/kubectl.{version}", "port-forward", target, ports], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("Forwarding from 127.0.0.1:"), (line, proc.poll() and proc.stderr.read())
    return proc


def stop(proc: subprocess.Popen) -> str:
    proc.kill()
    proc.wait(10)
    return proc.stderr.read()


@pytest.mark.parametrize("version,env", FORWARD)
def test_kubectl_port_forward_to_a_pod_and_a_service_then_curl(lab, version, env):
    local = free_port()
    proc = forward(lab, version, "pod/p", f"{local}:{lab.port}", env)
    try:
        for i in range(3):  # one connection after another over the same forward
            got = urllib.request.urlopen(f"http://127.0.0.1:{local}/n{i}", timeout=10).read()
            assert got == f"hello from /n{i}\n".encode()
        if shutil.which("curl"):
            out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{local}/curl"], capture_output=True, timeout=20)
            assert out.stdout == b"hello from /curl\n"
    finally:
        errors = stop(proc)
    assert "error" not in errors.lower(), errors
    local = free_port()
    proc = forward(lab, version, "svc/s", f"{local}:80", env)
    try:
        assert urllib.request.urlopen(f"http://127.0.0.1:{local}/svc", timeout=10).read() == b"hello from /svc\n"
    finally:
        stop(proc)


@pytest.mark.parametrize("version,env", FORWARD)
def test_port_forward_carries_a_half_close_and_megabytes_both_ways(lab, version, env):
    local = free_port()
    proc = forward(lab, version, "pod/p", f"{local}:{lab.echo}", env)
    try:
        for payload in (b"stressed", os.urandom(3 * 1024 * 1024)):  # far past SPDY's 64 KiB window
            with socket.create_connection(("127.0.0.1", local), timeout=20) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := s.recv(65536):
                    got += chunk
            assert got == payload[::-1], len(got)
    finally:
        stop(proc)


@pytest.mark.parametrize("version,env", EXEC)
def test_exec_in_a_container_that_is_not_running_says_so(lab, version, env):
    r = kubectl(lab, version, "exec", "stopped", "--", "true", env=env)
    assert r.returncode == 1 and 'container not found ("c")' in r.stderr, r.stderr


@pytest.mark.parametrize("version,env", FORWARD[:1] + FORWARD[-1:])
def test_port_forward_to_a_closed_port_says_why(lab, version, env):
    local, closed = free_port(), free_port()
    proc = forward(lab, version, "pod/p", f"{local}:{closed}", env)
    try:
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10).read()
        time.sleep(0.5)
    finally:
        errors = stop(proc)
    assert f"error forwarding port {closed} to pod p" in errors and "connection refused" in errors, errors


def python_client(lab):
    from kubernetes import client, config
    return client.CoreV1Api(config.new_client_from_config(str(lab.cp.kubeconfig)))


def test_the_python_clients_exec_with_text_stdin_and_its_portforward(lab):
    from kubernetes.stream import portforward, stream
    api = python_client(lab)
    resp = stream(api.connect_get_namespaced_pod_exec, "p", "default", command=["sh", "-c", "read x; echo got $x"],
                  stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
    resp.write_stdin("text frame\n")  # a str: sent as a text message
    out = ""
    deadline = time.time() + 10
    while resp.is_open() and time.time() < deadline:
        resp.update(timeout=1)
        out += resp.read_stdout()
    assert out == "got text frame\n"
    assert resp.returncode == 0

    pf = portforward(api.connect_get_namespaced_pod_portforward, "p", "default", ports=str(lab.port))
    sock = pf.socket(lab.port)
    sock.setblocking(True)
    sock.sendall(b"GET /pf HTTP/1.0\r\n\r\n")
    got = b""
    while chunk := sock.recv(4096):
        got += chunk
    sock.close()
    assert got.endswith(b"hello from /pf\n") and got.startswith(b"HTTP/1.0 200"), got
    assert pf.error(lab.port) is None
    pf.close()


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "channel.k8s.io"])
def test_a_spdy_client_of_our_own_execs_with_the_error_stream_last(lab, protocol):
    """netlab.kit.spdy as a client, the way kubectl 1.27 speaks: streams per streamType; the
    Status as JSON from v4 on, its message as text before."""
    async def go():
        ctx = ssl.create_default_context(cafile=str(lab.cp.cluster.layout.ca_cert))
        host, port = lab.cp.url.removeprefix("https://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
        writer.write((f"POST /api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=cat%3Bexit+2"
                      f"&stdin=true&stdout=true HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {lab.cp.token}\r\n"
                      f"Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n"
                      "Content-Length: 0\r\n\r\n").encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        assert head.startswith("HTTP/1.1 101") and f"X-Stream-Protocol-Version: {protocol}\r\n" in head, head

        async def write(data):
            writer.write(data)
            await writer.drain()
        session = spdy.Session(reader.readexactly, write, server=False)
        running = asyncio.ensure_future(session.run())
        error = await session.open({"streamType": "error"})
        stdin = await session.open({"streamType": "stdin"})
        stdout = await session.open({"streamType": "stdout"})
        await stdin.write(b"abc")
        await stdin.close()
        out = b""
        while chunk := await stdout.read():
            out += chunk
        status = b""
        while chunk := await error.read():
            status += chunk
        writer.close()
        running.cancel()
        return out, status
    out, status = asyncio.run(go())
    assert out == b"abc"
    if protocol == "channel.k8s.io":
        assert status == b"command terminated with non-zero exit code: 2"
        return
    status = json.loads(status)
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"] == [
        {"reason": "ExitCode", "message": "2"}]


def test_proxy_subresources_with_kubectl_and_the_python_client(lab):
    kc = lab.cp.kubectl
    assert kc("get", "--raw", f"/api/v1/namespaces/default/pods/p:{lab.port}/proxy/a/b?x=1").stdout == (
        "hello from /a/b?x=1\n")
    assert kc("get", "--raw", "/api/v1/namespaces/default/pods/p:web/proxy/named").stdout == "hello from /named\n"
    assert kc("get", "--raw", "/api/v1/namespaces/default/services/s:http/proxy/svc").stdout == "hello from /svc\n"
    assert kc("get", "--raw", "/api/v1/namespaces/default/services/http:s:80/proxy/").stdout == "hello from /\n"
    assert kc("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/healthz").stdout == "ok"
    # .../proxy is redirected to .../proxy/ (urllib follows it)
    assert lab.cp.raw("GET", "/api/v1/namespaces/default/services/s:http/proxy?q=1") == (200, b"hello from /?q=1\n")
    status, body = lab.cp.raw("GET", "/api/v1/namespaces/default/services/s:nope/proxy/")
    assert status == 503 and 'no service port \\"nope\\" found for service \\"s\\"' in body.decode(), body
    status, body = lab.cp.raw("GET", "/api/v1/namespaces/default/services/s/proxy/")  # its port has a name
    assert status == 503 and 'no service port \\"\\" found' in body.decode(), body
    r = kc("get", "--raw", "/api/v1/namespaces/default/services/https:s:http/proxy/", check=False)
    assert r.returncode != 0 and "error trying to reach service" in r.stderr, r.stderr  # plain HTTP behind it
    api = python_client(lab)
    assert api.connect_get_namespaced_pod_proxy_with_path(f"p:{lab.port}", "default", "py") == "hello from /py\n"
    assert api.connect_get_namespaced_service_proxy_with_path("s:http", "default", "py") == "hello from /py\n"
    assert api.connect_get_node_proxy_with_path(NODE, "healthz") == "ok"


def test_kubectl_proxy_reaches_them(lab):
    local = free_port()
    env = dict(os.environ, KUBECONFIG=str(lab.cp.kubeconfig), HOME=str(lab.cp.home))
    proc = subprocess.Popen(["kubectl", "proxy", f"--port={local}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("Starting to serve on 127.0.0.1:")
        base = f"http://127.0.0.1:{local}/api/v1/namespaces/default"
        assert urllib.request.urlopen(f"{base}/services/s:http/proxy/kp", timeout=10).read() == b"hello from /kp\n"
        assert urllib.request.urlopen(f"{base}/pods/p:{lab.port}/proxy/kp", timeout=10).read() == b"hello from /kp\n"
    finally:
        proc.kill()
        proc.wait(10)
