"""The image catalog: what runs for an image, chosen by the image's name (its last path
component, without registry, tag or digest), so pods run real programs with real sockets and no
image pulls. CATALOG is the one table (docs/images.md lists it):

- a built-in program (programs.py; servers.py for the images whose server Debian ships: it sets
  the server up as the official image's entrypoint does, then executes it) runs when the
  container gives no `command`, or when its command is the image's own entrypoint (`/agnhost`,
  `redis-server`, `docker-entrypoint.sh`, ...);
- any other command runs with the host's tools, as does a toolbox image's default command.

An image outside the catalog runs only with a command; without one the kubelet reports
ErrImagePull with the catalog in the message.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Image:
    program: str | None  # the built-in program (programs.main's name), None: a toolbox of host tools
    what: str  # what stands in for the image (docs/images.md's table)
    entrypoints: tuple[str, ...] = ()  # commands (by base name) that are the image's own program
    default: tuple[str, ...] = ()  # a toolbox's default command (its CMD)


_WEB = "/usr/share/nginx/html"
CATALOG: dict[str, Image] = {
    "agnhost": Image("agnhost", "agnhost: `netexec`, `serve-hostname`, `porter`, `test-webserver`, `liveness`, "
                     "`connect`, `dns-suffix`, `dns-server-list`, `etc-hosts`, `mounttest`, `entrypoint-tester`, "
                     "`pause` (also with no arguments), upstream's flags and outputs", ("agnhost",)),
    "serve_hostname": Image("serve-hostname", "its pod's hostname on port 9376 (HTTP; `-tcp`, `-udp`)",
                            ("serve_hostname", "serve-hostname")),
    "nginx": Image("nginx", f"a web server on port 80: \"Welcome to nginx!\" or what is mounted at {_WEB}",
                   ("nginx",)),
    "nginx-slim": Image("nginx", "as `nginx`", ("nginx",)),
    "httpd": Image("httpd", "Debian's Apache, as the official image: port 80, \"It works!\" from "
                   "/usr/local/apache2/htdocs, logs on stdout/stderr", ("httpd", "httpd-foreground", "apache2")),
    "redis": Image("redis", "Debian's redis-server on 6379, as the official image (no protected mode, "
                   "working directory /data)", ("redis-server", "docker-entrypoint.sh")),
    "gb-redis-leader": Image("redis", "the guestbook's leader: as `redis`", ("redis-server",)),
    "gb-redis-follower": Image("redis-follower", "the guestbook's follower: Debian's redis-server replicating "
                               "`redis-leader:6379` (with GET_HOSTS_FROM=env, $REDIS_LEADER_SERVICE_HOST)",
                               ("redis-server", "run.sh")),
    "mysql": Image("mysql", "Debian's MariaDB server on 3306, initialized as the official image from "
                   "MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD, MYSQL_RANDOM_ROOT_PASSWORD, "
                   "MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD, data in /var/lib/mysql",
                   ("mysqld", "mariadbd", "docker-entrypoint.sh")),
    "mariadb": Image("mysql", "as `mysql`, also with the MARIADB_* names", ("mysqld", "mariadbd", "docker-entrypoint.sh")),
    "gb-frontend": Image("gb-frontend", "the guestbook's PHP frontend (Debian's php with its redis extension) on "
                         "port 80: `/guestbook.php?cmd=set&key=&value=` to `redis-leader`, `cmd=get` from "
                         "`redis-follower` (GET_HOSTS_FROM=env: the Services' env vars)"),
    "hello-app": Image("hello-app", "port 8080 ($PORT): `Hello, world!`, `Version: 1.0.0` (the tag's), "
                       "`Hostname: <pod>`", ("hello-app",)),
    "node-hello": Image("node-hello", "port 8080: `Hello Kubernetes!`"),
    "hello-go-gke": Image("hello-go-gke", "the Service tutorial's backend, port 80: `{\"message\":\"Hello\"}`"),
    "hello-frontend": Image("hello-frontend", "the Service tutorial's frontend, port 80: proxies to `http://hello`"),
    "liveness": Image("liveness", "port 8080: /healthz 200 for 10 s, then 500 (agnhost's `liveness`)",
                      ("server",)),
    "hpa-example": Image("hpa-example", "port 80: a CPU-heavy page answering `OK!`"),
    "goproxy": Image("goproxy", "an HTTP proxy on port 8080"),
    "stress": Image("vish-stress", "vish/stress: `-cpus N` busy CPUs, `-mem-total` of memory (polinux/stress: "
                    "its `stress` command is Debian's)"),
    "echoserver": Image("echoserver", "port 8080: the request as received (`client_address=`, headers, body), "
                        "as the Source IP tutorial reads it"),
    "regression-issue-74839": Image("boom-server", "upstream's conntrack test server: TCP on 9000, then an "
                                    "out-of-window packet (\"boom!!!\") to each client through a raw socket"),
    "http-echo": Image("http-echo", "`-text=...`, `-listen=:5678`, `/health`", ("http-echo",)),
    "pause": Image("pause", "sleeps until stopped", ("pause",)),
    "coredns": Image("coredns", "netlab's DNS server (`python -m coredns`) with the container's args", ("coredns",)),
    "ingress-nginx/controller": Image("ingress-nginx", "ingress-nginx's controller driving Debian's nginx in the "
                                      "pod (docs/ingress.md)", ("nginx-ingress-controller",)),
    "netlab.dev/gateway-controller": Image("gateway", "netlab's Gateway API controller driving Debian's nginx in "
                                           "the pod (docs/ingress.md)"),
    "busybox": Image(None, "the command, with the host's tools (`sh`, `wget`, `nslookup`, `nc`, ...)", (), ("sh",)),
    "busyboxplus": Image(None, "as `busybox`, with `curl`", (), ("sh",)),
    "alpine": Image(None, "as `busybox`", (), ("sh",)),
    "curl": Image(None, "`curl` with the container's args", (), ("curl",)),
    "dnsutils": Image(None, "the host's `dig`, `nslookup`, `host`, `nc`, `curl`, `wget`", (), ("bash",)),
    "jessie-dnsutils": Image(None, "as `dnsutils`", (), ("bash",)),
    "debian": Image(None, "the command, with the host's (Debian's) tools", (), ("bash",)),
    "ubuntu": Image(None, "as `debian`", (), ("bash",)),
    "bash": Image(None, "the host's `bash` (its entrypoint: args go to bash)", (), ("bash",)),
    "perl": Image(None, "the host's `perl` (the Job example's `perl -Mbignum=bpi`)", (), ("perl",)),
    "python": Image(None, "the host's Python 3 (`python`, `python3`)", (), ("python3",)),
    "etcd": Image(None, "the host's etcd (`/usr/local/bin/etcd` is Debian's `etcd`)", (), ("etcd",)),
}


class UnknownImage(Exception):
    pass


def image_name(image: str) -> str:
    """`registry.k8s.io/e2e-test-images/agnhost:2.39` -> `agnhost`."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def image_tag(image: str) -> str:
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def lookup(image: str) -> Image | None:
    path = _path(image)
    for key, entry in CATALOG.items():
        if "/" in key and path.endswith(key):
            return entry
    return CATALOG.get(image_name(image))


