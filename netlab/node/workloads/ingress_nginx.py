"""The ingress controller image (`registry.k8s.io/ingress-nginx/controller`): ingress-nginx's
controller loop driving Debian's nginx, run as the container's process inside its pod.

    python -m netlab.node.workloads.ingress_nginx --publish-service=ingress-nginx/ingress-nginx-controller \\
        --controller-class=k8s.io/ingress-nginx --ingress-class=nginx

It watches (in-cluster client, the pod's service account) Ingresses, IngressClasses, Services,
EndpointSlices and Secrets; takes the Ingresses of its class (ingressClassName naming an
IngressClass whose spec.controller is its --controller-class, or the kubernetes.io/ingress.class
annotation naming --ingress-class); writes each TLS Secret they use as a PEM under
/etc/nginx/ssl; renders /etc/nginx/nginx.conf (nginx_conf.py: upstreams of the pods' ready
endpoints, as ingress-nginx routes to endpoints directly, not through the ClusterIP); checks it
with `nginx -t` and reloads nginx (SIGHUP to its master) when it changed; and writes the
--publish-service's load-balancer address into each Ingress's status.loadBalancer. /healthz on
:10254 answers once nginx runs.

The container's mount namespace already is what nginx needs: /etc is a per-container overlay
(nginx.conf and the certificates land there, not on the host), and the pod's emptyDir at /var/lib/nginx
takes nginx's pid and temporary files; nginx is the host's (apt-get install nginx).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from netlab.api.client import ApiError, Client, Informer
from netlab.kit import serving
from netlab.node.workloads import nginx_conf

log = logging.getLogger("ingress-nginx")
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
CONF = Path("/etc/nginx/nginx.conf")
SSL_DIR = Path("/etc/nginx/ssl")
DEBOUNCE = 0.05  # seconds: a burst of events makes one reload


def fake_certificate(path: Path) -> None:
    """ingress-nginx's default certificate for servers without one (self-signed)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Kubernetes Ingress Controller Fake Certificate")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("ingress.local")]), critical=False)
            .sign(key, hashes.SHA256()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def valid_pem(pem: bytes) -> bool:
    """A certificate and its key that go together (what nginx would load)."""
    with tempfile.NamedTemporaryFile(suffix=".pem", dir=nginx_conf.TEMP) as f:  # the pod's own directory
        f.write(pem)
        f.flush()
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(f.name)
            return True
        except (ssl.SSLError, OSError):
            return False


class Controller:
    def __init__(self, args: argparse.Namespace, client: Client):
        self.args, self.client = args, client
        self.inf = {r: Informer(client, r) for r in ("ingresses", "ingressclasses", "services", "endpointslices",
                                                     "secrets")}
        self.dirty = asyncio.Event()
        for inf in self.inf.values():
            inf.add_handler(lambda *_: self.dirty.set(), lambda *_: self.dirty.set(), lambda *_: self.dirty.set())
        self.nginx: subprocess.Popen | None = None
        self.rendered = ""

    def ours(self, ing: dict) -> bool:
        """An Ingress of this controller's class, as ingress-nginx picks them."""
        spec = ing.get("spec") or {}
        cls = spec.get("ingressClassName")
        annotation = (ing["metadata"].get("annotations") or {}).get(CLASS_ANNOTATION)
        if cls:
            ic = self.inf["ingressclasses"].get(None, cls)
            return bool(ic) and (ic.get("spec") or {}).get("controller") == self.args.controller_class
        if annotation is not None:
            return annotation == self.args.ingress_class
        return self.args.watch_ingress_without_class

    def certificates(self, ingresses: list[dict]) -> dict[tuple[str, str], str]:
        """The TLS Secrets the Ingresses name, written as PEMs (certificate, then key)."""
        out = {}
        for ing in ingresses:
            ns = ing["metadata"]["namespace"]
            for tls in (ing.get("spec") or {}).get("tls") or []:
                name = tls.get("secretName")
                secret = self.inf["secrets"].get(ns, name) if name else None
                if not secret or secret.get("type") != "kubernetes.io/tls":
                    continue
                data = secret.get("data") or {}
                pem = base64.b64decode(data.get("tls.crt", "")) + b"\n" + base64.b64decode(data.get("tls.key", ""))
                path = SSL_DIR / f"{ns}-{name}.pem"
                if not path.exists() or path.read_bytes() != pem:
                    if not valid_pem(pem):
                        log.warning("secret %s/%s: not a valid certificate and key; using the default", ns, name)
                        continue
                    path.write_bytes(pem)
                    path.chmod(0o600)
                out[(ns, name)] = str(path)
        return out

    def render(self) -> tuple[str, list[dict]]:
        ings = [i for i in self.inf["ingresses"].list() if self.ours(i)]
        model = nginx_conf.build(ings, self.inf["services"].list(), self.inf["endpointslices"].list(),
                                 self.certificates(ings))
        return nginx_conf.render(model), ings

    async def sync(self) -> None:
        text, ings = self.render()
        if text != self.rendered:
            candidate = CONF.with_suffix(".new")
            candidate.write_text(text)
            test = await asyncio.to_thread(subprocess.run, ["nginx", "-t", "-q", "-e", "stderr", "-c", str(candidate)],
                                           capture_output=True, text=True)
            if test.returncode != 0:
                log.error("the new configuration does not pass nginx -t; keeping the running one: %s", test.stderr)
            else:
                candidate.replace(CONF)
                self.rendered = text
                if self.nginx is None:
                    self.nginx = subprocess.Popen(["nginx", "-e", "stderr", "-c", str(CONF)])
                    log.info("nginx started (pid %d)", self.nginx.pid)
                else:
                    self.nginx.send_signal(signal.SIGHUP)  # a graceful reload: `nginx -s reload`
                    log.info("backend reloaded: %d ingresses", len(ings))
        await self.publish(ings)

    async def publish(self, ings: list[dict]) -> None:
        """status.loadBalancer of each Ingress: the publish Service's address, as
        ingress-nginx's --publish-service does."""
        ns, _, name = self.args.publish_service.partition("/")
        svc = self.inf["services"].get(ns, name) if name else None
        lb = ((svc or {}).get("status") or {}).get("loadBalancer") or {}
        want = {"ingress": [{k: i[k] for k in ("ip", "hostname") if i.get(k)} for i in lb.get("ingress") or []]} \
            if lb.get("ingress") else {}
        for ing in ings:
            if ((ing.get("status") or {}).get("loadBalancer") or {}) == want:
                continue
            body = dict(ing, status=dict(ing.get("status") or {}, loadBalancer=want))
            try:
                await self.client.update("ingresses", body, subresource="status")
            except ApiError as e:
                log.info("status of %s/%s not updated (%s); next sync retries", ing["metadata"]["namespace"],
                         ing["metadata"]["name"], e.reason)

    async def run(self) -> None:
        if shutil.which("nginx") is None:
            sys.exit("nginx is not installed on this machine: apt-get install nginx (vagrant/provision.sh "
                     "installs it)")
        for d in ("client-body", "proxy", "fastcgi", "uwsgi", "scgi"):  # nginx's workers (nobody) write there
            Path(nginx_conf.TEMP, d).mkdir(parents=True, exist_ok=True)
            Path(nginx_conf.TEMP, d).chmod(0o777)
        SSL_DIR.mkdir(parents=True, exist_ok=True)
        fake_certificate(Path(nginx_conf.DEFAULT_CERT))
        tasks = [asyncio.create_task(inf.run()) for inf in self.inf.values()]
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
                await asyncio.wait_for(self.dirty.wait(), 5)  # and a periodic resync (statuses)
            await asyncio.sleep(DEBOUNCE)

    async def healthz(self, _: web.Request) -> web.Response:
        ok = self.nginx is not None and self.nginx.poll() is None
        return web.Response(text="ok" if ok else "nginx is not running", status=200 if ok else 500)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="nginx-ingress-controller")
    p.add_argument("--publish-service", default="", help="NAMESPACE/NAME of the Service whose address the "
                   "Ingresses' status gets")
    p.add_argument("--controller-class", default="k8s.io/ingress-nginx")
    p.add_argument("--ingress-class", default="nginx", help="the kubernetes.io/ingress.class annotation's value")
    p.add_argument("--watch-ingress-without-class", type=lambda s: s.lower() == "true", default=False)
    p.add_argument("--healthz-port", type=int, default=10254)
    p.add_argument("--election-id", default="", help="(accepted for compatibility; one replica leads alone)")
    args, _ = p.parse_known_args(argv)  # (ingress-nginx's other flags: --configmap, --validating-webhook, ...)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)

    async def go() -> None:
        async with Client.in_cluster() as client:
            controller = Controller(args, client)
            try:
                await controller.run()
            finally:
                if controller.nginx is not None and controller.nginx.poll() is None:
                    controller.nginx.send_signal(signal.SIGQUIT)  # graceful shutdown
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        controller.nginx.wait(5)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(go())


if __name__ == "__main__":
    os.umask(0o022)
    main()
