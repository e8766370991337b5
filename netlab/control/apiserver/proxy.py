"""The proxy subresources, as upstream's API server serves them:

    /api/v1/namespaces/NS/pods/[https:]NAME[:PORT]/proxy/PATH       to the pod's IP
    /api/v1/namespaces/NS/services/[https:]NAME[:PORT]/proxy/PATH   to one ready endpoint of the port
                                                                    (PORT: the Service port's name or number)
    /api/v1/nodes/[https:]NAME[:PORT]/proxy/PATH                    to the node's kubelet (https, :10250)

The request (method, query, body, headers but the client's credentials and hop-by-hop ones) goes
to the target, the answer streams back as it is. The API server reaches pods and endpoints from
the control-plane node's namespace (nodes.py makes its sockets there), as upstream's API server
reaches the pod network from its node; the kubelet with the lab's token."""

from __future__ import annotations

import contextlib
import random

import aiohttp
from aiohttp import web

from netlab.api.resources import lookup
from netlab.control.apiserver.errors import APIError, bad_request
from netlab.control.apiserver.nodes import ADDRESS_TYPES, Kubelets, NodeError

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "authorization", "host", "content-length"}


def split_name(text: str) -> tuple[str, str, str]:
    """`[scheme:]name[:port]` as upstream's net.SplitSchemeNamePort reads it."""
    parts = text.split(":")
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3 and parts[0] in ("http", "https"):
        return parts[0], parts[1], parts[2]
    raise bad_request(f"invalid service request {text}")


async def serve(request: web.Request, objects, kubelets: Kubelets, plural: str, namespace: str | None, spec: str,
                path: list[str]) -> web.StreamResponse:
    scheme, name, port = split_name(spec)
    if not path and not request.path.endswith("/"):  # `.../proxy` to `.../proxy/`, as upstream redirects
        return web.Response(status=301, headers={"Location": request.path + "/" + (
            f"?{request.query_string}" if request.query_string else "")})
    if plural == "pods":
        target = pod_location(objects, namespace, name, port, scheme)
    elif plural == "services":
        target = service_location(objects, namespace, name, port, scheme)
    else:
        target = await node_location(objects, kubelets, name, port, scheme)
    url = f"{target}/{'/'.join(path)}"
    return await forward(request, kubelets, url, kubelet=plural == "nodes")


def pod_location(objects, namespace: str | None, name: str, port: str, scheme: str) -> str:
    pod = objects.get(lookup("", "v1", "pods"), namespace, name)
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        raise bad_request(f"pod {name} has no IP address yet")
    if port and not port.isdigit():  # a container port's name, as upstream's pod location resolves it
        named = [p.get("containerPort") for c in (pod.get("spec") or {}).get("containers") or []
                 for p in c.get("ports") or [] if p.get("name") == port]
        if not named:
            raise bad_request(f'invalid port "{port}" for pod {name}')
        port = str(named[0])
    return f"{scheme or 'http'}://{host(ip)}" + (f":{port}" if port else "")


def service_location(objects, namespace: str | None, name: str, port: str, scheme: str) -> str:
    svc = objects.get(lookup("", "v1", "services"), namespace, name)
    ports = (svc.get("spec") or {}).get("ports") or []
    if port.isdigit():  # a Service port's number: its name finds the endpoints' port
        match = [p for p in ports if str(p.get("port")) == port]
        if not match:
            raise APIError(503, "ServiceUnavailable", f'no service port {port} found for service "{name}"')
        port_name = match[0].get("name") or ""
    else:
        if not any((p.get("name") or "") == port for p in ports):
            raise APIError(503, "ServiceUnavailable", f'no service port "{port}" found for service "{name}"')
        port_name = port
    try:
        eps = objects.get(lookup("", "v1", "endpoints"), namespace, name)
    except APIError:
        eps = {}
    choices = [(a["ip"], p["port"]) for sub in eps.get("subsets") or [] for p in sub.get("ports") or []
               if (p.get("name") or "") == port_name for a in sub.get("addresses") or [] if a.get("ip")]
    if not choices:
        raise APIError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
    ip, target = random.choice(choices)
    return f"{scheme or 'http'}://{host(ip)}:{target}"


async def node_location(objects, kubelets: Kubelets, name: str, port: str, scheme: str) -> str:
    node = objects.get(lookup("", "v1", "nodes"), None, name)
    if not port:  # the kubelet: its own address and port, https
        try:
            return await kubelets.kubelet_url(name)
        except NodeError as e:
            raise APIError(e.code, "InternalError" if e.code >= 500 else "BadRequest", str(e)) from None
    addresses = {a.get("type"): a.get("address") for a in (node.get("status") or {}).get("addresses") or []}
    address = next((addresses[t] for t in ADDRESS_TYPES if addresses.get(t)), None)
    if address is None:
        raise APIError(503, "ServiceUnavailable", f"no preferred addresses found for node {name}")
    return f"{scheme or 'http'}://{host(address)}:{port}"


def host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


async def forward(request: web.Request, kubelets: Kubelets, url: str, kubelet: bool) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    body = await request.read()
    async with kubelets.session(kubelet=kubelet) as session:
        try:
            resp = await session.request(request.method, url, params=list(request.query.items()), headers=headers,
                                         data=body or None, allow_redirects=False)
        except aiohttp.ClientConnectorError as e:
            why = (e.os_error.strerror or str(e.os_error)).lower() if e.os_error else str(e)
            raise APIError(503, "ServiceUnavailable", f"error trying to reach service: dial tcp {e.host}:{e.port}: "
                           f"connect: {why}") from None
        except aiohttp.ClientError as e:
            raise APIError(503, "ServiceUnavailable", f"error trying to reach service: {e}") from None
        async with resp:
            out = web.StreamResponse(status=resp.status, reason=resp.reason)
            for k, v in resp.headers.items():
                if k.lower() not in HOP_BY_HOP:
                    out.headers.add(k, v)
            await out.prepare(request)
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                async for chunk in resp.content.iter_any():
                    await out.write(chunk)
            with contextlib.suppress(ConnectionError):
                await out.write_eof()
            return out
