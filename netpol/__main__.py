"""netlab-netpol: the network-policy agent for netlab.

    netlab-netpol run --kubeconfig PATH --hostname-override NODE [--pod-cidr CIDR] [--log-drops] ...
    netlab-netpol render --state FILE --hostname-override NODE [--pod-cidr CIDR] [--log-drops]
    netlab-netpol cleanup

`run` watches NetworkPolicies, Pods and Namespaces and keeps the node's table `inet netlab-netpol`
in sync. `render` prints the table it would program for the objects in a YAML file (a List or
several documents), touching nothing. `cleanup` deletes the table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import yaml

from netpol import render


def load_state(path: str) -> tuple[list[dict], list[dict], list[dict]]:
    """The NetworkPolicies, Pods and Namespaces of a YAML file (a List, or several documents)."""
    objs: list[dict] = []
    for doc in yaml.safe_load_all(Path(path).read_text()):
        if not doc:
            continue
        if not isinstance(doc, dict) or "kind" not in doc:
            raise ValueError("a manifest document must be an object with apiVersion and kind")
        objs += doc.get("items") or [] if str(doc["kind"]).endswith("List") else [doc]
    for o in objs:
        if o.get("kind") in ("NetworkPolicy", "Pod"):
            o.setdefault("metadata", {}).setdefault("namespace", "default")
    return ([o for o in objs if o.get("kind") == "NetworkPolicy"], [o for o in objs if o.get("kind") == "Pod"],
            [o for o in objs if o.get("kind") == "Namespace"])


def cmd_render(args: argparse.Namespace) -> int:
    try:
        policies, pods, namespaces = load_state(args.state)
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"netlab-netpol: cannot read --state {args.state}: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(render.render(policies, pods, namespaces, args.hostname_override, args.pod_cidr, args.log_drops))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from netlab.kit import logs
    from netpol.agent import Agent

    logs.setup()
    if not args.hostname_override:
        print("netlab-netpol: --hostname-override (or NODE_NAME) must name this node", file=sys.stderr)
        return 2
    try:
        asyncio.run(Agent(args).run())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from netpol import sync

    sync.Syncer().cleanup()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netlab-netpol", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("cleanup", help=f"delete the table {render.FAMILY} {render.TABLE}").set_defaults(fn=cmd_cleanup)
    for name in ("run", "render"):
        s = sub.add_parser(name)
        s.add_argument("--hostname-override", default=os.environ.get("NODE_NAME", ""), help="this node's name")
        s.add_argument("--pod-cidr", default="", help="this node's pod CIDR (run: by default the Node's "
                       "spec.podCIDR); a pod bound here with an address outside it is not policed here")
        s.add_argument("--log-drops", action="store_true", help="log each dropped packet (nft log, prefix "
                       "'netpol drop'; without it, only the drops of pods that a policy annotated "
                       "netpol.netlab.io/log-drops=true selects); in a namespace other than the host's, the "
                       "kernel logs only with net.netfilter.nf_log_all_netns=1")
        if name == "run":
            s.add_argument("--kubeconfig", required=True)
            s.add_argument("--min-sync-period", type=float, default=0.2,
                           help="changes within this many seconds are programmed in one sync")
            s.add_argument("--sync-period", type=float, default=30.0,
                           help="how often (seconds) to check that the table is still in the kernel")
            s.add_argument("--metrics-bind-address", default="0.0.0.0:9080", help="/healthz and /metrics")
            s.set_defaults(fn=cmd_run)
        else:
            s.add_argument("--state", required=True, help="YAML file of NetworkPolicies, Pods and Namespaces")
            s.set_defaults(fn=cmd_render)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    sys.exit(args.fn(args))


if __name__ == "__main__":
    main()
