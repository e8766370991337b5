"""The `netlab` command: a thin layer over the Python API (netlab.lab.build, netlab.kit.cluster, ...).

Each subcommand is one function `cmd_<name>(args)` registered in `COMMANDS` with its arguments;
adding a command is adding one of those.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable

from netlab.kit.cluster import Cluster, ClusterError

DEFAULT_LAB = os.environ.get("NETLAB_NAME", "netlab")


def table(headers: list[str], rows: Iterable[Iterable[object]]) -> str:
    """A kubectl-style table: upper-case headers, columns padded by three spaces."""
    rows = [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers] + rows
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def cmd_up(args: argparse.Namespace) -> int:
    from netlab.lab import build as lab

    lab.require_root()
    if args.file:
        cluster = Cluster.load(args.file, name=args.name, nodes=args.nodes)
    else:
        cluster = Cluster.default(name=args.name or DEFAULT_LAB, nodes=args.nodes)
    if args.demo and lab.is_running(cluster.name):  # `scripts/setup` again: the lab is there already
        cluster = Cluster.from_state(cluster.name)
        print(f"lab {cluster.name!r} is already up")
    else:
        asked, cluster = cluster, lab.up(cluster)
        print(f"lab {cluster.name!r} is up: {len(cluster.nodes)} nodes, backend {cluster.backend}, "
              f"proxy mode {cluster.proxy_mode}")
        print(subnets_line(asked, cluster))
    print(table(["NODE", "ROLE", "IP", "POD CIDR", "NAMESPACE"],
                ((n.name, n.role, n.ip, n.pod_cidr, n.netns) for n in cluster.nodes)))
    if args.demo:
        from netlab.tools import demo

        return demo.run(cluster)
    return 0


def subnets_line(asked: Cluster, made: Cluster) -> str:
    """The lab's subnets, saying which were picked because another lab holds the defaults."""
    from netlab.kit.cluster import SUBNETS

    picked = [key for field, key in SUBNETS.items() if getattr(asked, field) != getattr(made, field)]
    line = "subnets: " + ", ".join(f"{key} {getattr(made, field)}" for field, key in SUBNETS.items())
    if picked:
        line += f" ({', '.join(picked)} picked: other labs that are up hold the defaults)"
    return line


