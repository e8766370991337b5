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
REASONS = {200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found", 400: "Bad Request",
           404: "Not Found", 405: "Method Not Allowed", 412: "Precondition Failed", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], client: tuple, body: bytes):
        self.method, self.target, self.headers, self.client, self.body = method, target, headers, client, body
        parts = urlsplit(target)
        self.path = parts.path
        self.query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}


BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Connection: close\r\n\r\n400 Bad Request")


def serve_http(port: int, handler, host: str = "", quiet: bool = False) -> threading.Thread:
    """Serve `handler(request) -> (status, content_type, body[, headers])` on TCP `port`, keep-alive."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    return
                try:
                    method, target, version = line.decode("latin-1").split(" ", 2)
                    if not version.strip().startswith("HTTP/"):
                        raise ValueError(line)
                except ValueError:  # as Go's net/http answers a request it cannot parse
                    self.wfile.write(BAD_REQUEST)
                    return
                headers = {}
                while True:
                    h = self.rfile.readline(65537)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = self.rfile.read(int(headers.get("content-length", "0") or 0))
                extra: dict[str, str] = {}
                try:
                    status, ctype, out, *more = handler(Request(method, target, headers, self.client_address, body))
                    extra = more[0] if more else {}
                except Exception as e:  # noqa: BLE001 - answer 500, keep serving
                    status, ctype, out = 500, "text/plain", f"{type(e).__name__}: {e}".encode()
                if isinstance(out, str):
                    out = out.encode()
                # HTTP/1.0 closes unless it asks for keep-alive; HTTP/1.1 keeps unless it asks to close
                conn = headers.get("connection", "").lower()
                close = (conn == "close" or (version.strip() == "HTTP/1.0" and conn != "keep-alive")
                         or extra.get("Connection") == "close")
                head = {"Content-Type": ctype, "Content-Length": str(len(out)),
                        "Date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()), **extra}
                if close:
                    head["Connection"] = "close"
                lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
                self.wfile.write(f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\n{lines}\r\n".encode() + out)
                if close:
                    return

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    srv = Server((host, port), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    if not quiet:
        print(f"serving HTTP on {host or '0.0.0.0'}:{port}", flush=True)
    return t


def flags(args: list[str], defaults: dict[str, str]) -> dict[str, str]:
    """Go-style flags: --name=value, --name value, -name=value (a boolean takes no separate value)."""
    return parse(args, defaults)[0]


def parse(args: list[str], defaults: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The flags and the positional arguments."""
    out, rest = dict(defaults), []
    i = 0
    while i < len(args):
        if not args[i].startswith("-") or args[i] == "-":
            rest.append(args[i])
            i += 1
            continue
        a = args[i].lstrip("-")
        if "=" in a:
            k, v = a.split("=", 1)
        elif (i + 1 < len(args) and not args[i + 1].startswith("-") and a in defaults
              and defaults[a] not in ("true", "false")):
            k, v = a, args[i + 1]
            i += 1
        else:
            k, v = a, "true"
        out[k] = v
        i += 1
    return out, rest


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


def log(msg: str) -> None:
    """As Go's log package prints: a timestamp, then the message, on stderr."""
    print(time.strftime("%Y/%m/%d %H:%M:%S ") + msg, file=sys.stderr, flush=True)


def serve_hostname(args: list[str]) -> None:
    """agnhost serve-hostname (and the serve_hostname image): the hostname over HTTP (default),
    raw TCP (written, then the connection closed) or UDP, on --port (9376)."""
    f = flags(args, {"port": "9376", "http": "true", "udp": "false", "tcp": "false", "close": "false"})
    port = int(f["port"])
    if f["http"] == "true" and "true" in (f["tcp"], f["udp"]):
        log("Can't server TCP/UDP mode and HTTP mode at the same time")
        sys.exit(1)
    if f["tcp"] == "true":
        threading.Thread(target=_tcp_reply, args=(port, HOSTNAME), daemon=True).start()
    if f["udp"] == "true":
        threading.Thread(target=_udp_reply, args=(port, HOSTNAME), daemon=True).start()
    if f["http"] == "true":
        close = {"Connection": "close"} if f["close"] == "true" else {}
        serve_http(port, lambda r: (200, "text/plain; charset=utf-8", HOSTNAME, close), quiet=True)
    log(f"Serving on port {port}.")
    wait_forever()


