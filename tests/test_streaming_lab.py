"""Streaming and proxying on a real lab: kubectl 1.27 and 1.30 (SPDY/3.1) and 1.33 (WebSocket, and
port-forward's SPDY tunnelled in WebSocket) exec into and attach to real pods, port-forward a
Service and curl through it; the proxy subresources reach pods on other nodes from the control
plane, as `kubectl get --raw`, `kubectl proxy` and the Python client use them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import termios
import time
import urllib.request

import pytest

from netlab.tools.testing import Lab

pytestmark = pytest.mark.lab
NS = "streamtest"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"
SDK = "/usr/lib/google-cloud-sdk/bin"
VERSIONS = [v for v in ("1.27", "1.30", "1.33") if os.path.exists(f"{SDK}/kubectl.{v}")]
# kubectl 1.30+ speak WebSocket for exec and attach; their fallback (and 1.27) SPDY
EXEC = [pytest.param(v, env, id=f"{v}-{name}") for v in VERSIONS for env, name in (
    ({}, "spdy" if v < "1.30" else "websocket"), ({"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}, "spdy"))
    if v >= "1.30" or not env]

APP = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: agnhost
        image: {AGNHOST}
        args: [netexec, --http-port=8080]
        ports: [{{containerPort: 8080, name: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
""" + "".join(f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: attach-{v.replace('.', '-')}, labels: {{app: attach}}}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    stdin: true
    stdinOnce: true
    command: [sh, -c, 'read line; echo "got $line"']
""" for v in [p.id for p in EXEC]) + "".join(f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: tty-{v.replace('.', '-')}, labels: {{app: tty}}}}
spec:
  restartPolicy: Never
  containers: [{{name: c, image: busybox, stdin: true, tty: true, command: [sh]}}]
""" for v in [p.id for p in EXEC])


@pytest.fixture(scope="module")
def lab(netlab_lab: Lab):
    lab = netlab_lab
    lab.kubectl("create", "namespace", NS)
    try:
        lab.apply(APP, namespace=NS)
        lab.wait_ready("app=web", namespace=NS, count=2, timeout=60)
        lab.wait_ready("app=attach", namespace=NS, count=len(EXEC), timeout=60)
        lab.wait_ready("app=tty", namespace=NS, count=len(EXEC), timeout=60)
        yield lab
    finally:
        lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def kubectl(lab: Lab, version: str, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECONFIG=str(lab.kubeconfig), **(env or {}))
    return subprocess.run([f"{SDK}/kubectl.{version}", "-n", NS, *args], capture_output=True, text=True, env=env,
                          timeout=kw.pop("timeout", 60), **kw)


def web_pods(lab: Lab) -> list[dict]:
    return lab.items("pods", namespace=NS, selector="app=web")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("version,env", EXEC)
def test_exec_cp_and_attach_with_stdin(lab, version, env, request, tmp_path):
    pod = web_pods(lab)[0]["metadata"]["name"]
    r = kubectl(lab, version, "exec", "-i", pod, "--", "sh", "-c", "cat; hostname; exit 5", input="in\n", env=env)
    assert (r.returncode, r.stdout) == (5, f"in\n{pod}\n"), r.stderr
    assert "command terminated with exit code 5" in r.stderr
    # kubectl cp: tar through exec's stdin and stdout, both ways
    (tmp_path / "up.txt").write_bytes(b"\x00binary\xff" * 1000)
    r = kubectl(lab, version, "cp", str(tmp_path / "up.txt"), f"{pod}:/tmp/up.txt", env=env)
    assert r.returncode == 0, r.stderr
    r = kubectl(lab, version, "cp", f"{pod}:/tmp/up.txt", str(tmp_path / "down.txt"), env=env)
    assert r.returncode == 0 and (tmp_path / "down.txt").read_bytes() == b"\x00binary\xff" * 1000, r.stderr
    name = f"attach-{request.node.callspec.id.replace('.', '-')}"
    r = kubectl(lab, version, "attach", "-i", name, input="hello\n", env=env)
    assert "got hello" in r.stdout, (r.stdout, r.stderr)
    done = lab.wait(lambda: (lab.get("pods", name, NS).get("status") or {}).get("phase") == "Succeeded",
                    what=f"{name} to end once its stdin closed")
    assert done


