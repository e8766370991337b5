"""The Gateway API controller image (`netlab.dev/gateway-controller`): a controller for the
GatewayClasses whose spec.controllerName is its --controller-name (netlab.dev/gateway-controller),
driving Debian's nginx inside its pod as the ingress-nginx image does (ingress_nginx.py), beside it.

    python -m netlab.node.workloads.gateway --publish-service=netlab-gateway/netlab-gateway

It watches (in-cluster client) GatewayClasses, Gateways, HTTPRoutes, ReferenceGrants, Services,
EndpointSlices, Secrets and Namespaces; resolves them (gateway_model.py: attachments, references,
conditions), writes each listener's certificate Secret as a PEM under /etc/nginx/ssl, renders
/etc/nginx/nginx.conf (gateway_conf.py), checks it with `nginx -t` and reloads nginx when it changed,
and writes the statuses: the GatewayClasses', the Gateways' (their address is the --publish-service's
LoadBalancer address: every Gateway of the controller shares its data plane, as NGINX Gateway Fabric's
shared deployment does) and each HTTPRoute's status.parents entry for its Gateways.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import datetime
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from netlab.api.client import ApiError, Client, Informer
from netlab.kit import serving
from netlab.node.workloads import gateway_conf, gateway_model, nginx_conf
from netlab.node.workloads.ingress_nginx import CONF, SSL_DIR, fake_certificate, valid_pem

log = logging.getLogger("gateway-controller")
API = "gateway.networking.k8s.io"
RESOURCES = {"gatewayclasses": f"{API}/v1/gatewayclasses", "gateways": f"{API}/v1/gateways",
             "httproutes": f"{API}/v1/httproutes", "referencegrants": f"{API}/v1beta1/referencegrants",
             "services": "services", "endpointslices": "endpointslices", "secrets": "secrets",
             "namespaces": "namespaces"}
DEBOUNCE = 0.05


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(old: list[dict], new: list[dict], generation: int) -> list[dict]:
    """The new conditions, each keeping its lastTransitionTime while its status is unchanged, and
    the conditions of other types (someone else's) left as they were, as the spec asks."""
    before = {c["type"]: c for c in old or []}
    out = []
    for c in new:
        prev = before.pop(c["type"], None)
        t = prev["lastTransitionTime"] if prev and prev.get("status") == c["status"] else now()
        out.append(dict(c, observedGeneration=generation, lastTransitionTime=t))
    return out + [c for c in before.values() if c.get("reason") != "Pending"]  # the CRD's default Pending goes


def same(a: object, b: object) -> bool:
    """Equal but for lastTransitionTime (what a rewrite would change alone)."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "lastTransitionTime"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip(a) == strip(b)


class Controller:
    def __init__(self, args: argparse.Namespace, client: Client):
        self.args, self.client = args, client
        self.inf = {name: Informer(client, r) for name, r in RESOURCES.items()}
        self.dirty = asyncio.Event()
        for inf in self.inf.values():
            inf.add_handler(lambda *_: self.dirty.set(), lambda *_: self.dirty.set(), lambda *_: self.dirty.set())
        self.nginx: subprocess.Popen | None = None
        self.rendered = ""
        self.programmed = True  # the last rendered configuration passed nginx -t

    def address(self) -> str | None:
        ns, _, name = self.args.publish_service.partition("/")
        svc = self.inf["services"].get(ns, name) if name else None
        ingress = (((svc or {}).get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return ingress[0].get("ip") or ingress[0].get("hostname") if ingress else None

    def certificates(self, res: gateway_model.Resolved) -> dict[str, str]:
        """The listeners' Secrets written as PEMs (certificate, then key): namespace/name -> path."""
        out = {}
        for lst in res.listeners:
            if not lst.cert or lst.cert in out:
                continue
            ns, name = lst.cert.split("/", 1)
            data = (self.inf["secrets"].get(ns, name) or {}).get("data") or {}
            pem = base64.b64decode(data.get("tls.crt", "")) + b"\n" + base64.b64decode(data.get("tls.key", ""))
            path = SSL_DIR / f"gateway-{ns}-{name}.pem"
            if not path.exists() or path.read_bytes() != pem:
                if not valid_pem(pem):
                    log.warning("secret %s: not a valid certificate and key; using the default", lst.cert)
                    continue
                path.write_bytes(pem)
                path.chmod(0o600)
            out[lst.cert] = str(path)
        return out

    def resolve(self) -> gateway_model.Resolved:
        i = self.inf
        return gateway_model.resolve(self.args.controller_name, i["gatewayclasses"].list(), i["gateways"].list(),
                                     i["httproutes"].list(), i["services"].list(), i["secrets"].list(),
                                     i["referencegrants"].list(), i["namespaces"].list(), self.address())

    async def sync(self) -> None:
        res = self.resolve()
        text = gateway_conf.render(res, self.inf["services"].list(), self.inf["endpointslices"].list(),
                                   self.certificates(res))
        if text != self.rendered:
            candidate = CONF.with_suffix(".new")
            candidate.write_text(text)
            test = await asyncio.to_thread(subprocess.run, ["nginx", "-t", "-q", "-e", "stderr", "-c", str(candidate)],
                                           capture_output=True, text=True)
            self.programmed = test.returncode == 0
            if not self.programmed:
                log.error("the new configuration does not pass nginx -t; keeping the running one: %s", test.stderr)
            else:
                candidate.replace(CONF)
                self.rendered = text
                if self.nginx is None:
                    self.nginx = subprocess.Popen(["nginx", "-e", "stderr", "-c", str(CONF)])
                    log.info("nginx started (pid %d)", self.nginx.pid)
                else:
                    self.nginx.send_signal(signal.SIGHUP)  # a graceful reload
                    log.info("nginx reloaded: %d gateways, %d routes", len(res.gateways), len(res.routes))
        await self.write_statuses(res)

    async def put_status(self, resource: str, obj: dict, status: dict) -> None:
        if same(obj.get("status") or {}, status):
            return
        try:
            await self.client.update(RESOURCES[resource], dict(obj, status=status), subresource="status")
        except ApiError as e:
            log.info("status of %s %s not updated (%s); the next sync retries", resource, gateway_model.key(obj),
                     e.reason)

    async def write_statuses(self, res: gateway_model.Resolved) -> None:
        for name, want in res.classes.items():
            gc = self.inf["gatewayclasses"].get(None, name)
            if gc:
                old = gc.get("status") or {}
                gen = gc["metadata"].get("generation", 1)
                await self.put_status("gatewayclasses", gc, dict(old, conditions=merge_conditions(
                    old.get("conditions"), want["conditions"], gen), supportedFeatures=want["supportedFeatures"]))
        for gw, want in res.gateways.values():
            old = gw.get("status") or {}
            gen = gw["metadata"].get("generation", 1)
            conds = want["conditions"]
            if not self.programmed:
                conds = [c if c["type"] != "Programmed" else gateway_model.cond(
                    "Programmed", False, "Invalid", "nginx rejected the configuration") for c in conds]
            before = {lst["name"]: lst for lst in old.get("listeners") or []}
            status = dict(old, conditions=merge_conditions(old.get("conditions"), conds, gen),
                          listeners=[dict(lst, conditions=merge_conditions(
                              (before.get(lst["name"]) or {}).get("conditions"), lst["conditions"], gen))
                              for lst in want["listeners"]])
            if "addresses" in want:
                status["addresses"] = want["addresses"]
            else:
                status.pop("addresses", None)
            await self.put_status("gateways", gw, status)
        for route, parents in res.routes.values():
            old = copy.deepcopy((route.get("status") or {}).get("parents") or [])
            gen = route["metadata"].get("generation", 1)
            mine = []
            for p in parents:
                prev = next((o for o in old if o.get("parentRef") == p["parentRef"]
                             and o.get("controllerName") == p["controllerName"]), {})
                mine.append(dict(p, conditions=merge_conditions(prev.get("conditions"), p["conditions"], gen)))
            others = [o for o in old if o.get("controllerName") != self.args.controller_name]
            await self.put_status("httproutes", route, dict(route.get("status") or {}, parents=others + mine))
        for route in self.inf["httproutes"].list():  # routes that left our Gateways: our entries go
            if gateway_model.key(route) in res.routes:
                continue
            parents = (route.get("status") or {}).get("parents") or []
            others = [o for o in parents if o.get("controllerName") != self.args.controller_name]
            if len(others) < len(parents):
                await self.put_status("httproutes", route, dict(route["status"], parents=others))

    async def run(self) -> None:
        if shutil.which("nginx") is None:
            sys.exit("nginx is not installed on this machine: apt-get install nginx (vagrant/provision.sh "
                     "installs it)")
        for d in ("client-body", "proxy", "fastcgi", "uwsgi", "scgi"):
            Path(nginx_conf.TEMP, d).mkdir(parents=True, exist_ok=True)
            Path(nginx_conf.TEMP, d).chmod(0o777)
        SSL_DIR.mkdir(parents=True, exist_ok=True)
        fake_certificate(Path(nginx_conf.DEFAULT_CERT))
        tasks = [asyncio.create_task(inf.run()) for inf in self.inf.values()]
        log.info("waiting for the Gateway API CRDs (the standard-install manifest) and the caches")
        await asyncio.gather(*(inf.wait_synced() for inf in self.inf.values()))
        await serving.serve(f"0.0.0.0:{self.args.healthz_port}", {"/healthz": self.healthz})
        while True:
            for t in tasks:
                if t.done():
                    t.result()
            if self.nginx is not None and self.nginx.poll() is not None:
                sys.exit(f"nginx exited with status {self.nginx.returncode}")
            self.dirty.clear()
            await self.sync()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), 5)
            await asyncio.sleep(DEBOUNCE)

    async def healthz(self, _: web.Request) -> web.Response:
        ok = self.nginx is not None and self.nginx.poll() is None
        return web.Response(text="ok" if ok else "nginx is not running", status=200 if ok else 500)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="gateway-controller")
    p.add_argument("--controller-name", default="netlab.dev/gateway-controller",
                   help="the GatewayClasses' spec.controllerName this controller serves")
    p.add_argument("--publish-service", default="netlab-gateway/netlab-gateway",
                   help="NAMESPACE/NAME of the LoadBalancer Service in front of it: the Gateways' address")
    p.add_argument("--healthz-port", type=int, default=10254)
    args, _ = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)

    async def go() -> None:
        async with Client.in_cluster() as client:
            controller = Controller(args, client)
            try:
                await controller.run()
            finally:
                if controller.nginx is not None and controller.nginx.poll() is None:
                    controller.nginx.send_signal(signal.SIGQUIT)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        controller.nginx.wait(5)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(go())


if __name__ == "__main__":
    os.umask(0o022)
    main()
