"""A plugin process's first step: hand the call to the node's CNI agent when the configuration
names one (`agent`) and it serves this network namespace; otherwise run the plugin's handler here.

Imports only what forwarding needs (a CNI call is a new process every time); the handler's
modules, and site-packages for the netlink library, are loaded only when the work is done here.
"""

from __future__ import annotations

import json
import os
import socket
import sys


def via_agent(path: str, env: dict[str, str], stdin: bytes) -> tuple[int, str] | None:
    """(exit code, stdout) from the agent at `path`; None if none answers there or it serves
    another network namespace."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
    except OSError:
        return None
    with s:
        req = {"env": {k: v for k, v in env.items() if k.startswith("CNI_")}, "stdin": stdin.decode(),
               "netns": os.stat("/proc/self/ns/net").st_ino}
        s.sendall(json.dumps(req).encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    try:
        reply = json.loads(data)
    except ValueError:
        return None
    if reply.get("wrongNetns"):
        return None
    return reply["code"], reply["stdout"]


def run(handler=None, module: str = "cni.bridge") -> None:
    env, stdin = dict(os.environ), sys.stdin.buffer.read()
    agent = None
    if env.get("CNI_COMMAND") != "VERSION":
        try:
            agent = json.loads(stdin).get("agent")
        except (ValueError, AttributeError):
            pass
    answer = via_agent(agent, env, stdin) if isinstance(agent, str) and agent else None
    if answer is None:
        if "site" not in sys.modules:
            import site  # started lean (python -S): the netlink library lives in site-packages

            site.main()
        from cni import spec

        if handler is None:
            import importlib

            handler = importlib.import_module(module).handle
        answer = spec.handle(handler, env, stdin)
    code, out = answer
    if out:
        sys.stdout.write(out)
    sys.exit(code)