@pytest.mark.parametrize("version,env", EXEC)
def test_attach_with_a_terminal(lab, version, env, request):
    """kubectl attach -it: the container's shell on its terminal, at the size of kubectl's."""
    name = f"tty-{request.node.callspec.id.replace('.', '-')}"
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(KUBECONFIG=str(lab.kubeconfig), **env)
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 31, 97, 0, 0))
        os.execv(f"{SDK}/kubectl.{version}", ["kubectl", "-n", NS, "attach", "-it", name])
    out, sent, deadline = b"", False, time.time() + 30
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                if not sent:  # attached: the shell has its prompt
                    os.write(fd, b"stty size; echo marker-$((6*7)); exit\n")
                    sent = True
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        with contextlib.suppress(ChildProcessError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert b"marker-42" in out and b"31 97" in out, out


@pytest.mark.parametrize("version", VERSIONS)
def test_port_forward_a_service_and_curl_through_it(lab, version):
    local = free_port()
    env = dict(os.environ, KUBECONFIG=str(lab.kubeconfig))
    proc = subprocess.Popen([f"{SDK}/kubectl.{version}", "-n", NS, "port-forward", "svc/web", f"{local}:80"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith(f"Forwarding from 127.0.0.1:{local}")
        names = {p["metadata"]["name"] for p in web_pods(lab)}
        for _ in range(2):
            out = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{local}/hostname"],
                                 capture_output=True, text=True, timeout=20)
            assert out.stdout in names, out
    finally:
        proc.kill()
        proc.wait(10)


def test_proxy_subresources_reach_pods_on_other_nodes(lab):
    pods = web_pods(lab)
    names = {p["metadata"]["name"] for p in pods}
    for p in pods:
        name = p["metadata"]["name"]
        out = lab.kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{name}:8080/proxy/hostname").stdout
        assert out == name
    assert lab.kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/services/web:http/proxy/hostname").stdout in names
    node = pods[0]["spec"]["nodeName"]
    assert lab.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/healthz").stdout == "ok"

    from kubernetes import client, config
    api = client.CoreV1Api(config.new_client_from_config(str(lab.kubeconfig)))
    assert api.connect_get_namespaced_service_proxy_with_path("web:80", NS, "hostname") in names

    local = free_port()
    proc = subprocess.Popen(["kubectl", "proxy", f"--port={local}"], env=dict(os.environ, KUBECONFIG=str(lab.kubeconfig)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("Starting to serve")
        url = f"http://127.0.0.1:{local}/api/v1/namespaces/{NS}/services/web:http/proxy/hostname"
        assert urllib.request.urlopen(url, timeout=10).read().decode() in names
    finally:
        proc.kill()
        proc.wait(10)


def test_the_python_clients_portforward_and_exec_with_text_stdin(lab):
    from kubernetes import client, config
    from kubernetes.stream import portforward, stream
    api = client.CoreV1Api(config.new_client_from_config(str(lab.kubeconfig)))
    pod = web_pods(lab)[0]["metadata"]["name"]
    pf = portforward(api.connect_get_namespaced_pod_portforward, pod, NS, ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
    got = b""
    while chunk := sock.recv(4096):
        got += chunk
    sock.close()
    pf.close()
    assert got.startswith(b"HTTP/1.") and got.endswith(pod.encode()), got

    resp = stream(api.connect_get_namespaced_pod_exec, pod, NS, command=["sh", "-c", "read x; echo got $x"],
                  stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
    resp.write_stdin("text\n")
    out, deadline = "", time.time() + 20
    while resp.is_open() and time.time() < deadline:
        resp.update(timeout=1)
        out += resp.read_stdout()
    assert out == "got text\n" and resp.returncode == 0
