"""The one list of a lab's components: what the supervisor runs, where, with which arguments.

Each component is a separate process that talks only to the API server, as in a real cluster:
the control plane in the control-plane node's namespace, a kubelet and a kube-proxy in every
node's namespace. The list grows as the components land.
"""

from __future__ import annotations

from netlab.cluster import Cluster
from netlab.supervisor import Component


def components(cluster: Cluster) -> list[Component]:
    return []
