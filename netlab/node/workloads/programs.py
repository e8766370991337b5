"""The built-in programs: agnhost (netexec, serve-hostname, pause), nginx, httpd, http-echo, pause.

Each runs as the container's own process inside the pod's namespaces, on a deliberately small
HTTP/1.1 server (standard library sockets and threads, no http.server, no asyncio) so that a pod
costs a few MB. Behaviour follows the real programs where tutorials and Kubernetes' own network
tests rely on it (agnhost's /hostname, /clientip, /echo, /dial, /healthz, /shell and its UDP
commands).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

HOSTNAME = socket.gethostname()
REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 412: "Precondition Failed",
           500: "Internal Server Error", 503: "Service Unavailable"}


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], client: tuple, body: bytes):
        self.method, self.headers, self.client, self.body = method, headers, client, body
        parts = urlsplit(target)
        self.path = parts.path
        self.query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}


def serve_http(port: int, handler, host: str = "") -> threading.Thread:
    """Serve `handler(request) -> (status, content_type, body)` on TCP `port`, keep-alive."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    return
                try:
                    method, target, version = line.decode("latin-1").split(" ", 2)
                except ValueError:
                    return
                headers = {}
                while True:
                    h = self.rfile.readline(65537)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = self.rfile.read(int(headers.get("content-length", "0") or 0))
                try:
                    status, ctype, out = handler(Request(method, target, headers, self.client_address, body))
                except Exception as e:  # noqa: BLE001 - answer 500, keep serving
                    status, ctype, out = 500, "text/plain", f"{type(e).__name__}: {e}".encode()
                if isinstance(out, str):
                    out = out.encode()
                # HTTP/1.0 closes unless it asks for keep-alive; HTTP/1.1 keeps unless it asks to close
                conn = headers.get("connection", "").lower()
                close = conn == "close" or (version.strip() == "HTTP/1.0" and conn != "keep-alive")
                date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
                self.wfile.write(f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\nContent-Type: {ctype}\r\n"
                                 f"Content-Length: {len(out)}\r\nDate: {date}"
                                 f"\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n".encode() + out)
                if close:
                    return

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    srv = Server((host, port), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    print(f"serving HTTP on {host or '0.0.0.0'}:{port}", flush=True)
    return t


def flags(args: list[str], defaults: dict[str, str]) -> dict[str, str]:
    """Go-style flags: --name=value, --name value, -name=value."""
    out = dict(defaults)
    i = 0
    while i < len(args):
        a = args[i].lstrip("-")
        if "=" in a:
            k, v = a.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("-") and a in defaults:
            k, v = a, args[i + 1]
            i += 1
        else:
            k, v = a, "true"
        out[k] = v
        i += 1
    return out


def wait_forever(delay_shutdown: float = 0) -> None:
    """Serve until SIGTERM; with `delay_shutdown`, go on serving that many seconds after it (as
    agnhost's --delay-shutdown does, for tests of graceful termination)."""
    if delay_shutdown > 0:
        signal.signal(signal.SIGTERM, lambda *_: threading.Timer(delay_shutdown, os._exit, (0,)).start())
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


# --- agnhost -----------------------------------------------------------------------------------

def dial(q: dict[str, str]) -> tuple[int, str, str]:
    """/dial: ask another endpoint `request` over http or udp, `tries` times (Kubernetes' e2e
    network tests use it to check pod-to-pod and Service connectivity)."""
    host, port = q.get("host", ""), int(q.get("port", "0") or 0)
    request, proto, tries = q.get("request", "hostname"), q.get("protocol", "http"), int(q.get("tries", "1") or 1)
    responses, errors = [], []
    for _ in range(tries):
        try:
            if proto == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(1)
                    s.sendto(request.encode(), (host, port))
                    responses.append(s.recv(65535).decode().strip())
            else:
                with socket.create_connection((host, port), timeout=5) as s:
                    s.sendall(f"GET /{request.lstrip('/')} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                              .encode())
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
                    responses.append(data.split(b"\r\n\r\n", 1)[-1].decode().strip())
        except OSError as e:
            errors.append(f"reading from {host}:{port}: {e}")
    return 200, "application/json", json.dumps({"responses": responses, "errors": errors})


def netexec(args: list[str]) -> None:
    f = flags(args, {"http-port": "8080", "udp-port": "8081", "sctp-port": "-1", "delay-shutdown": "0"})
    started = time.time()

    def handle(r: Request):
        q = r.query
        if r.path == "/":
            return 200, "text/plain", f"NOW: {time.strftime('%Y-%m-%d %H:%M:%S')}"
        if r.path in ("/hostname", "/hostName"):
            return 200, "text/plain", HOSTNAME
        if r.path == "/clientip":
            return 200, "text/plain", f"{r.client[0]}:{r.client[1]}"
        if r.path == "/echo":
            code = int(q.get("code", "200") or 200)
            return code, "text/plain", q.get("msg", "")
        if r.path == "/header":
            return 200, "text/plain", r.headers.get(q.get("key", "").lower(), "")
        if r.path == "/healthz":
            return 200, "text/plain", ""
        if r.path == "/dial":
            return dial(q)
        if r.path == "/shell":
            p = subprocess.run(["sh", "-c", q.get("shellCommand", q.get("cmd", ""))], capture_output=True, text=True)
            out = {"output": p.stdout}
            if p.returncode:
                out["error"] = f"exit status {p.returncode}"
            return 200, "application/json", json.dumps(out)
        if r.path == "/exit":
            code = int(q.get("code", "0") or 0)
            threading.Timer(0.05, os._exit, (code,)).start()
            return 200, "text/plain", ""
        if r.path == "/uptime":
            return 200, "text/plain", f"{time.time() - started:.0f}"
        return 404, "text/plain", "404 page not found\n"

    serve_http(int(f["http-port"]), handle)
    udp = int(f["udp-port"])
    if udp > 0:
        threading.Thread(target=udp_server, args=(udp,), daemon=True).start()
    wait_forever(float(f["delay-shutdown"]))


def udp_server(port: int) -> None:
    """agnhost's UDP commands: hostname, echo <text>, clientip."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", port))
    print(f"serving UDP on :{port}", flush=True)
    while True:
        data, addr = s.recvfrom(65535)
        cmd = data.decode(errors="replace").strip()
        if cmd in ("hostname", "hostName"):
            out = HOSTNAME
        elif cmd.startswith("echo "):
            out = cmd[5:]
        elif cmd == "clientip":
            out = f"{addr[0]}:{addr[1]}"
        else:
            out = f"unknown command: {cmd}"
        s.sendto(out.encode(), addr)


def serve_hostname(args: list[str]) -> None:
    f = flags(args, {"port": "9376", "http": "true", "udp": "false", "tcp": "false"})
    port = int(f["port"])
    if f["http"] == "true":
        serve_http(port, lambda r: (200, "text/plain", HOSTNAME))
    if f["udp"] == "true":
        threading.Thread(target=lambda: _udp_reply(port, HOSTNAME), daemon=True).start()
    wait_forever()


def _udp_reply(port: int, text: str) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", port))
    while True:
        _, addr = s.recvfrom(65535)
        s.sendto(text.encode(), addr)


def agnhost(args: list[str]) -> None:
    sub = args[0] if args else ""
    if sub == "netexec":
        netexec(args[1:])
    elif sub == "serve-hostname":
        serve_hostname(args[1:])
    elif sub == "pause":
        print("Paused", flush=True)
        wait_forever()
    else:
        print("agnhost (netlab): subcommands netexec, serve-hostname, pause", file=sys.stderr)
        sys.exit(0 if not sub else 1)


# --- web servers -------------------------------------------------------------------------------

NGINX_PAGE = """<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>
<p><em>Thank you for using nginx.</em> (served by netlab on {host})</p>
</body>
</html>
"""


def web(page: str, server: str, docroot: str) -> None:
    """The image's default page, or what a volume mounted at its document root holds (as the
    two-container pod of the Kubernetes docs writes nginx's index.html)."""
    def handle(r: Request):
        rel = r.path.split("?")[0].lstrip("/") or "index.html"
        f = os.path.join(docroot, rel)
        if ".." not in rel.split("/") and os.path.isfile(f):
            with open(f, "rb") as fh:
                return 200, "text/html" if f.endswith((".html", ".htm")) else "text/plain", fh.read()
        if r.path in ("/", "/index.html"):
            return 200, "text/html", page.format(host=HOSTNAME)
        return 404, "text/html", f"<html><body><h1>404 Not Found</h1><hr><center>{server}</center></body></html>\n"
    serve_http(80, handle)
    wait_forever()


def http_echo(args: list[str]) -> None:
    f = flags(args, {"text": "", "listen": ":5678", "status-code": "200"})
    port = int(f["listen"].rsplit(":", 1)[1])
    text = f["text"] + "\n"

    def handle(r: Request):
        if r.path == "/health":
            return 200, "application/json", '{"status":"ok"}'
        return int(f["status-code"]), "text/plain", text
    serve_http(port, handle)
    wait_forever()


def main(argv: list[str] | None = None) -> None:
    """Run program `argv[0]` with `argv[1:]` (default: this process's arguments)."""
    global HOSTNAME
    HOSTNAME = socket.gethostname()  # the pod's: this module may have been loaded before the pod existed
    name, *args = argv if argv is not None else sys.argv[1:]
    if name == "agnhost":
        agnhost(args)
    elif name == "nginx":
        web(NGINX_PAGE, "nginx", "/usr/share/nginx/html")
    elif name == "httpd":
        web("<html><body><h1>It works!</h1></body></html>\n", "Apache", "/usr/local/apache2/htdocs")
    elif name == "http-echo":
        http_echo(args)
    elif name == "pause":
        wait_forever()
    else:
        sys.exit(f"netlab.workloads: no program {name!r}")
