"""The image catalog: built-in programs that stand in for the images tutorials use, chosen by the
image's name (its last path component, without tag or digest), so pods run real programs with
real sockets and no container runtime.

| image                          | program |
| ---                            | --- |
| agnhost (e2e-test-images)      | `netexec`, `serve-hostname`, `pause`, as upstream's agnhost |
| nginx, httpd                   | a web server on port 80 serving the image's default page |
| hashicorp/http-echo            | `-text`, `-listen` (default :5678) |
| busybox, alpine, curlimages/curl | the container's command, run with the host's tools |
| pause                          | sleeps until stopped |
| coredns                        | netlab's DNS server (`python -m coredns`) with the container's args |
| ingress-nginx/controller       | ingress-nginx's controller driving the host's nginx (ingress_nginx.py) |
| netlab.dev/gateway-controller  | netlab's Gateway API controller driving the host's nginx (gateway.py) |

An image outside the catalog runs only with a command (run with the host's tools); without one
the kubelet reports ErrImagePull with the catalog in the message.
"""

from __future__ import annotations

import os
import shutil
import sys

CATALOG = ("agnhost", "nginx", "httpd", "http-echo", "busybox", "alpine", "curl", "pause", "coredns",
           "ingress-nginx/controller", "netlab.dev/gateway-controller")
BUILTIN = {"agnhost", "nginx", "httpd", "http-echo", "pause"}  # served by netlab.node.workloads.programs
HOST_TOOLS = {"busybox", "alpine", "curl"}


class UnknownImage(Exception):
    pass


def image_name(image: str) -> str:
    """`registry.k8s.io/e2e-test-images/agnhost:2.39` -> `agnhost`."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def argv_for(image: str, command: list[str] | None, args: list[str] | None) -> list[str]:
    """The process to run for a container, as the container runtime would resolve entrypoint and
    cmd: `command` replaces the image's entrypoint, `args` its default arguments."""
    name = image_name(image)
    command, args = list(command or []), list(args or [])
    if name in BUILTIN and not command:
        return [*_LAUNCH, name, *args]
    if name == "coredns" and not command:
        return [sys.executable, "-m", "coredns", *(args or ["-conf", "/etc/coredns/Corefile"])]
    if _path(image).endswith("ingress-nginx/controller") and not command:  # args start with its binary
        return [sys.executable, "-m", "netlab.node.workloads.ingress_nginx",
                *(args[1:] if args[:1] == ["/nginx-ingress-controller"] else args)]
    if _path(image) == "netlab.dev/gateway-controller" and not command:
        return [sys.executable, "-m", "netlab.node.workloads.gateway", *args]
    if command:
        return _host(command) + args
    if name == "curl":
        return ["curl", *args]  # the image's entrypoint
    if name in ("busybox", "alpine"):
        return args and _host(args) or ["sh"]  # default cmd: a shell, which exits with no terminal
    raise UnknownImage(f'image "{image}" is not in netlab\'s catalog ({", ".join(CATALOG)}) and the container '
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


def _host(argv: list[str]) -> list[str]:
    """busybox applets and the like run as the host's tools of the same name."""
    if argv and not os.path.isabs(argv[0]) and shutil.which(argv[0]) is None and argv[0] == "busybox":
        return argv[1:]
    return argv


# A built-in program as a command of its own: python -SE (no site-packages) finds netlab's source and
# runs it. The node's spawner runs it in place instead, in a fork that has it loaded (builtin_args).
_BOOT = ("import sys; sys.path.insert(0, %r); from netlab.node.workloads.programs import main; main()"
         % os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_LAUNCH = [sys.executable, "-SE", "-c", _BOOT]