def _tcp_reply(port: int, text: str) -> None:
    s = socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    _bind_any(s, port)
    s.listen(128)
    while True:
        conn, addr = s.accept()
        log(f"TCP request from {addr[0].removeprefix('::ffff:')}:{addr[1]}")
        with conn:
            conn.sendall(text.encode())


def _udp_reply(port: int, text: str) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", port))
    while True:
        _, addr = s.recvfrom(65535)
        s.sendto(text.encode(), addr)


def _bind_any(s: socket.socket, port: int) -> None:
    """Both families on one socket where IPv6 is there (as Go's ":port"), else IPv4."""
    if s.family == socket.AF_INET6:
        try:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", port))
            return
        except OSError:
            s.close()
            s.__init__(socket.AF_INET, s.type)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))


def porter(args: list[str]) -> None:
    """agnhost porter: for each SERVE_PORT_N / SERVE_TCP_PORT_N (HTTP) and SERVE_UDP_PORT_N in the
    environment, the variable's value on port N (`--json-response`: {"Method", "Body"})."""
    f = flags(args, {"json-response": "false"})
    for key, value in os.environ.items():
        for prefix in ("SERVE_PORT_", "SERVE_TCP_PORT_"):
            if key.startswith(prefix):
                def handle(r: Request, value=value):
                    if f["json-response"] == "true":
                        return 200, "application/json", json.dumps({"Method": r.method, "Body": value})
                    return 200, "text/plain; charset=utf-8", value
                serve_http(int(key[len(prefix):]), handle, quiet=True)
        if key.startswith("SERVE_UDP_PORT_"):
            threading.Thread(target=_udp_reply, args=(int(key[len("SERVE_UDP_PORT_"):]), value), daemon=True).start()
            log(f"Started UDP server on port {key[len('SERVE_UDP_PORT_'):]}")
    wait_forever()


def test_webserver(args: list[str]) -> None:
    """agnhost test-webserver: any file of the container's filesystem, by its path, on --port (80)."""
    f = flags(args, {"port": "80"})
    cors = {"Cache-Control": "private", "Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "DNT,X-Mx-ReqToken,Keep-Alive,User-Agent,X-Requested-With,Cache-Control,"
                                            "Content-Type"}

    def handle(r: Request):
        path = os.path.normpath("/" + r.path)
        if os.path.isdir(path):
            names = sorted(n + ("/" if os.path.isdir(os.path.join(path, n)) else "") for n in os.listdir(path))
            links = "".join(f'<a href="{n}">{n}</a>\n' for n in names)
            return 200, "text/html; charset=utf-8", f"<pre>\n{links}</pre>\n", cors
        try:
            with open(path, "rb") as fh:
                return 200, "text/plain; charset=utf-8", fh.read(), cors
        except OSError:
            return 404, "text/plain; charset=utf-8", "404 page not found\n", cors
    serve_http(int(f["port"]), handle, quiet=True)
    wait_forever()


def liveness(args: list[str]) -> None:
    """agnhost liveness (and the liveness image's /server): /healthz answers 200 "ok" for 10 s,
    then 500 "error: <seconds>"; /started; /redirect?loc=; on port 8080."""
    started = time.monotonic()

    def handle(r: Request):
        age = time.monotonic() - started
        if r.path == "/started":
            return 200, "text/plain; charset=utf-8", f"{age:.9f}s"
        if r.path == "/healthz":
            if age > 10:
                return 500, "text/plain; charset=utf-8", f"error: {age}"
            return 200, "text/plain; charset=utf-8", "ok"
        if r.path == "/redirect":
            loc = r.query.get("loc", "")
            return 302, "text/html; charset=utf-8", f'<a href="{loc}">Found</a>.\n\n', {"Location": loc}
        return 404, "text/plain; charset=utf-8", "404 page not found\n"
    serve_http(8080, handle, quiet=True)
    wait_forever()


