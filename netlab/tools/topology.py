"""`netlab topology`: the lab's nodes, bridges, veths, pods and addresses, read from the kernel
(links, addresses) and the kubelets' records (which veth is which pod's), as a table and as a
graphviz picture."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from netlab.kit import net
from netlab.kit.cluster import Cluster
from netlab.lab.build import NODE_BRIDGE, VXLAN_DEV


@dataclass
class PodLink:
    pod: str          # namespace/name
    ip: str
    veth: str         # the node-side end, on cni0


@dataclass
class NodeView:
    name: str
    netns: str | None
    uplink: str  # the link on the node network: eth0, or on a machine made a node, the machine's own
    addr: str
    cni0: str
    vxlan: str | None
    pods: list[PodLink] = field(default_factory=list)


def read(cluster: Cluster) -> list[NodeView]:
    views = []
    for node in cluster.nodes:
        links = {link["name"]: link for link in net.link_list(node.netns)}
        uplink = "eth0" if node.netns else next(
            (name for name in links if any(a.split("/")[0] == node.ip for a in _v4(None, name))), "?")
        v = NodeView(node.name, node.netns, uplink, ", ".join(_v4(node.netns, uplink)),
                     ", ".join(_v4(node.netns, "cni0")),
                     ", ".join(_v4(node.netns, VXLAN_DEV)) if VXLAN_DEV in links else None)
        for state in sorted(cluster.layout.node(node.name).pods.glob("*/state.json")):
            try:
                st = json.loads(state.read_text())
                veth = st["cni"]["interfaces"][1]["name"]
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                continue
            if veth in links:
                v.pods.append(PodLink(st.get("pod", state.parent.name), st.get("ip") or "", veth))
        views.append(v)
    return views


def _v4(ns: str, ifname: str) -> list[str]:
    try:
        return [a for a in net.addr_list(ns, ifname) if ":" not in a]
    except net.NetError:  # a link that is not there has no address
        return []


HEADERS = ["NODE", "LINK", "ADDRESS", "CONNECTS TO"]


def rows(cluster: Cluster, views: list[NodeView]) -> list[list[str]]:
    """One row per node link: eth0, cni0, flannel.1 and each pod's veth."""
    rows = []
    for v in views:
        rows.append([v.name, v.uplink, v.addr, f"{NODE_BRIDGE} in {cluster.netns}" if v.netns else "this machine's network"])
        rows.append([v.name, "cni0", v.cni0, "bridge"])
        if v.vxlan is not None:
            rows.append([v.name, VXLAN_DEV, v.vxlan, "vxlan VNI 1, UDP 8472"])
        for p in v.pods:
            rows.append([v.name, p.veth, p.ip, f"pod {p.pod} (eth0)"])
    return rows


def dot(cluster: Cluster, views: list[NodeView]) -> str:
    out = ["graph netlab {", "  rankdir=TB; node [shape=box, fontname=Helvetica, fontsize=10];",
           f'  nodes [label="{NODE_BRIDGE}\\n{cluster.node_gateway} ({cluster.netns})", shape=ellipse];'
           if not cluster.host else '  nodes [label="this machine\'s network", shape=ellipse];']
    for v in views:
        n = v.name.replace("-", "_")
        out.append(f"  subgraph cluster_{n} {{ label=\"{v.name} ({v.netns or 'this machine'})\";")
        out.append(f'    {n}_eth0 [label="{v.uplink}\\n{v.addr}"];')
        out.append(f'    {n}_cni0 [label="cni0\\n{v.cni0}", shape=ellipse];')
        for i, p in enumerate(v.pods):
            out.append(f'    {n}_pod{i} [label="{p.pod}\\n{p.ip}", style=rounded];')
            out.append(f'    {n}_cni0 -- {n}_pod{i} [label="{p.veth}", fontsize=8];')
        out.append("  }")
        out.append(f"  nodes -- {n}_eth0;")
    out.append("}")
    return "\n".join(out) + "\n"


def picture(cluster: Cluster, views: list[NodeView], path: Path) -> Path:
    fmt = path.suffix.lstrip(".") or "svg"
    subprocess.run(["dot", f"-T{fmt}", "-o", str(path)], input=dot(cluster, views), text=True, check=True)
    return path
