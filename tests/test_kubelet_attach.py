"""Attach, in the node's runtime: a container started with `stdin: true` (or `tty: true`) keeps its
stdin open in its log relay, which serves the attach socket the kubelet's /attach connects to;
what a client sends reaches the container, what it prints reaches every client and the log.
The runtime is run here on its own (a spawner, no lab): it makes PID and mount namespaces."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netlab.kit import cgroups
from netlab.kit.layout import PodLayout
from netlab.node.kubelet import relay, runtime, sandbox, security

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the runtime makes namespaces: root")]
POD = {"metadata": {"name": "p", "namespace": "default", "uid": "u-attach"}, "spec": {}}


@pytest.fixture
def spawner(tmp_path):
    sock = tmp_path / "runtime.sock"
    proc = subprocess.Popen([sys.executable, "-m", "netlab.node.kubelet.spawner", "--socket", str(sock)])
    for _ in range(200):
        if sock.exists():
            break
        time.sleep(0.05)
    yield sock
    proc.terminate()
    proc.wait()
    cgroups.remove("netlab/nltattach")


def start(sock: Path, tmp_path: Path, argv: list[str], container: dict) -> tuple[runtime.Process, PodLayout, Path]:
    pod = PodLayout(tmp_path / "pod", "netlab/nltattach/n/podu")
    pod.logs.mkdir(parents=True, exist_ok=True)
    attach = tmp_path / "attach" / "c.sock"
    req = runtime.container_request(
        netns=None, pause=None, spec={}, argv=argv, env={"PATH": "/usr/bin:/bin", "TERM": "dumb"}, workdir="/",
        mounts=[], log=pod.log("c"), cgroup=pod.container_cgroup("c", 0),
        security=security.context(POD, {"name": "c"}, sandbox.last_cap()), resources={}, scratch=tmp_path / "rootfs",
        container=container, attach=attach)
    return runtime.start_container(sock, req, pod.exit_file("c")), pod, attach


def read_until(s: socket.socket, want: bytes, timeout: float = 10) -> bytes:
    buf, got = bytearray(), b""
    end = time.monotonic() + timeout
    s.settimeout(0.2)
    while want not in got and time.monotonic() < end:
        try:
            data = s.recv(65536)
        except TimeoutError:
            continue
        if not data:
            break
        buf += data
        got += b"".join(d for stream, d in relay.frames(buf) if stream == relay.STDOUT)
    return got


def test_stdin_reaches_the_container_and_its_output_every_client(spawner, tmp_path):
    proc, pod, attach = start(spawner, tmp_path, ["cat"], {"stdin": True})
    assert attach.exists(), "the relay serves the attach socket once the container started"
    with socket.socket(socket.AF_UNIX) as a, socket.socket(socket.AF_UNIX) as b:
        a.connect(str(attach))
        b.connect(str(attach))
        time.sleep(0.1)
        a.sendall(relay.frame(relay.STDIN, b"hello\n"))
        assert b"hello\n" in read_until(a, b"hello\n") and b"hello\n" in read_until(b, b"hello\n")
        a.sendall(relay.frame(relay.CLOSE, bytes([relay.STDIN])))  # the end of stdin: cat is done
        end = time.monotonic() + 10
        while proc.alive() and time.monotonic() < end:
            time.sleep(0.05)
        assert not proc.alive() and proc.exit_code() == 0
    assert " stdout F hello\n" in pod.log("c").read_text()
    assert not attach.exists(), "the socket goes with the container"


def test_stdin_once_closes_when_the_first_client_goes(spawner, tmp_path):
    proc, _, attach = start(spawner, tmp_path, ["cat"], {"stdin": True, "stdinOnce": True})
    with socket.socket(socket.AF_UNIX) as a:
        a.connect(str(attach))
        a.sendall(relay.frame(relay.STDIN, b"once\n"))
        assert b"once\n" in read_until(a, b"once\n")
    end = time.monotonic() + 10
    while proc.alive() and time.monotonic() < end:
        time.sleep(0.05)
    assert not proc.alive(), "stdinOnce: cat saw the end of its stdin"


def test_a_terminal_with_its_size(spawner, tmp_path):
    proc, pod, attach = start(spawner, tmp_path, ["sh"], {"stdin": True, "tty": True})
    with socket.socket(socket.AF_UNIX) as a:
        a.connect(str(attach))
        a.sendall(relay.frame(relay.RESIZE, json.dumps({"Width": 100, "Height": 40}).encode()))
        time.sleep(0.1)
        a.sendall(relay.frame(relay.STDIN, b"stty size; tty; exit 3\n"))
        out = read_until(a, b"/dev/pts/")
        assert b"40 100" in out and b"/dev/pts/0" in out, out
    end = time.monotonic() + 10
    while proc.alive() and time.monotonic() < end:
        time.sleep(0.05)
    assert proc.exit_code() == 3
    assert "40 100" in pod.log("c").read_text()


def test_an_ephemeral_container_sees_its_targets_processes(spawner, tmp_path):
    """kubectl debug --target: the debug container joins the target container's PID namespace."""
    target, pod, _ = start(spawner, tmp_path, ["sleep", "300"], {})
    req = runtime.container_request(
        netns=None, pause=None, spec={}, argv=["sh", "-c", "ps -eo pid,args"], env={"PATH": "/usr/bin:/bin"},
        workdir="/", mounts=[], log=pod.log("debugger"), cgroup=pod.container_cgroup("debugger", 0),
        security=security.context(POD, {"name": "debugger"}, sandbox.last_cap()), resources={},
        scratch=tmp_path / "rootfs", container={"name": "debugger"}, pidns=f"/proc/{target.pid}/ns/pid")
    debug = runtime.start_container(spawner, req, pod.exit_file("debugger"))
    end = time.monotonic() + 10
    while debug.alive() and time.monotonic() < end:
        time.sleep(0.05)
    out = pod.log("debugger").read_text()
    assert any(line.split()[3:] == ["1", "sleep", "300"] for line in out.splitlines()), out
    runtime.stop([target], 1)
