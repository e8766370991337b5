"""netlab-proxy: kube-proxy for netlab.

    netlab-proxy run --kubeconfig PATH --hostname-override NODE [--proxy-mode iptables|nftables|ipvs] ...
    netlab-proxy render --mode iptables|nftables --state FILE [--hostname-override NODE] [--cluster-cidr CIDR]
    netlab-proxy cleanup

`run` watches Services and EndpointSlices and keeps the node's rules in sync. `render` prints the
rules it would program for the Services and EndpointSlices in a YAML file (a List or several
documents), touching nothing. `cleanup` removes what any mode programmed in this namespace. Flags keep kube-proxy's names.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import yaml

from netlab.kit import logs
from proxy import modes
from proxy.config import Config

log = logging.getLogger("netlab.proxy")


def load_state(path: str) -> tuple[list[dict], list[dict]]:
    """The Services and EndpointSlices of a YAML file (a List, or several documents)."""
    from netlab.api.client import manifest_objects

    objs = manifest_objects(Path(path).read_text(), namespace="default")
    return [o for o in objs if o["kind"] == "Service"], [o for o in objs if o["kind"] == "EndpointSlice"]


def config(args: argparse.Namespace) -> Config:
    return Config(node_name=args.hostname_override or "", cluster_cidr=args.cluster_cidr or "",
                  masquerade_all=args.masquerade_all, masquerade_bit=args.masquerade_bit,
                  nodeport_addresses=[a for a in (args.nodeport_addresses or "").split(",") if a and a != "primary"],
                  localhost_nodeports=args.iptables_localhost_nodeports != "false",
                  node_ips=list(getattr(args, "node_ip", None) or []),
                  service_cidrs=[c for c in (args.service_cidr or "").split(",") if c])


def cmd_render(args: argparse.Namespace) -> int:
    try:
        services, slices = load_state(args.state)
    except (OSError, ValueError, yaml.YAMLError) as e:  # ValueError: not a manifest
        print(f"netlab-proxy: cannot read --state {args.state}: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(modes.render_text(args.mode, services, slices, config(args)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from proxy.daemon import Proxy

    logs.setup()
    try:
        asyncio.run(Proxy(args, config(args)).run())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    modes.cleanup_all()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netlab-proxy", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("cleanup", help="remove every rule kube-proxy made, in each mode (kube-proxy --cleanup)"
                   ).set_defaults(fn=cmd_cleanup, masquerade_bit=14)
    for name in ("run", "render"):
        s = sub.add_parser(name)
        s.add_argument("--hostname-override", default=os.environ.get("NODE_NAME", ""), help="this node's name")
        s.add_argument("--cluster-cidr", default="", help="pods' CIDR; traffic from outside it is masqueraded")
        s.add_argument("--masquerade-all", action="store_true", help="masquerade all traffic to Service IPs")
        s.add_argument("--masquerade-bit", type=int, default=14, help="bit of the fwmark for SNAT (0-31)")
        s.add_argument("--service-cidr", default="", help="the Service CIDRs (upstream learns them from "
                       "ServiceCIDR objects): nftables mode drops traffic to unallocated ClusterIPs")
        s.add_argument("--iptables-localhost-nodeports", choices=["true", "false"], default="true",
                       help="accept NodePort connections to 127.0.0.1 (iptables mode)")
        s.add_argument("--nodeport-addresses", default="", help="comma-separated CIDRs for NodePorts (default all)")
        if name == "run":
            s.add_argument("--kubeconfig", required=True)
            s.add_argument("--proxy-mode", default="iptables", choices=["iptables", "nftables", "ipvs"])
            s.add_argument("--iptables-sync-period", type=float, default=30.0, help="full resync period (seconds)")
            s.add_argument("--iptables-min-sync-period", type=float, default=1.0,
                           help="least time between syncs; changes within it are batched (seconds)")
            s.add_argument("--iptables-backend", choices=["auto", "legacy", "nft"], default="auto")
            s.add_argument("--metrics-bind-address", default="127.0.0.1:10249")
            s.add_argument("--healthz-bind-address", default="0.0.0.0:10256")
            s.set_defaults(fn=cmd_run)
        else:
            s.add_argument("--mode", default="iptables", help="iptables, nftables or ipvs")
            s.add_argument("--state", required=True, help="YAML file of Services and EndpointSlices")
            s.add_argument("--node-ip", action="append", default=[], help="this node's IPs (NodePort destinations)")
            s.set_defaults(fn=cmd_render)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.masquerade_bit not in range(32):
        sys.exit("netlab-proxy: --masquerade-bit must be between 0 and 31")
    sys.exit(args.fn(args))


if __name__ == "__main__":
    main()

