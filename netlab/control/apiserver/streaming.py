"""pods/exec, pods/attach and pods/portforward: the client's streaming protocol chosen, and the
stream carried to the pod's kubelet through the seam (nodes.py), as upstream's API server does:

- WebSocket (kubectl 1.30+ exec and attach, the Python client's stream() and portforward()):
  relayed message by message to the kubelet's WebSocket.
- SPDY/3.1 (kubectl before 1.31, and after as the fallback): the same upgrade asked of the
  kubelet, then the two connections piped byte for byte (upstream's UpgradeAwareHandler).
- WebSocket with the subprotocol `SPDY/3.1+portforward.k8s.io` (kubectl 1.31+ port-forward): SPDY
  tunnelled in binary messages, unwrapped onto a SPDY upgrade at the kubelet (upstream's
  StreamTunnelingHandler)."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from netlab.control.apiserver.errors import bad_request
from netlab.control.apiserver.nodes import EXEC_OPTIONS, Kubelets, NodeError
from netlab.kit import upgrade

TUNNEL = "SPDY/3.1+portforward.k8s.io"


def _spdy(request: web.Request) -> bool:
    return "spdy/3.1" in request.headers.get("Upgrade", "").lower()


def _websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _subprotocols(request: web.Request) -> list[str]:
    return [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]


def container_of(request: web.Request, pod: dict) -> str:
    spec = pod.get("spec") or {}
    containers = [c["name"] for c in spec.get("containers") or []]
    extra = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("ephemeralContainers") or [])]
    container = request.query.get("container")
    if not container:
        if len(containers) != 1:
            raise bad_request(f"a container name must be specified for pod {pod['metadata']['name']}, choose one "
                              f"of: [{' '.join(containers)}]")
        return containers[0]
    if container not in containers + extra:
        raise bad_request(f"container {container} is not valid for pod {pod['metadata']['name']}")
    return container


async def exec_or_attach(request: web.Request, kubelets: Kubelets, pod: dict, kind: str) -> web.StreamResponse:
    container = container_of(request, pod)
    if kind == "exec" and not request.query.getall("command", []):
        raise bad_request("you must specify at least 1 command")
    params = [(k, v) for k, v in request.query.items() if k in EXEC_OPTIONS and (kind == "exec" or k != "command")]
    path = kubelets.path(kind, pod, container)
    if _websocket(request):
        return await kubelets.websocket(request, pod, path, params)
    if _spdy(request):
        return await pipe_spdy(request, kubelets, pod, path, params)
    raise bad_request("Upgrade request required")


async def portforward(request: web.Request, kubelets: Kubelets, pod: dict) -> web.StreamResponse:
    path = f"/portForward/{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    if _websocket(request) and TUNNEL in _subprotocols(request):
        return await tunnel(request, kubelets, pod, path)
    if _websocket(request):
        ports = [p for v in request.query.getall("ports", []) for p in v.split(",") if p]
        if not ports:
            raise bad_request('query parameter "ports" is required')
        try:
            return await kubelets.websocket(request, pod, path, [("port", p) for p in ports], status_stream=False)
        except NodeError as e:
            raise bad_request(str(e)) from None
    if _spdy(request):
        return await pipe_spdy(request, kubelets, pod, path, [])
    raise bad_request("Upgrade request required")


async def pipe_spdy(request: web.Request, kubelets: Kubelets, pod: dict, path: str, params: list):
    protocols = [p.strip() for h in request.headers.getall("X-Stream-Protocol-Version", []) for p in h.split(",")]
    try:
        headers, reader, writer = await kubelets.upgrade(pod, path, params, protocols)
    except NodeError as e:
        raise bad_request(str(e)) from None
    answer = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
    if headers.get("x-stream-protocol-version"):
        answer["X-Stream-Protocol-Version"] = headers["x-stream-protocol-version"]
    client = await upgrade.take_over(request, answer)

    async def up() -> None:
        while chunk := await client.reader.read(65536):
            writer.write(chunk)
            await writer.drain()

    async def down() -> None:
        while chunk := await reader.read(65536):
            await client.write(chunk)

    await _both(up(), down())
    writer.close()
    client.close()
    return client.response


async def tunnel(request: web.Request, kubelets: Kubelets, pod: dict, path: str) -> web.StreamResponse:
    try:
        _, reader, writer = await kubelets.upgrade(pod, path, [], ["portforward.k8s.io"])
    except NodeError as e:
        raise bad_request(str(e)) from None
    ws = web.WebSocketResponse(protocols=(TUNNEL,), max_msg_size=0)
    await ws.prepare(request)

    async def up() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                writer.write(msg.data)
                await writer.drain()

    async def down() -> None:
        while chunk := await reader.read(65536):
            await ws.send_bytes(chunk)

    await _both(up(), down())
    writer.close()
    with contextlib.suppress(ConnectionError):
        await ws.close()
    return ws


async def _both(a, b) -> None:
    """Two copies until either ends (the other side then sees its connection close)."""
    tasks = [asyncio.ensure_future(a), asyncio.ensure_future(b)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