def connect(args: list[str]) -> int:
    """agnhost connect HOST:PORT: exit 0 if a connection opens, else 1 with upstream's prefixes on
    stderr (UNKNOWN, TIMEOUT, DNS, REFUSED, OTHER) that tests look for."""
    f, dests = parse(args, {"timeout": "0s", "protocol": "tcp", "udp-data": "hostname", "sctp-data": "hostname"})
    if len(dests) != 1:
        print(f"Error: accepts 1 arg(s), received {len(dests)}", file=sys.stderr)
        return 1
    dest, timeout = dests[0], _duration(f["timeout"]) or None
    host, sep, port = dest.rpartition(":")
    if not sep or not port.isdigit():
        print(f"UNKNOWN: address {dest}: missing port in address", file=sys.stderr)
        return 1
    host = host.strip("[]")
    kind = socket.SOCK_DGRAM if f["protocol"] == "udp" else socket.SOCK_STREAM
    if f["protocol"] not in ("", "tcp", "udp"):
        print(f"Unsupported protocol\n{f['protocol']}", file=sys.stderr, end="")
        return 1
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, int(port), type=kind)[0]
    except socket.gaierror as e:
        print(f"DNS: lookup {host}: {e.strerror}", file=sys.stderr)
        return 1
    with socket.socket(family, kind) as s:
        s.settimeout(timeout)
        try:
            s.connect(addr)
            if kind == socket.SOCK_DGRAM:
                s.send((f["udp-data"] + "\n").encode())
                if not s.recv(1024):
                    print("OTHER: No data received from the server. Cannot guarantee the server received the "
                          "request.", file=sys.stderr)
                    return 1
            return 0
        except TimeoutError as e:
            print("TIMEOUT" + (f": {e}" if kind == socket.SOCK_DGRAM else ""), file=sys.stderr)
        except ConnectionRefusedError as e:
            print("REFUSED" + (f": {e}" if kind == socket.SOCK_DGRAM else ""), file=sys.stderr)
        except OSError as e:
            print(f"OTHER: dial {f['protocol'] or 'tcp'} {dest}: {e.strerror or e}", file=sys.stderr)
    return 1


def _duration(text: str) -> float:
    """A Go duration (`5s`, `1m30s`, `500ms`, `0`) in seconds."""
    import re
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total = 0.0
    for num, unit in re.findall(r"([0-9.]+)(ms|us|µs|ns|h|m|s)?", text):
        total += float(num) * units[unit or "s"]
    return total


def _resolv(key: str) -> list[str]:
    out = []
    with open("/etc/resolv.conf") as fh:
        for line in fh:
            words = line.split()
            if words and words[0] == key:
                out += words[1:]
    return out


