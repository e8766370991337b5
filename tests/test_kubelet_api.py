"""pods/log and pods/exec go through the pod's kubelet, as upstream's do: the API server (a real one,
on loopback) reads the pod's Node, dials the kubelet API at the Node's address and
daemonEndpoints port, and relays what the kubelet answers. The kubelet here is the real kubelet
API (netlab.node.kubelet.server) over pod workers made by hand: a log file in the CRI format the
test writes, and a `sleep` the test runs standing for the container's process. No namespaces are
made (exec enters the test's own, which needs root)."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from types import SimpleNamespace

import aiohttp
import pytest

from netlab.api.client import Client
from netlab.kit.layout import PodLayout
from netlab.node.kubelet import certs, runtime
from netlab.node.kubelet.pods import Container
from netlab.node.kubelet.server import KubeletServer
from tests.apikit import ControlPlane, free_port

NODE = "nltka-node"
LOG = (b"2024-01-01T00:00:01Z stdout F one\n"
       b"2024-01-01T00:00:02.5Z stderr F two\n"
       b"2024-01-01T00:00:03.000000001Z stdout P thr\n"
       b"2024-01-01T00:00:03.000000002Z stdout F ee\n")
ROOT = os.geteuid() == 0


class FakeNode:
    """The kubelet API on 127.0.0.1:<free port>, in a loop of its own, over the pods `add` makes."""

    def __init__(self, tmp, token: str, ca_cert, ca_key):
        self.tmp, self.port = tmp, free_port()
        self.workers: dict[str, SimpleNamespace] = {}
        self.server = KubeletServer(self, token)
        cert, key = tmp / "kubelet.crt", tmp / "kubelet.key"
        assert certs.serving_cert(cert, key, NODE, "127.0.0.1", ca_cert, ca_key), "signed by the lab's CA"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.server.start("127.0.0.1", self.port, str(cert), str(key)))

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def add(self, pod: dict) -> SimpleNamespace:
        meta = pod["metadata"]
        where = PodLayout(self.tmp / meta["uid"])
        where.logs.mkdir(parents=True)
        w = SimpleNamespace(uid=meta["uid"], ns=meta["namespace"], name=meta["name"], pod=pod, where=where,
                            containers=[Container(c, False) for c in pod["spec"]["containers"]])
        self.workers[w.uid] = w
        return w

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kubelet")
    with ControlPlane("nltka") as cp:
        node = FakeNode(tmp, cp.token, cp.cluster.layout.ca_cert, cp.cluster.layout.ca_key)
        sleeper = subprocess.Popen(["sleep", "600"])
        try:
            async def setup():
                async with Client.from_kubeconfig(cp.kubeconfig) as c:
                    n = await c.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
                    n["status"] = {"addresses": [{"type": "Hostname", "address": NODE},
                                                 {"type": "InternalIP", "address": "127.0.0.1"}],
                                   "daemonEndpoints": {"kubeletEndpoint": {"Port": node.port}}}
                    await c.update("nodes", n, subresource="status")
                    return await c.create("pods", {
                        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"},
                                                                  {"name": "w", "image": "busybox"}]}})
            w = node.add(asyncio.run(setup()))
            c = w.containers[0]
            c.proc = runtime.Process(sleeper.pid, runtime.proc_start(sleeper.pid))
            c.state, c.env = {"running": {"startedAt": "2024-01-01T00:00:00Z"}}, {"GREETING": "hello from c",
                                                                                  "PATH": os.environ["PATH"]}
            w.where.log("c").write_bytes(LOG)
            yield SimpleNamespace(cp=cp, node=node, worker=w)
        finally:
            sleeper.kill()
            sleeper.wait()
            node.close()


def test_the_kubelet_port_refuses_a_request_without_the_lab_token(lab):
    ctx = ssl.create_default_context(cafile=str(lab.cp.cluster.layout.ca_cert))  # its certificate: the lab CA's
    url = f"https://127.0.0.1:{lab.node.port}"
    for path in ("/healthz", "/containerLogs/default/p/c", "/pods"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + path, context=ctx, timeout=5)
        assert e.value.code == 401 and e.value.read() == b"Unauthorized"
    req = urllib.request.Request(url + "/healthz", headers={"Authorization": f"Bearer {lab.cp.token}"})
    assert urllib.request.urlopen(req, context=ctx, timeout=5).read() == b"ok"
    req = urllib.request.Request(url + "/healthz", headers={"Authorization": "Bearer not-the-token"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, context=ctx, timeout=5)
    assert e.value.code == 401


def test_logs_come_from_the_pods_kubelet_with_the_options_kubectl_sends(lab):
    kubectl = lab.cp.kubectl
    assert kubectl("logs", "p", "-c", "c").stdout == "one\ntwo\nthree\n"
    assert kubectl("logs", "p", "-c", "c", "--tail=1").stdout == "three\n"
    assert kubectl("logs", "p", "-c", "c", "--tail=0").stdout == ""
    assert kubectl("logs", "p", "-c", "c", "--limit-bytes=6").stdout == "one\ntw"
    assert kubectl("logs", "p", "-c", "c", "--since-time=2024-01-01T00:00:02Z").stdout == "two\nthree\n"
    assert kubectl("logs", "p", "-c", "c", "--since=1h").stdout == ""  # written in 2024
    assert kubectl("logs", "p", "-c", "c", "--timestamps").stdout == (
        "2024-01-01T00:00:01Z one\n2024-01-01T00:00:02.5Z two\n"
        "2024-01-01T00:00:03.000000001Z thr2024-01-01T00:00:03.000000002Z ee\n")
    # upstream's kubelet messages, passed on as 400 BadRequest
    r = kubectl("logs", "p", "-c", "c", "--previous", check=False)
    assert r.returncode == 1 and r.stderr.strip() == \
        'Error from server (BadRequest): previous terminated container "c" in pod "p" not found'
    r = kubectl("logs", "p", "-c", "w", check=False)
    assert r.stderr.strip() == \
        'Error from server (BadRequest): container "w" in pod "p" is waiting to start: ContainerCreating'


def test_a_follow_streams_until_the_containers_log_is_complete(lab):
    path = lab.worker.where.log("c")
    with open(path, "ab") as relay:  # a relay still writes: it holds the log's lock
        fcntl.flock(relay, fcntl.LOCK_EX)
        env = dict(os.environ, KUBECONFIG=str(lab.cp.kubeconfig), HOME=str(lab.cp.home))
        follow = subprocess.Popen(["kubectl", "logs", "-f", "p", "-c", "c", "--tail=1"], stdout=subprocess.PIPE,
                                  env=env)
        try:
            assert follow.stdout.readline() == b"three\n"
            relay.write(b"2024-01-01T00:00:04Z stdout F four\n")
            relay.flush()
            assert follow.stdout.readline() == b"four\n"
            assert follow.poll() is None, "the container still runs: the follow goes on"
            fcntl.flock(relay, fcntl.LOCK_UN)  # its last writer is gone
            assert follow.wait(10) == 0 and follow.stdout.read() == b""
        finally:
            follow.kill()
            follow.wait()
    path.write_bytes(LOG)


@pytest.mark.skipif(not ROOT, reason="exec enters the container's namespaces: root")
def test_exec_runs_in_the_container_through_its_kubelet_with_the_containers_environment(lab):
    kubectl = lab.cp.kubectl
    assert kubectl("exec", "p", "-c", "c", "--", "printenv", "GREETING").stdout == "hello from c\n"
    assert kubectl("exec", "-i", "p", "-c", "c", "--", "cat", input="through stdin\n").stdout == "through stdin\n"
    r = kubectl("exec", "p", "-c", "c", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr.strip()) == (3, "out\n", "err\ncommand terminated with exit code 3")
    r = kubectl("exec", "p", "-c", "w", "--", "true", check=False)
    assert r.returncode == 1 and 'container not found ("w")' in r.stderr, r.stderr


@pytest.mark.skipif(not ROOT, reason="exec enters the container's namespaces: root")
def test_exec_relays_the_websocket_both_ways_with_a_terminal_and_the_close(lab):
    async def go():
        ctx = ssl.create_default_context(cafile=str(lab.cp.cluster.layout.ca_cert))
        url = (f"{lab.cp.url}/api/v1/namespaces/default/pods/p/exec?container=c&command=sh&command=-c"
               "&command=tty%3B+read+x%3B+echo+got+$x&stdin=true&stdout=true&tty=true")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {lab.cp.token}"}) as s:
            async with s.ws_connect(url, protocols=["v5.channel.k8s.io"], ssl=ctx) as ws:
                assert ws.protocol == "v5.channel.k8s.io"
                await ws.send_bytes(b"\x04" + json.dumps({"Width": 80, "Height": 24}).encode())
                await ws.send_bytes(b"\x00hi\n")
                out, status = b"", None
                async for msg in ws:
                    if msg.data[0] == 1:
                        out += msg.data[1:]
                    elif msg.data[0] == 3:
                        status = json.loads(msg.data[1:])
                return out.decode(), status, ws.close_code
    out, status, code = asyncio.run(go())
    assert "/dev/pts/" in out and "got hi\r\n" in out, out
    assert (status, code) == ({"metadata": {}, "status": "Success"}, 1000)