def cmd_init(args: argparse.Namespace) -> int:
    """This machine as the control plane and first node of a cluster over machines (kubeadm init)."""
    from netlab.lab import join

    base = Cluster.load(args.config, name=args.name) if args.config else Cluster.default(name=args.name)
    cluster, command = join.init(base, args.node_name, args.advertise_address, args.token)
    node = cluster.nodes[0]
    print(f"node {node.name} ({node.ip}, pods {node.pod_cidr}) is the control plane of lab {cluster.name!r}; "
          f"kubectl: sudo netlab kubeconfig --name {cluster.name}\n\n"
          f"To add a machine as a node, run on it as root:\n\n  {command}")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    """This machine as a worker node of the cluster at SERVER (kubeadm join)."""
    from netlab.lab import join

    if args.discovery_token_ca_cert_hash is None and not args.discovery_token_unsafe_skip_ca_verification:
        raise ClusterError("--discovery-token-ca-cert-hash: required (it is in the command `netlab init` printed), "
                           "unless --discovery-token-unsafe-skip-ca-verification")
    cluster = join.join(args.server, args.token, args.discovery_token_ca_cert_hash, args.name, args.node_name,
                        discovery_timeout=args.discovery_timeout)
    node = cluster.nodes[0]
    print(f"node {node.name} ({node.ip}, pods {node.pod_cidr}) joined the cluster at {args.server}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from netlab.lab import build as lab

    if lab.down(args.name):
        print(f"lab {args.name!r} is down")
    else:
        print(f"lab {args.name!r} was not up; nothing to remove")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from netlab.lab import build as lab

    st = lab.status(args.name)
    print(f"lab {st['name']}: backend {st['backend']}, proxy mode {st['proxyMode']}")
    print("subnets: " + ", ".join(f"{k} {v}" for k, v in st["subnets"].items()))
    if st.get("outside"):
        print(f"outside: {st['outside']['ip']} (namespace {st['outside']['namespace']}); "
              f"loadBalancerPool {st['loadBalancerPool'] or 'none'}")
    print()
    print(table(["NODE", "ROLE", "IP", "POD CIDR", "NAMESPACE", "UP"],
                ((n["name"], n["role"], n["ip"], n["podCIDR"], n["namespace"], "yes" if n["up"] else "NO")
                 for n in st["nodes"])))
    comps = st["components"]
    print()
    running = [c for c in comps or [] if c["pid"]]
    if st["supervisor"] is None:  # what runs is what the processes say, not the last record
        print("the lab's supervisor is not running: " + (
            f"{len(running)} of its {len(comps)} components still run, and none is restarted if it stops"
            if running else "its components are stopped"))
    elif not comps:
        print("no components")
    if comps:
        print(table(["COMPONENT", "PID", "STATE", "RESTARTS", "NAMESPACE"],
                    ((c["name"], c["pid"], c["state"], c["restarts"], c["netns"] or "host") for c in comps)))
    if st.get("joinCommand"):
        print(f"\nto add a machine as a node, run on it as root:\n  {st['joinCommand']}")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    """In a node's namespace, or (for a name that is not a node) in a pod's container, as
    `kubectl exec` would: its network, hostname, IPC, processes (PID namespace) and root."""
    import subprocess

    from netlab.lab import build as lab

    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    from netlab.kit.layout import OUTSIDE

    nodes = [n.name for n in Cluster.from_state(args.name).nodes]
    if args.node in nodes or args.node == OUTSIDE:
        return lab.exec_in_node(args.name, args.node, argv)
    try:
        pid = _lab(args.name).container_pid(args.node, args.container, args.namespace)
    except Exception as e:  # noqa: BLE001 - no such pod, or no API to ask: one line either way
        raise ClusterError(f"no node or pod {args.node!r} in lab {args.name!r} (namespace {args.namespace}); "
                           f"its nodes: {', '.join(nodes)}") from e
    return subprocess.call(["nsenter", f"--target={pid}", "--net", "--uts", "--ipc", "--pid", "--mount", "--", *(argv or ["sh"])])


def cmd_logs(args: argparse.Namespace) -> int:
    from netlab.kit.layout import Layout

    path = Layout(args.name).log(args.component)
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
    from netlab.kit.layout import Layout

    path = Layout(args.name).kubeconfig
    if not path.exists():
        raise ClusterError(f"lab {args.name!r} has no kubeconfig (is it up?): sudo netlab up --name {args.name}")
    print(path)
    return 0


def _lab(name: str):
    from netlab.lab import build as lab
    from netlab.tools.testing import Lab

    if not lab.is_running(name):
        raise ClusterError(f"lab {name!r} is not up: sudo netlab up --name {name}")
    return Lab(cluster=Cluster.from_state(name))


def cmd_apply(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else open(args.file).read()
    sys.stdout.write(_lab(args.name).apply(text, args.namespace))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    from netlab.api.client import TABLE, path_for, resource_for

    lab = _lab(args.name)
    resource = resource_for(args.kind)
    ns = None if args.all_namespaces else args.namespace
    if args.output in ("json", "yaml"):
        obj = lab.get(resource, args.object, ns) if args.object else \
            {"apiVersion": "v1", "kind": "List", "items": lab.items(resource, ns, args.selector or "")}
        import json

        import yaml
        print(json.dumps(obj, indent=2) if args.output == "json" else yaml.safe_dump(obj, sort_keys=False), end="")
        return 0
    t = lab.api(lambda c: c.request("GET", path_for(resource, ns, args.object), accept=TABLE,
                                    params={"labelSelector": args.selector}))
    cols = [i for i, c in enumerate(t["columnDefinitions"]) if args.output == "wide" or not c.get("priority")]
    headers = [t["columnDefinitions"][i]["name"].upper() for i in cols]
    rows = [[r["cells"][i] for i in cols] for r in t["rows"]]
    if args.all_namespaces:
        headers = ["NAMESPACE", *headers]
        rows = [[r["object"]["metadata"].get("namespace", ""), *row] for r, row in zip(t["rows"], rows, strict=True)]
    if not rows:
        print(f"No resources found{f' in {ns} namespace' if ns else ''}.", file=sys.stderr)
        return 0
    print(table(headers, rows))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete, then wait until the object is gone, as kubectl delete does (--wait, the default):
    a pod ends its grace period first, so a name can be reused as soon as this returns."""
    import asyncio

    from netlab.api.client import ApiError, resource_for, type_name

    resource = resource_for(args.kind)

    async def go(c) -> bool:
        out = await c.delete(resource, args.object, args.namespace) or {}
        uid = (out.get("metadata") or {}).get("uid") if out.get("kind") != "Status" else None
        print(f'{type_name(resource)} "{args.object}" deleted', flush=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.timeout
        while uid and args.wait and loop.time() < deadline:
            try:
                now = await c.get(resource, args.object, args.namespace)
            except ApiError as e:
                if e.status == 404:
                    return True
                raise
            if (now.get("metadata") or {}).get("uid") != uid:  # gone, and made again
                return True
            await asyncio.sleep(0.2)
        return not (uid and args.wait)

    if not _lab(args.name).api(go):
        print(f"netlab: timed out after {args.timeout:g}s waiting for {args.kind} {args.object} to be deleted",
              file=sys.stderr)
        return 1
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    """Until the pods matching a selector are Ready (what `kubectl wait --for=condition=Ready` does)."""
    pods = _lab(args.name).wait_ready(args.selector, args.namespace, args.count, args.timeout)
    for p in pods:
        print(f"pod/{p['metadata']['name']} condition met")
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    """One real probe from a pod or node, and its path through each node's netfilter rules."""
    from netlab.tools import trace

    from netlab.kit.layout import OUTSIDE

    dst, _, port = args.dst.rpartition(":") if ":" in args.dst else (args.dst, "", "")
    if args.src == OUTSIDE:  # north-south: through ARP, the announcing node's rules, the pod (and an Ingress)
        t = trace.run_outside(_lab(args.name), dst, int(port) if port else None, args.path, args.namespace)
    else:
        t = trace.run(_lab(args.name), args.src, dst, int(port) if port else None, args.proto, args.namespace)
    sys.stdout.write(trace.format_trace(t))
    return 0


def cmd_topology(args: argparse.Namespace) -> int:
    """Nodes, bridges, veths, pods and addresses; --output FILE.svg|.png draws them (graphviz)."""
    from pathlib import Path

    from netlab.tools import topology

    cluster = Cluster.from_state(args.name)
    views = topology.read(cluster)
    print(table(topology.HEADERS, topology.rows(cluster, views)))
    if args.output:
        print(f"\nwrote {topology.picture(cluster, views, Path(args.output))}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """The lab, live, in the browser: a page on 127.0.0.1 only (it can start traces)."""
    import asyncio

    from netlab.tools.ui import server

    lab = _lab(args.name)
    try:
        asyncio.run(server.run(lab, args.port, lambda port: print(
            f"netlab ui for lab {lab.name!r}: http://127.0.0.1:{port}/ (Ctrl-C stops it)", flush=True)))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        raise ClusterError(f"netlab ui --port {args.port}: cannot listen on 127.0.0.1:{args.port} ({e.strerror}); "
                           "pick another with --port") from None
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    """What kube-proxy programmed in a node: Service -> chain -> endpoints with their chance
    (or --raw: the KUBE-* chains, the kube-proxy table, or IPVS, as the kernel lists them)."""
    from netlab.tools.rules import format_routes, raw, routes

    cluster = Cluster.from_state(args.name)
    if args.policy:  # the NetworkPolicy's chains, on each node that has them (the nodes of the pods it selects)
        return _policy_rules(cluster, args.policy, args.node, args.raw)
    node = cluster.node(args.node or cluster.nodes[-1].name)
    if args.raw:
        sys.stdout.write(raw(node.netns, cluster.proxy_mode))
        return 0
    names = None
    if cluster.proxy_mode == "ipvs":  # the kernel's virtual servers have no names: the Services give them
        from netlab.tools.rules import service_names

        names = service_names(_lab(args.name).items("services", None), [n.ip for n in cluster.nodes])
    rs = routes(node.netns, cluster.proxy_mode, names)
    print(f"node {node.name} ({cluster.proxy_mode} mode)")
    sys.stdout.write(format_routes(rs, args.service))
    return 0


def _policy_rules(cluster: Cluster, policy: str, node: str | None, raw: bool) -> int:
    from netlab.kit import net
    from netlab.tools.rules import NETPOL_TABLE, format_policies, policy_rules

    if "/" not in policy:
        raise ClusterError(f"netlab rules --policy: {policy!r} must be NAMESPACE/NAME")
    found = False
    for n in [cluster.node(node)] if node else cluster.nodes:
        pcs = [pc for pc in policy_rules(n.netns) if pc.policy == policy]
        if not pcs:
            continue
        found = True
        print(f"node {n.name}")
        if raw:  # the kernel's own listing of the policy's chains
            for pc in pcs:
                sys.stdout.write(net.run(n.netns, ["nft", "list", "chain", *NETPOL_TABLE, pc.chain]).stdout)
        else:
            sys.stdout.write(format_policies(pcs, policy))
    if not found:
        print(f"NetworkPolicy {policy}: no rules on {'node ' + node if node else 'any node'} (it selects no pod "
              "there, or does not exist)")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from netlab.api.client import resource_for
    from netlab.tools import podflow

    if resource_for(args.kind) != "pods":
        raise ValueError(f"explain {args.kind}: only pods are explained: netlab explain pod NAME")
    print(podflow.render(podflow.gather(_lab(args.name), args.object, args.namespace)))
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    import asyncio

    from netlab.api.client import Client
    from netlab.tools import podflow

    lab = _lab(args.name)
    ns = None if args.all_namespaces else args.namespace
    if not args.follow:
        items = sorted(lab.items("events", ns), key=lambda e: e.get("eventTime") or e.get("lastTimestamp") or "")
        print(table(["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], (
            (e.get("lastTimestamp") or e.get("eventTime"), e.get("type"), e.get("reason"),
             f"{e['involvedObject'].get('kind', '').lower()}/{e['involvedObject'].get('name')}", e.get("message"))
            for e in items)) if items else "No events found.")
        return 0

    async def go():
        stop = asyncio.Event()
        if args.timeout:
            asyncio.get_running_loop().call_later(args.timeout, stop.set)
        async with Client.from_kubeconfig(lab.kubeconfig) as c:
            await podflow.follow(c, ns, lab.cluster.layout.logs, sys.stdout, stop if args.timeout else None)
    asyncio.run(go())
    return 0


def cmd_link(args: argparse.Namespace) -> int:
    """Delay, jitter, loss or a rate on a node's uplink (netem and tbf); with none of them, the link
    as it was; --show: what the kernel has on it."""
    from netlab.kit import impair, net

    cluster = Cluster.from_state(args.name)
    node = cluster.node(args.node)
    if not args.show:
        try:
            imp = impair.impairment(args.delay, args.jitter, args.loss, args.rate)
        except impair.ImpairError as e:
            raise ClusterError(f"netlab link: {e}") from None
        try:
            net.link_impair(node.netns, "eth0", imp)
        except net.NetError as e:  # the kernel lacks netem or tbf: one line that names the module
            print(f"netlab: {e}", file=sys.stderr)
            return 1
        print(f"node {node.name} uplink: {imp}")
    sys.stdout.write(net.link_qdiscs(node.netns, "eth0"))
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    """tcpdump inside a node or a pod (the packets as that namespace sees them)."""
    import os

    from netlab.kit import net

    cluster = Cluster.from_state(args.name)
    try:
        ns = cluster.node(args.target).netns
    except ClusterError:
        ns = _lab(args.name).pod_netns(args.target, args.namespace)
    argv = ["tcpdump", "-nn", "-l", "-i", args.interface] + (["-c", str(args.count)] if args.count else []) + \
        (["-w", args.write] if args.write else [])
    net.setns(ns)
    os.execvp("tcpdump", argv + args.filter)


Arg = tuple[tuple[str, ...], dict]
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, list[Arg]]] = {
    "up": (cmd_up, "build a lab and start its components", [
        (("-f", "--file"), {"help": "cluster file (kind: Cluster)"}),
        (("--nodes",), {"type": int, "help": "number of nodes (1 control-plane + N-1 workers)"}),
        (("--demo",), {"action": "store_true", "help": "then deploy and show the demo app"}),
    ]),
    "down": (cmd_down, "remove everything a lab made", []),
    "status": (cmd_status, "nodes and components of a lab", []),
    "exec": (cmd_exec, "run a command in a node's namespace, the outside's, or in a pod", [
        (("node",), {"help": "node name (control-plane, worker, ...), outside, or pod name"}),
        (("-n", "--namespace"), {"default": "default", "help": "the pod's namespace"}),
        (("-c", "--container"), {"help": "the pod's container (default: its first)"}),
        (("command",), {"nargs": argparse.REMAINDER, "help": "-- CMD [ARGS...] (default: a shell)"}),
    ]),
    "init": (cmd_init, "make this machine the control plane and first node of a cluster over machines", [
        (("--config",), {"help": "cluster file (its networking and store; its node list is ignored)"}),
        (("--node-name",), {"help": "this node's name (default: the hostname)"}),
        (("--advertise-address",), {"help": "the address other machines reach this one at"}),
        (("--token",), {"help": "the join token, abcdef.0123456789abcdef (default: a new one)"}),
    ]),
    "join": (cmd_join, "make this machine a node of the cluster whose API server is at SERVER", [
        (("server",), {"help": "the API server, HOST:PORT, as `netlab init` printed it"}),
        (("--token",), {"required": True}),
        (("--discovery-token-ca-cert-hash",), {"help": "sha256:<hex> of the control plane's CA public key"}),
        (("--discovery-token-unsafe-skip-ca-verification",), {"action": "store_true"}),
        (("--discovery-timeout",), {"type": float, "default": 300,
                                    "help": "seconds to keep asking an API server that is not up yet (default 300)"}),
        (("--node-name",), {"help": "this node's name (default: the hostname)"}),
    ]),
    "logs": (cmd_logs, "a component's log", [
        (("component",), {"help": "component name, as `netlab status` lists them"}),
        (("--tail",), {"type": int, "help": "only the last N lines"}),
    ]),
    "kubeconfig": (cmd_kubeconfig, "print the path of the lab's kubeconfig", []),
    "apply": (cmd_apply, "create or update the objects of a manifest", [
        (("-f", "--file"), {"required": True, "help": "manifest file, or - for standard input"}),
        (("-n", "--namespace"), {"default": "default", "help": "namespace for objects that name none"}),
    ]),
    "get": (cmd_get, "list objects, with the columns kubectl shows", [
        (("kind",), {"help": "resource type: pods, svc, deployments, endpointslices, ..."}),
        (("object",), {"nargs": "?", "help": "one object's name"}),
        (("-n", "--namespace"), {"default": "default"}),
        (("-A", "--all-namespaces"), {"action": "store_true"}),
        (("-l", "--selector"), {"help": "label selector, e.g. app=web"}),
        (("-o", "--output"), {"choices": ["wide", "json", "yaml"]}),
    ]),
    "delete": (cmd_delete, "delete an object", [
        (("kind",), {"help": "resource type"}), (("object",), {"help": "name"}),
        (("-n", "--namespace"), {"default": "default"}),
        (("--wait",), {"action": argparse.BooleanOptionalAction, "default": True,
                       "help": "wait until the object is gone (default), as kubectl delete"}),
        (("--timeout",), {"type": float, "default": 120, "help": "seconds to wait (default 120)"}),
    ]),
    "wait": (cmd_wait, "wait until the pods matching a selector are Ready", [
        (("-l", "--selector"), {"required": True, "help": "label selector, e.g. app=web"}),
        (("-n", "--namespace"), {"default": "default"}),
        (("--count",), {"type": int, "help": "at least this many pods"}),
        (("--timeout",), {"type": float, "default": 60, "help": "seconds (default 60)"}),
    ]),
    "trace": (cmd_trace, "send a probe and show its path through each node's rules", [
        (("src",), {"help": "a pod, a node, or outside"}),
        (("dst",), {"help": "IP, pod, node or Service, with :PORT (default: the Service's first port, or 80); from "
                            "outside: a LoadBalancer IP or Service, or a host an Ingress routes"}),
        (("--path",), {"default": "/hostname", "help": "from outside: the HTTP request's path"}),
        (("--proto",), {"choices": ["tcp", "udp"], "default": "tcp"}),
        (("-n", "--namespace"), {"default": "default"}),
    ]),
    "topology": (cmd_topology, "the lab's nodes, bridges, veths and pods, as a table and a picture", [
        (("-o", "--output"), {"help": "also draw it to FILE.svg or FILE.png (graphviz)"}),
    ]),
    "ui": (cmd_ui, "a live picture of the lab in the browser, on 127.0.0.1", [
        (("--port",), {"type": int, "default": 8765, "help": "the port on 127.0.0.1 (default 8765; 0: any free one)"}),
    ]),
    "rules": (cmd_rules, "the Service rules kube-proxy programmed in a node, or a NetworkPolicy's", [
        (("--node",), {"help": "node name (default: the last worker; with --policy, every node)"}),
        (("--service",), {"help": "only this Service: NAMESPACE/NAME"}),
        (("--policy",), {"help": "the rules of this NetworkPolicy (NAMESPACE/NAME), as the network-policy agent "
                                 "programmed them: policy -> rule -> peers -> ports, with counters"}),
        (("--raw",), {"action": "store_true", "help": "the kernel's whole listing, ungrouped"}),
    ]),
    "explain": (cmd_explain, "the steps that made a pod serve, with when and by whom: netlab explain pod NAME", [
        (("kind",), {"help": "pod"}), (("object",), {"help": "the pod's name"}),
        (("-n", "--namespace"), {"default": "default"}),
    ]),
    "events": (cmd_events, "the namespace's Events; with --follow, the control plane at work, live", [
        (("-n", "--namespace"), {"default": "default"}),
        (("-A", "--all-namespaces"), {"action": "store_true"}),
        (("-f", "--follow"), {"action": "store_true", "help": "watch ReplicaSets, Pods, EndpointSlices and Events, "
                              "and the components' log lines of each step, as they happen"}),
        (("--timeout",), {"type": float, "help": "with --follow: stop after this many seconds"}),
    ]),
    "link": (cmd_link, "impair a node's uplink: netlab link NODE [--delay MS] [--jitter MS] [--loss PCT] [--rate R]", [
        (("node",), {"help": "node name"}),
        (("--delay",), {"type": float, "help": "milliseconds added to what the node sends"}),
        (("--jitter",), {"type": float, "help": "milliseconds the delay varies by (needs --delay)"}),
        (("--loss",), {"type": float, "help": "percent of the packets the node sends that are lost"}),
        (("--rate",), {"help": "the link's rate as tc writes it, e.g. 10mbit"}),
        (("--show",), {"action": "store_true", "help": "only show what the link has now"}),
    ]),
    "capture": (cmd_capture, "tcpdump in a node or a pod: netlab capture [-c N] TARGET [FILTER]", [
        (("target",), {"help": "node name, or pod name"}),
        (("filter",), {"nargs": "*", "help": "tcpdump filter, e.g. udp port 53"}),
        (("-n", "--namespace"), {"default": "default", "help": "the pod's namespace"}),
        (("-i", "--interface"), {"default": "eth0"}),
        (("-c", "--count"), {"type": int, "help": "stop after N packets"}),
        (("-w", "--write"), {"help": "write the packets to this pcap file instead of printing them"}),
    ]),
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
    from netlab.lab.build import LabError

    try:
        return args.fn(args) or 0
    except (ClusterError, LabError, ValueError, OSError) as e:  # OSError: TimeoutError too
        print(f"netlab: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head and the like
        return 0
    except Exception as e:
        from netlab.api.client import ApiError  # only loaded when an API call failed

        if not isinstance(e, ApiError):
            raise
        print(f"Error from server ({e.reason}): {e.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