def mounttest(args: list[str]) -> int:
    """agnhost mounttest: in upstream's order, the fs type, new files of the given modes, mode,
    permissions, owner and content of paths, printed as upstream prints them."""
    keys = ["fs_type", "new_file_0644", "new_file_0666", "new_file_0660", "new_file_0777", "file_mode", "file_perm",
            "file_owner", "file_content", "file_content_in_loop"]
    f = flags(args, {**dict.fromkeys(keys, ""), "retry_time": "180", "break_on_expected_content": "true"})
    os.umask(0)
    failed = False

    def content(path: str) -> bool:
        try:
            with open(path) as fh:
                print(f'content of file "{path}": {fh.read()}')
            return True
        except OSError as e:
            print(f'error reading file content for "{path}": {_goerr("open", path, e)}')
            return False

    for key in keys:
        path = f[key]
        if not path:
            continue
        try:
            if key == "fs_type":
                print(f'mount type of "{path}": {_fs_type(path)}')
            elif key.startswith("new_file_"):
                mode = int(key[-4:], 8)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                os.write(fd, b"mount-tester new file\n")
                os.close(fd)
                failed |= not content(path)
            elif key == "file_mode":
                print(f'mode of file "{path}": {_go_mode(os.stat(path).st_mode)}')
            elif key == "file_perm":
                print(f'perms of file "{path}": {_go_mode(os.stat(path).st_mode & 0o777)}')
            elif key == "file_owner":
                st = os.stat(path)
                print(f'owner UID of "{path}": {st.st_uid}')
                print(f'owner GID of "{path}": {st.st_gid}')
            elif key == "file_content":
                failed |= not content(path)
            elif key == "file_content_in_loop":
                deadline = time.monotonic() + int(f["retry_time"])
                ok = False
                while time.monotonic() < deadline:
                    try:
                        with open(path) as fh:
                            text = fh.read()
                    except OSError as e:
                        print(f"Error reading file {path}: {_goerr('open', path, e)}, retrying")
                        time.sleep(2)
                        continue
                    print(f'content of file "{path}": {text}')
                    ok = True
                    if f["break_on_expected_content"] != "true" or text == "mount-tester new file\n":
                        if f["break_on_expected_content"] == "true":
                            break
                    else:
                        print("Unexpected content. Expected: mount-tester new file\n. Retrying", end="")
                    time.sleep(2)
                failed |= not ok
        except OSError as e:
            what = "statfs" if key == "fs_type" else "Stat" if key in ("file_mode", "file_perm") else "stat"
            verb = "error writing new file" if key.startswith("new_file_") else f"error from {what}("
            print(f'{verb} "{path}": {_goerr("open", path, e)}' if key.startswith("new_file_")
                  else f'{verb}"{path}"): {_goerr(what.lower(), path, e)}')
            failed = True
    return 1 if failed else 0


def _goerr(op: str, path: str, e: OSError) -> str:
    return f"{op} {path}: {(e.strerror or str(e)).lower()}"


