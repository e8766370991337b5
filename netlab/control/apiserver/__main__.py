"""kube-apiserver for a lab: `python -m netlab.control.apiserver --state-dir DIR`.

Everything comes from the lab's state directory: the cluster file (service subnet, store, the
control-plane node), the PKI and token made by `bootstrap()`, and the loopback port. It serves
HTTPS on 127.0.0.1:<port> for the host's kubectl and on the control-plane node's address :6443:
inside the namespace `--node-netns` names (a socket made there serves from this process: a
socket stays in the namespace it was created in), or, on a machine made a node by `netlab init`,
in its own, where other machines' nodes reach it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import ssl
from pathlib import Path

from aiohttp import web

from netlab.control.apiserver.server import APIServer, load_token
from netlab.control.apiserver.store import open_store
from netlab.kit import logs, net
from netlab.kit.cluster import Cluster


def listener(host: str, port: int, netns: str | None = None) -> socket.socket:
    """A listening socket in namespace `netns` (None: this process's), served from here."""
    with net.entered(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(1024)
    s.setblocking(False)
    return s


async def serve(args: argparse.Namespace) -> None:
    state = Path(args.state_dir)
    cluster = Cluster.load(state / "cluster.yaml")
    cluster.api_ready_file.unlink(missing_ok=True)
    cp = cluster.nodes[0]
    store = open_store(cluster.store, state)
    server = APIServer(store, service_subnet=cluster.service_subnet, advertise_address=cp.ip,
                       token=load_token(state / "token"), state_dir=state, audit_log=state / "logs" / "audit.log")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(state / "pki" / "apiserver.crt", state / "pki" / "apiserver.key")
    # client certificates the lab's CA signed are identities (--client-ca-file); none is fine too
    ctx.load_verify_locations(state / "pki" / "ca.crt")
    ctx.verify_mode = ssl.CERT_OPTIONAL
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    port = args.port or int((state / "apiserver.port").read_text())
    sites = [web.SockSite(runner, listener("127.0.0.1", port), ssl_context=ctx)]
    serve_node = bool(args.node_netns or cluster.host)
    if serve_node:
        sites.append(web.SockSite(runner, listener(cp.ip, 6443, args.node_netns), ssl_context=ctx))
    for s in sites:
        await s.start()
    cluster.api_ready_file.write_text(f"{os.getpid()}\n")  # the other components start once this is there
    logging.info("serving on 127.0.0.1:%d%s", port, f" and {cp.ip}:6443" if serve_node else "")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        store.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m netlab.control.apiserver")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--port", type=int, help="loopback port (default: the one chosen at up)")
    p.add_argument("--node-netns", help="also serve on the control-plane node's address :6443 in this namespace "
                   "(on a machine made a node by netlab init: in this process's own)")
    args = p.parse_args(argv)
    logs.setup()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
