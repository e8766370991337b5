"""The one list of a lab's components: what the supervisor runs, where, with which arguments.

Each component is a separate process, as in a real cluster: the control plane in the
control-plane node's namespace; per node, the CNI agent (netlab-bridge's netlink worker) and,
as they land, the kubelet and kube-proxy in that node's namespace.
"""

from __future__ import annotations

import sys

from netlab.cluster import Cluster
from netlab.supervisor import Component


def components(cluster: Cluster) -> list[Component]:
    from netlab.lab import cni_agent_socket

    out: list[Component] = []
    for node in cluster.nodes:
        out.append(Component(f"cni-agent-{node.name}",
                             [sys.executable, "-m", "cni.agent", "--socket", str(cni_agent_socket(cluster, node.name))],
                             node.netns))
    return out
