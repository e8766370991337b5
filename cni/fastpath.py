"""A plugin process's first step: hand the call to the node's CNI agent when the configuration
names one (`agent`) and it serves this network namespace; otherwise run the plugin's handler here.

A CNI call is a new process every time, so this step imports nothing it can do without: not
`json` (its decoder pulls in `re`) nor `socket` (enum, selectors): the agent's path is found in
the configuration by a plain scan, and the call goes over the C `_socket` module in a small
framing of its own. Together those imports cost more than the rest of the call. The handler's
modules, and site-packages for the netlink library, are loaded only when the work is done here.

The framing, both ways on one unix stream connection:
    request:  b"NETLAB-CNI 1 <netns inode>\\n" + b"KEY=VALUE\\0"... (the CNI_* variables) + b"\\n" + stdin
    answer:   b"<exit code>\\n" + stdout, or b"wrong-netns\\n" (another namespace: do it here)
"""

from __future__ import annotations

import os
import sys

MAGIC = b"NETLAB-CNI 1 "


def agent_path(stdin: bytes) -> str | None:
    """The string value of the configuration's top-level "agent" key, without a JSON parser
    (a path has no escapes; anything unusual falls back to doing the work here)."""
    i = stdin.find(b'"agent"')
    if i < 0:
        return None
    j = stdin.find(b'"', stdin.find(b":", i + 7) + 1)
    k = stdin.find(b'"', j + 1)
    if j < 0 or k < 0 or b"\\" in stdin[j:k]:
        return None
    return stdin[j + 1:k].decode()


def via_agent(path: str, env: dict[str, str], stdin: bytes) -> tuple[int, str] | None:
    """(exit code, stdout) from the agent at `path`; None if none answers there or it serves
    another network namespace."""
    import _socket

    try:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        s.connect(path)
    except OSError:
        return None
    try:
        pairs = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items() if k.startswith("CNI_"))
        s.sendall(MAGIC + str(os.stat("/proc/self/ns/net").st_ino).encode() + b"\n" + pairs + b"\n" + stdin)
        s.shutdown(_socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    except OSError:
        return None
    finally:
        s.close()
    head, _, out = data.partition(b"\n")
    if not head.lstrip(b"-").isdigit():
        return None
    return int(head), out.decode()


def parse_request(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """The agent's side: (netns inode, CNI_* environment, stdin)."""
    first, _, rest = data.partition(b"\n")
    if not first.startswith(MAGIC):
        raise ValueError("not a netlab CNI request")
    pairs, _, stdin = rest.partition(b"\n")
    env = dict(p.decode().split("=", 1) for p in pairs.split(b"\0") if p)
    return int(first[len(MAGIC):]), env, stdin


def run(handler=None, module: str = "cni.bridge") -> None:
    env, stdin = dict(os.environ), sys.stdin.buffer.read()
    agent = agent_path(stdin) if env.get("CNI_COMMAND") != "VERSION" else None
    answer = via_agent(agent, env, stdin) if agent else None
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
