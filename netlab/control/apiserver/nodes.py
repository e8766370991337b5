"""The one seam through which the API server reaches a pod on its node: pods/log and pods/exec
(and later attach and port-forward), as upstream's API server asks the pod's kubelet.

Today it reads the kubelet's files in the lab's state directory (so it serves pods on this
machine only). exec speaks WebSocket, the protocol kubectl speaks (v5.channel.k8s.io, or v4):
binary messages whose first byte is the stream (0 stdin, 1 stdout, 2 stderr, 3 the final Status,
4 a terminal resize; v5's 255 closes a stream). The command runs in the container's network, UTS
and mount namespaces with the container's environment and working directory, as the kubelet's
runtime would start it; with tty=true on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import struct
import termios
from pathlib import Path

from aiohttp import WSMsgType, web

from netlab.kit.layout import Layout, PodLayout


PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


class NodeError(Exception):
    """What the node answers when it cannot serve the request (a container not started, ...)."""


class Kubelets:
    """The pods' nodes, as the API server reaches them."""

    def __init__(self, state_dir: Path):
        self.layout = Layout(state_dir.name)

    def _pod(self, pod: dict) -> PodLayout | None:
        node = (pod.get("spec") or {}).get("nodeName")
        return self.layout.node(node).pod(pod["metadata"]["uid"]) if node else None

    async def logs(self, request: web.Request, pod: dict, container: str, same_pod) -> web.StreamResponse:
        """A container's log (`previous`, `tailLines`, `follow` as the kubelet serves them); a
        follow ends when `same_pod()` says the pod is gone."""
        name, previous = pod["metadata"]["name"], request.query.get("previous") in ("1", "true")
        where = self._pod(pod)
        path = where.log(container, previous) if where else None
        if path is None or not path.exists():
            raise NodeError(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
                            if not previous else f'previous terminated container "{container}" in pod "{name}" '
                            "not found")
        data = path.read_bytes()
        tail = request.query.get("tailLines")
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail):]) if int(tail) > 0 else b""
        if request.query.get("follow") not in ("1", "true"):
            return web.Response(body=data, content_type="text/plain")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(data)
        pos = path.stat().st_size
        while True:
            await asyncio.sleep(0.2)
            if not same_pod():
                break
            try:
                with path.open("rb") as f:
                    f.seek(pos)
                    chunk = f.read()
            except FileNotFoundError:
                break
            if chunk:
                pos += len(chunk)
                await resp.write(chunk)
        return resp

    async def exec(self, request: web.Request, pod: dict, container: str) -> web.WebSocketResponse:
        pid = self._container_pid(pod, container)
        if pid is None:
            raise NodeError(f"container {container} is not running in pod {pod['metadata']['name']}")
        return await serve(request, pid)

    def _container_pid(self, pod: dict, container: str) -> int | None:
        """The running container's pid, from the kubelet's record of the pod (netlab.node.kubelet)."""
        where = self._pod(pod)
        if where is None:
            return None
        try:
            pid = json.loads(where.state.read_text())["containers"][container]["proc"]["pid"]
        except (OSError, KeyError, TypeError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

def _environ(pid: int) -> dict[str, str]:
    env = {}
    with contextlib.suppress(OSError):
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            k, sep, v = item.decode(errors="replace").partition("=")
            if sep:
                env[k] = v
    return env


def exit_status(code: int) -> dict:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


async def serve(request: web.Request, pid: int) -> web.WebSocketResponse:
    q = request.query
    command = q.getall("command", [])
    want_stdin, tty = q.get("stdin") in ("1", "true"), q.get("tty") in ("1", "true")
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
    await ws.prepare(request)
    argv = ["nsenter", f"--target={pid}", "--net", "--uts", "--mount", f"--wd=/proc/{pid}/cwd", "--", *command]
    env = _environ(pid)
    loop = asyncio.get_running_loop()
    master = None
    if tty:
        master, slave = pty.openpty()

        def controlling_terminal():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        proc = await asyncio.create_subprocess_exec(*argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                                    preexec_fn=controlling_terminal)
        os.close(slave)
    else:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.PIPE if want_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def pump(reader, stream: int) -> None:
        while chunk := await reader():
            await ws.send_bytes(bytes([stream]) + chunk)

    if master is not None:
        out_q: asyncio.Queue[bytes] = asyncio.Queue()

        def readable():
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                data = b""
            if not data:
                loop.remove_reader(master)
            out_q.put_nowait(data)
        loop.add_reader(master, readable)
        pumps = [pump(out_q.get, STDOUT)]
    else:
        pumps = [pump(lambda: proc.stdout.read(65536), STDOUT), pump(lambda: proc.stderr.read(65536), STDERR)]
    outputs = asyncio.gather(*pumps)

    async def inputs() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            stream, data = msg.data[0], msg.data[1:]
            if stream == STDIN and data:
                if master is not None:
                    os.write(master, data)
                elif proc.stdin is not None:
                    proc.stdin.write(data)
                    with contextlib.suppress(ConnectionError):
                        await proc.stdin.drain()
            elif stream == RESIZE and master is not None:
                with contextlib.suppress(ValueError, OSError):
                    size = json.loads(data)
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size["Height"], size["Width"], 0, 0))
            elif stream == CLOSE and data[:1] == bytes([STDIN]) and proc.stdin is not None:
                proc.stdin.close()
        if proc.returncode is None:  # the client went away: so does the command
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    reading = asyncio.create_task(inputs())
    try:
        await outputs
        code = await proc.wait()
        await ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(code)).encode())
    finally:
        if master is not None:
            loop.remove_reader(master)
            os.close(master)
        reading.cancel()
        await ws.close()
    return ws
