"""kube-proxy's service health server (upstream's pkg/proxy/healthcheck/service_health.go): for
each LoadBalancer Service with externalTrafficPolicy Local, an HTTP server on its
spec.healthCheckNodePort on every node, answering any path with how many of the Service's ready
endpoints are on this node: 200 when there is one or more (and kube-proxy is healthy), 503
otherwise. A load balancer (a cloud's, or anything that checks `/healthz`) sends traffic only to
nodes that answer 200, which is how externalTrafficPolicy Local keeps working from outside.

    {"service": {"namespace": "default", "name": "web"}, "localEndpoints": 1, "serviceProxyHealthy": true}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from aiohttp import web

from netlab.kit import serving
from proxy.model import ServicePort

log = logging.getLogger("netlab.proxy")


def local_endpoints(ports: list[ServicePort], node: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(namespace, name) -> (health-check node port, this node's ready endpoints) of each Service
    that has a health-check node port."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for sp in ports:
        if not sp.health_check_node_port:
            continue
        nsn = (sp.namespace, sp.name)
        count = len({e.ip for e in sp.endpoints if e.node == node and e.ready})
        prev = out.get(nsn, (0, 0))[1]
        out[nsn] = (sp.health_check_node_port, max(prev, count))
    return out


def body(nsn: tuple[str, str], count: int, healthy: bool) -> str:
    return json.dumps({"service": {"namespace": nsn[0], "name": nsn[1]}, "localEndpoints": count,
                       "serviceProxyHealthy": healthy}, indent="\t")


class ServiceHealthServer:
    """One listener per health-check node port, opened and closed as Services come and go."""

    def __init__(self, node: str, healthy: Callable[[], bool], host: str = "0.0.0.0"):
        self.node, self.healthy, self.host = node, healthy, host
        self.counts: dict[tuple[str, str], int] = {}
        self.servers: dict[int, tuple[tuple[str, str], web.AppRunner]] = {}

    def handler(self, nsn: tuple[str, str]) -> serving.Handler:
        async def answer(_: web.Request) -> web.Response:
            count, healthy = self.counts.get(nsn, 0), self.healthy()
            return web.Response(text=body(nsn, count, healthy), status=200 if count and healthy else 503,
                                content_type="application/json",
                                headers={"X-Content-Type-Options": "nosniff",
                                         "X-Load-Balancing-Endpoint-Weight": str(count)})
        return answer

    async def sync(self, ports: list[ServicePort]) -> None:
        want = local_endpoints(ports, self.node)
        self.counts = {nsn: count for nsn, (_, count) in want.items()}
        by_port = {port: nsn for nsn, (port, _) in want.items()}
        for port, (nsn, runner) in list(self.servers.items()):
            if by_port.get(port) != nsn:
                await runner.cleanup()
                del self.servers[port]
        for port, nsn in by_port.items():
            if port in self.servers:
                continue
            try:
                runner = await serving.serve(f"{self.host}:{port}", {"/{path:.*}": self.handler(nsn)})
            except OSError as e:  # upstream records FailedToStartServiceHealthcheck and goes on
                log.warning("failed to start the health check server for %s/%s on port %d: %s", *nsn, port, e)
                continue
            self.servers[port] = (nsn, runner)