def argv_for(image: str, command: list[str] | None, args: list[str] | None) -> list[str]:
    """The process to run for a container, as the container runtime would resolve entrypoint and
    cmd: `command` replaces the image's entrypoint, `args` its default arguments."""
    entry = lookup(image)
    command, args = list(command or []), list(args or [])
    if entry and entry.program == "coredns" and not command:
        return [sys.executable, "-m", "coredns", *(args or ["-conf", "/etc/coredns/Corefile"])]
    if entry and entry.program == "ingress-nginx" and not command:  # its args start with its binary
        return [sys.executable, "-m", "netlab.node.workloads.ingress_nginx",
                *(args[1:] if args[:1] == ["/nginx-ingress-controller"] else args)]
    if entry and entry.program == "gateway" and not command:
        return [sys.executable, "-m", "netlab.node.workloads.gateway", *args]
    if entry and entry.program and entry.program not in ("coredns", "ingress-nginx", "gateway"):
        program = entry.program + (f":{image_tag(image)}" if entry.program == "hello-app" else "")
        if not command:
            return [*_LAUNCH, program, *args]
        if os.path.basename(command[0]) in entry.entrypoints:  # the image's own binary, by its path
            return [*_LAUNCH, program, "--entrypoint=" + command[0], *command[1:], *args]
    if command:
        return _host(command) + args
    if entry:  # a toolbox: its default command is its entrypoint or cmd
        if image_name(image) in ("curl", "bash"):  # their entrypoint is the tool: args go to it
            return [*entry.default, *args]
        return _host(args) if args else list(entry.default)
    known = ", ".join(CATALOG)
    raise UnknownImage(f'image "{image}" is not in netlab\'s catalog ({known}) and the container '
                       "has no command to run with the host's tools; see docs/images.md")


def _path(image: str) -> str:
    """`registry.k8s.io/ingress-nginx/controller:v1.11.2@sha256:...` -> `registry.k8s.io/ingress-nginx/controller`."""
    path = image.split("@", 1)[0]
    head, _, last = path.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def builtin_args(argv: list[str]) -> list[str] | None:
    """For a built-in program's argv (from argv_for): the program's name and arguments, so a
    process that has the programs loaded can run it in place; None for any other command."""
    n = len(_LAUNCH)
    return argv[n:] if argv[:n] == _LAUNCH and len(argv) > n else None


# an image's binary at a path the host has elsewhere (etcd's /usr/local/bin/etcd is Debian's /usr/bin/etcd)
_MOVED = {"/usr/local/bin/etcd": "etcd", "/usr/local/bin/python": "python3", "/usr/local/bin/python3": "python3"}


def _host(argv: list[str]) -> list[str]:
    """busybox applets and the like run as the host's tools of the same name."""
    if not argv:
        return argv
    if argv[0] == "busybox" and shutil.which("busybox", path=_PATH) is None:
        return argv[1:]
    if argv[0] in _MOVED and not os.path.exists(argv[0]):
        return [_MOVED[argv[0]], *argv[1:]]
    if argv[0] == "python" and shutil.which("python", path=_PATH) is None:  # Debian has python3 only
        return ["python3", *argv[1:]]
    return argv


_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # a container's default PATH


# A built-in program as a command of its own: python -SE (no site-packages) finds netlab's source and
# runs it. The node's spawner runs it in place instead, in a fork that has it loaded (builtin_args).
_BOOT = ("import sys; sys.path.insert(0, %r); from netlab.node.workloads.programs import main; main()"
         % os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
_LAUNCH = [sys.executable, "-SE", "-c", _BOOT]
