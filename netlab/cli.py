"""The `netlab` command: a thin layer over the Python API (netlab.lab, netlab.cluster, ...).

Each subcommand is one function `cmd_<name>(args)` registered in `COMMANDS` with its arguments;
adding a command is adding one of those.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable

from netlab.cluster import Cluster, ClusterError

DEFAULT_LAB = os.environ.get("NETLAB_NAME", "netlab")


def table(headers: list[str], rows: Iterable[Iterable[object]]) -> str:
    """A kubectl-style table: upper-case headers, columns padded by three spaces."""
    rows = [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers] + rows
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def cmd_up(args: argparse.Namespace) -> int:
    from netlab import lab

    lab.require_root()
    if args.file:
        cluster = Cluster.load(args.file, name=args.name, nodes=args.nodes)
    else:
        cluster = Cluster.default(name=args.name or DEFAULT_LAB, nodes=args.nodes)
    lab.up(cluster)
    print(f"lab {cluster.name!r} is up: {len(cluster.nodes)} nodes, backend {cluster.backend}, "
          f"proxy mode {cluster.proxy_mode}")
    print(table(["NODE", "ROLE", "IP", "POD CIDR", "NAMESPACE"],
                ((n.name, n.role, n.ip, n.pod_cidr, n.netns) for n in cluster.nodes)))
    if args.demo:
        from netlab import demo

        return demo.run(cluster)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from netlab import lab

    if lab.down(args.name):
        print(f"lab {args.name!r} is down")
    else:
        print(f"lab {args.name!r} was not up; nothing to remove")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from netlab import lab

    st = lab.status(args.name)
    print(f"lab {st['name']}: backend {st['backend']}, proxy mode {st['proxyMode']}\n")
    print(table(["NODE", "ROLE", "IP", "POD CIDR", "NAMESPACE", "UP"],
                ((n["name"], n["role"], n["ip"], n["podCIDR"], n["namespace"], "yes" if n["up"] else "NO")
                 for n in st["nodes"])))
    comps = st["components"]
    print()
    if comps is None:
        print("the lab's supervisor is not running: its components are stopped")
    elif not comps:
        print("no components")
    else:
        print(table(["COMPONENT", "PID", "STATE", "RESTARTS", "NAMESPACE"],
                    ((c["name"], c["pid"], c["state"], c["restarts"], c["netns"] or "host") for c in comps)))
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from netlab import lab

    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    return lab.exec_in_node(args.name, args.node, argv)


def cmd_logs(args: argparse.Namespace) -> int:
    from netlab.cluster import state_dir

    path = state_dir(args.name) / "logs" / f"{args.component}.log"
    if not path.exists():
        logs = sorted(p.stem for p in path.parent.glob("*.log"))
        raise ClusterError(f"no log for component {args.component!r} in lab {args.name!r}; "
                           f"components with logs: {', '.join(logs) or 'none'}")
    data = path.read_bytes()
    if args.tail:
        data = b"\n".join(data.splitlines()[-args.tail:]) + b"\n"
    sys.stdout.buffer.write(data)
    return 0


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    from netlab.cluster import state_dir

    path = state_dir(args.name) / "kubeconfig"
    if not path.exists():
        raise ClusterError(f"lab {args.name!r} has no kubeconfig (is it up?): sudo netlab up --name {args.name}")
    print(path)
    return 0


Arg = tuple[tuple[str, ...], dict]
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, list[Arg]]] = {
    "up": (cmd_up, "build a lab and start its components", [
        (("-f", "--file"), {"help": "cluster file (kind: Cluster)"}),
        (("--nodes",), {"type": int, "help": "number of nodes (1 control-plane + N-1 workers)"}),
        (("--demo",), {"action": "store_true", "help": "then deploy and show the demo app"}),
    ]),
    "down": (cmd_down, "remove everything a lab made", []),
    "status": (cmd_status, "nodes and components of a lab", []),
    "exec": (cmd_exec, "run a command in a node's namespace", [
        (("node",), {"help": "node name, e.g. control-plane or worker"}),
        (("command",), {"nargs": argparse.REMAINDER, "help": "-- CMD [ARGS...] (default: a shell)"}),
    ]),
    "logs": (cmd_logs, "a component's log", [
        (("component",), {"help": "component name, as `netlab status` lists them"}),
        (("--tail",), {"type": int, "help": "only the last N lines"}),
    ]),
    "kubeconfig": (cmd_kubeconfig, "print the path of the lab's kubeconfig", []),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netlab", description="A real Kubernetes network on one Linux box.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for name, (fn, help_, args) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        default = None if name == "up" else DEFAULT_LAB
        sp.add_argument("--name", default=default, help=f"lab name (default {DEFAULT_LAB})")
        for flags, kw in args:
            sp.add_argument(*flags, **kw)
        sp.set_defaults(fn=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from netlab.lab import LabError

    try:
        return args.fn(args) or 0
    except (ClusterError, LabError) as e:
        print(f"netlab: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