def _fs_type(path: str) -> str:
    """statfs(2)'s f_type, as upstream prints it: "tmpfs" or the number."""
    import ctypes
    buf = ctypes.create_string_buffer(256)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.statfs(path.encode(), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    kind = ctypes.c_long.from_buffer(buf).value
    return "tmpfs" if kind == 0x01021994 else str(kind)


def _go_mode(mode: int) -> str:
    """Go's os.FileMode.String(): `-rw-r--r--`, `drwxrwxrwx`, `Lrwxrwxrwx`, ..."""
    import stat
    kinds = [(stat.S_ISDIR, "d"), (stat.S_ISLNK, "L"), (stat.S_ISFIFO, "p"), (stat.S_ISSOCK, "S"),
             (stat.S_ISCHR, "Dc"), (stat.S_ISBLK, "D")]
    lead = ""
    for test, ch in kinds:
        if test(mode):
            lead = ch
            break
    if mode & stat.S_ISUID:
        lead = "u" + lead
    if mode & stat.S_ISGID:
        lead = "g" + lead
    if mode & stat.S_ISVTX:
        lead = "t" + lead
    bits = "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
    return (lead or "-") + bits


def pause() -> None:
    """agnhost pause (also agnhost with no arguments): waits for a signal, then exits 0."""
    def stop(signum, _):
        name = {signal.SIGTERM: "Terminated", signal.SIGINT: "Interrupt"}[signum]
        os.write(1, f"Shutting down, got signal: {name}\n".encode())  # not print: it may be mid-write
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("Paused", flush=True)
    while True:
        signal.pause()


AGNHOST_SUBCOMMANDS = ("netexec", "serve-hostname", "porter", "test-webserver", "liveness", "connect", "dns-suffix",
                       "dns-server-list", "etc-hosts", "mounttest", "entrypoint-tester", "pause")


def agnhost(args: list[str], entrypoint: str = "/agnhost") -> None:
    sub, rest = (args[0], args[1:]) if args else ("pause", [])
    if sub == "netexec":
        netexec(rest)
    elif sub == "serve-hostname":
        serve_hostname(rest)
    elif sub == "porter":
        porter(rest)
    elif sub == "test-webserver":
        test_webserver(rest)
    elif sub == "liveness":
        liveness(rest)
    elif sub == "connect":
        sys.exit(connect(rest))
    elif sub == "dns-suffix":
        print(",".join(_resolv("search")))
    elif sub == "dns-server-list":
        print(",".join(_resolv("nameserver")))
    elif sub == "etc-hosts":
        with open("/etc/hosts") as fh:
            print(fh.read())
    elif sub == "mounttest":
        sys.exit(mounttest(rest))
    elif sub == "entrypoint-tester":  # all its arguments, as Go prints a []string
        print("[" + " ".join([entrypoint, *args]) + "]")
    elif sub == "pause":
        pause()
    else:
        print(f'Error: unknown command "{sub}" for "agnhost"\nRun \'agnhost --help\' for usage.', file=sys.stderr)
        sys.exit(1)


def echoserver() -> None:
    """registry.k8s.io/echoserver (and e2e-test-images/echoserver), what the Source IP tutorial
    reads: the request as the server saw it (client_address, headers, body), on 8080."""
    info = [f"\t{label}={os.environ[key]}" for label, key in (("node name", "NODE_NAME"), ("pod name", "POD_NAME"),
            ("pod namespace", "POD_NAMESPACE"), ("pod IP", "POD_IP")) if os.environ.get(key)]

    def handle(r: Request):
        path, _, query = r.target.partition("?")
        host = r.headers.get("host", "")
        body = r.body.decode(errors="replace") if r.body else "-no body in request-"
        out = (f"\n\nHostname: {HOSTNAME}\n\nPod Information:\n"
               + ("\n".join(info) if info else "\t-no pod information available-")
               + "\n\nServer values:\n\tserver_version=nginx: 1.13.3 - lua: 10008\n\nRequest Information:\n"
               f"\tclient_address={r.client[0].removeprefix('::ffff:')}\n\tmethod={r.method}\n\treal path={path}\n"
               f"\tquery={query}\n\trequest_version=1.1\n\trequest_scheme=http\n"
               f"\trequest_uri=http://{host}{r.target}\n\nRequest Headers:\n"
               + "".join(f"\t{k}={v}\n" for k, v in sorted(r.headers.items()))
               + f"\nRequest Body:\n\t{body}\n\n")
        return 200, "text/plain", out
    serve_http(8080, handle, quiet=True)
    wait_forever()


def _bytes(text: str) -> int:
    """A resource quantity of bytes: `150Mi`, `4Ki`, `1G`, `100`."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[:-len(unit)]) * factor)
    return int(float(text or 0))


def vish_stress(args: list[str]) -> None:
    """vish/stress (the CPU-limit lesson's image): `-cpus N` busy CPUs (a process each: threads
    share one interpreter lock), `-mem-total` allocated `-mem-alloc-size` at a time, every
    `-mem-alloc-sleep`; then it goes on until stopped."""
    f = flags(args, {"cpus": "0", "mem-total": "0", "mem-alloc-size": "4Ki", "mem-alloc-sleep": "1ms",
                     "logtostderr": "false"})
    cpus = int(f["cpus"])
    log(f"Allocating \"{f['mem-total']}\" memory, in \"{f['mem-alloc-size']}\" chunks, with a "
        f"{f['mem-alloc-sleep']} sleep between allocations")
    log("Spawning a thread to consume CPU")
    for _ in range(cpus):
        if os.fork() == 0:
            while True:
                pass
    held, total, chunk = [], _bytes(f["mem-total"]), max(1, _bytes(f["mem-alloc-size"]))
    pause = _duration(f["mem-alloc-sleep"])
    while sum(map(len, held)) < total:
        held.append(bytearray(b"\1" * chunk))
        time.sleep(pause)
    log(f"Allocated \"{f['mem-total']}\" memory")
    wait_forever()


# --- regression-issue-74839 (upstream's conntrack e2e test) --------------------------------------

def boom_server() -> None:
    """registry.k8s.io/e2e-test-images/regression-issue-74839: a TCP server on 9000 that, once a
    client's connection is established, injects a packet whose sequence number is far out of the
    window ("boom!!!"), through a raw socket on each pod IP (POD_IP / POD_IPS); kube-proxy is to
    drop it as conntrack INVALID rather than let the client answer with a RST."""
    import ipaddress
    import struct

    ips = [ip for ip in (os.environ.get("POD_IPS") or os.environ.get("POD_IP") or "").split(",") if ip]
    if not ips:
        raise SystemExit("panic: No valid IP found")

    def checksum(data: bytes) -> int:
        if len(data) % 2:
            data += b"\0"
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF

    def probe(ip: str) -> None:
        addr = ipaddress.ip_address(ip)
        family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP)
        raw.bind((ip, 0))
        log(f"probing {ip}")
        pending: dict[tuple, int] = {}
        while True:
            packet, peer = raw.recvfrom(4096)
            if family == socket.AF_INET:  # IPv4 raw sockets hand over the IP header too
                packet = packet[(packet[0] & 0x0F) * 4:]
            if len(packet) < 20:
                continue
            sport, dport, seq, ack, off_flags, window = struct.unpack("!HHIIHH", packet[:16])
            if dport != 9000:
                continue
            key = (peer[0], sport)
            if off_flags & 0x02:  # SYN
                pending[key] = (seq + 1) & 0xFFFFFFFF
            elif off_flags & 0x04:  # RST
                log("ERROR: RST received")
            elif off_flags & 0x10 and key in pending:  # the handshake's ACK
                log("connection established")
                data = b"boom!!!"
                tcp = struct.pack("!HHIIHHHH", 9000, sport, (ack - 100000) & 0xFFFFFFFF, pending.pop(key),
                                  (5 << 12) | 0x18, window, 0, 0) + data
                src, dst = addr.packed, ipaddress.ip_address(peer[0]).packed
                pseudo = (src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp)) if family == socket.AF_INET
                          else src + dst + struct.pack("!I3xB", len(tcp), socket.IPPROTO_TCP))
                tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
                try:
                    raw.sendto(tcp, (peer[0], 0))
                    log("boom packet injected")
                except OSError as e:
                    log(f"conn.WriteTo() error: {e}")

    for ip in ips:
        log(f"external ip: {ip}")
        threading.Thread(target=probe, args=(ip,), daemon=True).start()
    log("listen on 0.0.0.0:9000")
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 9000))
    srv.listen(128)
    while True:
        conn, _ = srv.accept()
        threading.Timer(10, conn.close).start()  # closed after 10 s, as upstream's


# --- the tutorials' sample apps ----------------------------------------------------------------

def hello_app(tag: str) -> None:
    """gcr.io/google-samples/hello-app:1.0 / 2.0: on $PORT (8080), its version and hostname."""
    version = tag if tag.count(".") >= 2 else (tag + ".0" if tag[:1].isdigit() else "1.0.0")
    port = int(os.environ.get("PORT") or 8080)
    log(f"Server listening on port {port}")
    serve_http(port, lambda r: (200, "text/plain; charset=utf-8",
                                f"Hello, world!\nVersion: {version}\nHostname: {HOSTNAME}\n"), quiet=True)
    wait_forever()


def node_hello() -> None:
    """gcr.io/google-samples/node-hello:1.0: "Hello Kubernetes!" on 8080."""
    serve_http(8080, lambda r: (200, "text/plain", "Hello Kubernetes!"), quiet=True)
    wait_forever()


def hello_go_gke() -> None:
    """gcr.io/google-samples/hello-go-gke:1.0, the Service tutorial's backend, on port 80."""
    serve_http(80, lambda r: (200, "application/json", '{"message":"Hello"}\n'), quiet=True)
    wait_forever()


def hello_frontend() -> None:
    """gcr.io/google-samples/hello-frontend:1.0: nginx on port 80 passing every request to the
    backend Service `hello`, as its nginx.conf does."""
    def handle(r: Request):
        try:
            with socket.create_connection(("hello", 80), timeout=10) as s:
                s.sendall(f"{r.method} {r.target} HTTP/1.0\r\nHost: hello\r\n\r\n".encode() + r.body)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return 502, "text/html", "<html><head><title>502 Bad Gateway</title></head><body>\n<center><h1>502 Bad " \
                                     "Gateway</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n"
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 502
        ctype = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-type:")), "text/plain")
        return status, ctype, body
    serve_http(80, handle, quiet=True)
    wait_forever()


def hpa_example() -> None:
    """registry.k8s.io/hpa-example: a page that spends CPU (a million square roots) and answers OK!"""
    import math

    def handle(r: Request):
        x = 0.0001
        for _ in range(1000001):
            x += math.sqrt(x)
        return 200, "text/html; charset=UTF-8", "OK!"
    serve_http(80, handle, quiet=True)
    wait_forever()


def goproxy() -> None:
    """registry.k8s.io/goproxy:0.1: an HTTP proxy on port 8080 (absolute-URI requests and CONNECT)."""
    import select
    import socketserver as ss

    class Proxy(ss.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline(65537).decode("latin-1")
            parts = line.split()
            if len(parts) != 3:
                self.wfile.write(BAD_REQUEST)
                return
            method, target, version = parts
            head = []
            while (h := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                head.append(h)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                self._tunnel(host, int(port or 443), b"HTTP/1.0 200 OK\r\n\r\n")
                return
            u = urlsplit(target)
            if not u.hostname:
                msg = b"This is a proxy server. Does not respond to non-proxy requests.\n"
                self.wfile.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(msg), msg))
                return
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            first = f"{method} {path} {version}\r\n".encode() + b"".join(
                h for h in head if not h.lower().startswith(b"proxy-")) + b"Connection: close\r\n\r\n"
            self._tunnel(u.hostname, u.port or 80, b"", first)

        def _tunnel(self, host: str, port: int, hello: bytes, first: bytes = b"") -> None:
            try:
                up = socket.create_connection((host, port), timeout=10)
            except OSError as e:
                msg = str(e).encode()
                self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                 % (len(msg), msg))
                return
            with up:
                self.wfile.write(hello)
                self.wfile.flush()
                up.sendall(first)
                a, b = self.connection, up
                while True:
                    ready, _, _ = select.select([a, b], [], [], 300)
                    if not ready:
                        return
                    for s in ready:
                        data = s.recv(65536)
                        if not data:
                            return
                        (b if s is a else a).sendall(data)

    class Server(ss.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    threading.Thread(target=Server(("", 8080), Proxy).serve_forever, daemon=True).start()
    wait_forever()


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
    """Run program `argv[0]` with `argv[1:]` (default: this process's arguments). A first argument
    `--entrypoint=PATH` says the container's command named the image's binary by that path."""
    global HOSTNAME
    HOSTNAME = socket.gethostname()  # the pod's: this module may have been loaded before the pod existed
    name, *args = argv if argv is not None else sys.argv[1:]
    entrypoint = None
    if args and args[0].startswith("--entrypoint="):
        entrypoint, args = args[0].split("=", 1)[1], args[1:]
    name, _, tag = name.partition(":")
    if name == "agnhost":
        agnhost(args, entrypoint or "/agnhost")
    elif name == "serve-hostname":
        serve_hostname(args)
    elif name == "nginx":
        web(NGINX_PAGE, "nginx", "/usr/share/nginx/html")
    elif name == "http-echo":
        http_echo(args)
    elif name == "pause":
        wait_forever()
    elif name == "hello-app":
        hello_app(tag)
    elif name == "node-hello":
        node_hello()
    elif name == "hello-go-gke":
        hello_go_gke()
    elif name == "hello-frontend":
        hello_frontend()
    elif name == "liveness":
        liveness(args)
    elif name == "hpa-example":
        hpa_example()
    elif name == "goproxy":
        goproxy()
    elif name == "vish-stress":
        vish_stress(args)
    elif name == "echoserver":
        echoserver()
    elif name == "boom-server":
        boom_server()
    elif name in ("redis", "redis-follower", "mysql", "httpd", "gb-frontend"):
        from netlab.node.workloads import servers  # Debian's servers, set up as the official images
        servers.run(name, entrypoint, args)
    else:
        sys.exit(f"netlab.workloads: no program {name!r}")
