"""The one list of a lab's components: what the supervisor runs, where, with which arguments.

Each component is a separate process that talks only to the API server, as in a real cluster:
the API server (on the host's loopback for kubectl, and on the control-plane node's address
:6443 inside the lab), the controller manager and the scheduler in the control-plane node's
namespace; on every node, in that node's namespace, the CNI agent (netlab-bridge's netlink
worker), the runtime (the spawner that starts pods' processes), the kubelet, kube-proxy, the
network-policy agent and the load-balancer announcer (lb-speaker, MetalLB's L2 speaker: it answers
ARP for LoadBalancer IPs).

On a machine made a node by `netlab init` or `netlab join` (cluster.host), everything runs in
the machine's own namespace; a joined worker runs only the node's components, talking to the
control plane's API server over the machine's network, and its CNI agent routes to the other
nodes' pods.

First of all runs the supervisor's watchdog (netlab.lab.supervisor), which starts a new
supervisor if the lab's dies: the components keep running, and the new one adopts them.
"""

from __future__ import annotations

import sys

from netlab.kit.cluster import Cluster
from netlab.lab.supervisor import Component, watchdog


def components(cluster: Cluster) -> list[Component]:
    layout = cluster.layout
    py, state, cp = sys.executable, str(layout.state), cluster.nodes[0]
    in_lab = str(layout.kubeconfig_node)

    def own(component: str) -> str:  # the component's own identity (kubeconfig.components)
        return str(layout.component_kubeconfig(component))
    # what talks to the API server starts once it serves (so it is not starved of CPU at `up`)
    api = str(layout.apiserver_ready)
    out = [watchdog(cluster.name)]
    if cp.role == "control-plane":
        out += [
            Component("kube-apiserver", [py, "-m", "netlab.control.apiserver", "--state-dir", state]
                      + (["--node-netns", cp.netns] if cp.netns else [])),
            Component("kube-controller-manager", [py, "-m", "netlab.control.controllers", "--kubeconfig",
                                                  own("kube-controller-manager"),
                                                  "--allocate-node-cidrs", "--cluster-cidr", cluster.pod_subnet,
                                                  "--lab", cluster.name]
                      + (["--load-balancer-pool", cluster.lb_pool_text] if cluster.lb_pool else []),
                      cp.netns, after=api),
            Component("kube-scheduler", [py, "-m", "netlab.control.scheduler", "--kubeconfig",
                                         own("kube-scheduler")], cp.netns, after=api),
        ]
    else:  # a joined worker: its control plane is elsewhere
        api = None
    for node in cluster.nodes:
        routes = ["--routes", "--kubeconfig", in_lab, "--node", node.name, "--cluster-cidr", cluster.pod_subnet] \
            if cluster.host else []
        out.append(Component(f"cni-agent-{node.name}",
                             [py, "-m", "cni.agent", "--socket", str(layout.node(node.name).cni_agent_socket), *routes],
                             node.netns, after=api))  # needed once pods come, which is after the API
        out.append(Component(f"runtime-{node.name}", [py, "-m", "netlab.node.kubelet.spawner", "--socket",
                                                      str(layout.node(node.name).runtime_socket)], node.netns, after=api))
        out.append(Component(f"kubelet-{node.name}", [py, "-m", "netlab.node.kubelet", "--lab", cluster.name,
                                                      "--node", node.name, "--kubeconfig",
                                                      own(f"kubelet-{node.name}")], node.netns,
                             after=api))
        out.append(Component(f"kube-proxy-{node.name}", [py, "-m", "proxy", "run", "--kubeconfig", own("kube-proxy"),
                                                         "--hostname-override", node.name,
                                                         "--proxy-mode", cluster.proxy_mode,
                                                         "--cluster-cidr", cluster.pod_subnet,
                                                         "--service-cidr", cluster.service_subnet], node.netns,
                             after=api))
        # a joined machine learns its pod CIDR from its Node, once the node IPAM controller assigns it
        cidr = [] if cluster.host else ["--pod-cidr", node.pod_cidr]
        out.append(Component(f"netpol-agent-{node.name}", [py, "-m", "netpol", "run", "--kubeconfig", own("netpol-agent"),
                                                           "--hostname-override", node.name, *cidr], node.netns,
                             after=api))
        if cluster.lb_pool:
            out.append(Component(f"lb-speaker-{node.name}", [py, "-m", "lb", "--kubeconfig", own("lb-speaker"),
                                                             "--node-name", node.name], node.netns, after=api))
    return out
