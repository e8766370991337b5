"""The netlab CNI agent: a long-lived process per node that does `netlab-bridge`'s work.

A CNI call is a new process, and importing the netlink library alone takes ~160 ms. The agent
keeps it loaded and serves calls over a unix socket (as Cilium's agent and Multus's thick plugin
do); `netlab-bridge` forwards a call here when its configuration names the socket in `agent`,
and does the work itself when no agent answers. The agent must run in the namespace that holds
the bridge (the node's): a call from another namespace is handed back to the plugin.

    python -m cni.agent --socket /var/lib/netlab/<lab>/nodes/<node>/cni/agent.sock
        [--routes --kubeconfig PATH --node NAME --cluster-cidr CIDR]

With --routes it also keeps host-gw routes to the other Nodes' pods (cni.routes), the job of
flanneld on a real node, for nodes on separate machines.
"""

from __future__ import annotations

import argparse
import os
import socketserver

from cni import bridge, fastpath, spec


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        try:
            netns, env, stdin = fastpath.parse_request(self.rfile.read())
        except ValueError:
            return
        if netns != os.stat("/proc/self/ns/net").st_ino:
            self.wfile.write(b"wrong-netns\n")
            return
        code, out = spec.handle(bridge.handle, dict(os.environ, **env), stdin)
        self.wfile.write(f"{code}\n".encode() + out.encode())


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 256  # a node may start a hundred pods at once


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m cni.agent", description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", required=True, help="unix socket path the plugin's `agent` field names")
    p.add_argument("--routes", action="store_true", help="route to other Nodes' podCIDRs via their InternalIPs")
    p.add_argument("--kubeconfig", help="with --routes: the API server's kubeconfig")
    p.add_argument("--node", help="with --routes: this node's name")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16", help="with --routes: the pod subnet")
    args = p.parse_args(argv)
    if args.routes:
        import asyncio
        import threading

        from cni import routes
        from netlab.kit import logs

        logs.setup()
        threading.Thread(target=asyncio.run, args=(routes.run(args.kubeconfig, args.node, args.cluster_cidr),),
                         daemon=True).start()
    from netlab.kit import net  # load the netlink library once, before the first call

    with net.ipr(None):
        pass
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    os.makedirs(os.path.dirname(os.path.abspath(args.socket)), exist_ok=True)
    with Server(args.socket, Handler) as server:
        try:
            server.serve_forever()
        finally:
            os.unlink(args.socket)


if __name__ == "__main__":
    main()
