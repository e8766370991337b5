"""A lab's network: `up` builds the namespaces and links of the cluster's plan, `down` removes them.

    lab namespace <lab>           br-nodes 172.18.0.1/24 ── one veth per node (named after the node)
                                  forwarding off (net.ROUTER_SYSCTLS); one veth `outside` for the outside
    node namespace <lab>-<node>   eth0 172.18.0.(i+2)/24, cni0 10.244.i.1/24, forwarding on
                                  (net.NODE_SYSCTLS), default route via the lab namespace
                                  host-gw: a route per other node's pod CIDR via that node's eth0 address
                                  vxlan:   flannel.1 (VNI 1, UDP 8472, MTU 1450) with FDB + neighbour
                                           entries per other node, as flannel programs them
    outside namespace <lab>-outside   eth0 on the node network (its last usable address), an end host
                                  (net.POD_SYSCTLS), no default route: a user's machine on the nodes' L2
                                  network, which reaches nodes and LoadBalancer IPs and nothing beyond
Nothing is added to the host's root namespace. Every namespace's forwarding is set when it is
made, whatever the host's (which a new namespace would take). A lab takes the default subnets
unless another lab holds them: then free ones (Cluster.beside), under a lock, so that two `up`s
at once cannot pick the same.

`netlab init` and `netlab join` (netlab.lab.join) make the machine's own namespace the lab's one node
instead (cluster.host): cni0 and the node's components there, nothing else; `down` removes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from netlab.kit import cgroups, net, pace
from netlab.kit.cluster import Cluster, ClusterError
from netlab.kit.layout import OUTSIDE, Layout, state_root
from netlab.lab import kubeconfig, supervisor
from netlab.lab.components import components as lab_components
from netlab.lab.supervisor import LAB_ENV

NODE_BRIDGE = "br-nodes"
OUTSIDE_LINK = "outside"  # the outside's veth on the node bridge (the lab namespace's side)
VXLAN_DEV, VXLAN_VNI, VXLAN_PORT = "flannel.1", 1, 8472
VXLAN_MTU = 1450  # 1500 - 50 bytes of VXLAN/UDP/IP/Ethernet headers


class LabError(RuntimeError):
    """Something the user can fix: the message says what."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("netlab makes network namespaces and needs root: run it with sudo")


def running_labs() -> list[Cluster]:
    """Labs whose state and namespace exist."""
    labs = []
    root = state_root()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            with contextlib.suppress(ClusterError, OSError):
                layout = Layout(d.name)
                if layout.cluster_file.exists() and (net.ns_exists(layout.netns) or is_running(d.name)):
                    labs.append(Cluster.from_state(d.name))
    return labs


def is_running(lab: str) -> bool:
    """The lab's supervisor runs, and its namespace exists (unless its node is this machine)."""
    layout = Layout(lab)
    return supervisor.supervisor_pid(lab) is not None and (net.ns_exists(layout.netns) or layout.host_netns.exists())


@contextlib.contextmanager
def _claiming() -> Iterator[None]:
    """One `up` at a time between seeing which subnets the labs hold and holding its own."""
    root = state_root()
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)  # a lock on the directory: no file left behind
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def up(cluster: Cluster, components: list[supervisor.Component] | None = None, token: str | None = None,
       ca: bytes | None = None) -> Cluster:
    """Build the lab's network and start its supervisor with `components` (default: the lab's own,
    from netlab.lab.components). `token`: the API token to use instead of a new one; with `ca`, the
    control plane's CA, for a node that joins one elsewhere (netlab.lab.join). Returns the cluster
    as it is up: with the subnets it was given free ones in place of defaults another lab holds
    (Cluster.beside). On any failure, what was made is removed."""
    require_root()
    if cluster.proxy_mode == "ipvs" and not net.ipvs_available():
        raise LabError(f"networking.proxyMode ipvs: {net.IPVS_MISSING}")
    if cluster.host:
        check_host(cluster)
    control_plane = cluster.nodes[0].role == "control-plane"
    made = False
    try:
        if cluster.host:
            cluster.save()
            made = True
            build_host_node(cluster)
        else:
            with _claiming():
                try:
                    cluster = cluster.beside(running_labs())
                except ClusterError as e:
                    raise LabError(str(e)) from None
                if net.ns_exists(cluster.netns) or net.ns_exists(cluster.layout.outside_netns) or \
                        any(net.ns_exists(n.netns) for n in cluster.nodes):
                    raise LabError(f"namespaces of lab {cluster.name!r} exist from an earlier run; "
                                   f"remove them with: sudo netlab down --name {cluster.name}")
                cluster.save()
                made = True
                build_network(cluster)
        write_node_files(cluster)
        if control_plane:
            kubeconfig.bootstrap(cluster, token=token)
            kubeconfig.in_lab(cluster)
        else:  # a joined worker: the control plane's token and CA
            kubeconfig.joined(cluster, token, ca)
        supervisor.start(cluster, lab_components(cluster) if components is None else components)
        if components is None and control_plane:  # wait for the control plane, as `kind create` does
            wait_for_api(cluster)
            from netlab.lab import addons  # the API client is only needed here (it imports aiohttp)

            addons.install(cluster)
    except BaseException:
        if made:  # not another lab's namespaces, nor its state
            down(cluster.name)
        raise
    return cluster


def build_network(cluster: Cluster) -> None:
    lab, nodes = cluster.netns, cluster.nodes
    prefix = cluster.node_subnet.split("/")[1]
    net.ns_create(lab, net.ROUTER_SYSCTLS)
    with net.held(lab):  # one netlink socket per namespace: opening one costs milliseconds
        net.bridge(lab, NODE_BRIDGE)
        net.addr_add(lab, NODE_BRIDGE, f"{cluster.node_gateway}/{prefix}")
        for node in nodes:
            net.ns_create(node.netns, net.NODE_SYSCTLS)
            net.veth(lab, node.name[:15], node.netns, "eth0", master=NODE_BRIDGE)
        build_outside(cluster)
    for node in nodes:
        with net.held(node.netns):
            net.addr_add(node.netns, "eth0", f"{node.ip}/{prefix}")
            # a node's default route goes to the node network's router, the lab namespace, which
            # forwards nothing: packets to a ClusterIP without endpoints reach the FORWARD chain
            # (and its REJECT) as on a real node, and nothing leaves the lab
            net.route_add(node.netns, "default", via=cluster.node_gateway)
            net.bridge(node.netns, "cni0", mtu=VXLAN_MTU if cluster.backend == "vxlan" else None)
            net.addr_add(node.netns, "cni0", f"{node.gateway}/{node.pod_cidr.split('/')[1]}")
            if cluster.backend == "vxlan":
                net.vxlan(node.netns, VXLAN_DEV, vni=VXLAN_VNI, local=node.ip, dev="eth0", port=VXLAN_PORT,
                          mtu=VXLAN_MTU)
                net.addr_add(node.netns, VXLAN_DEV, f"{node.pod_cidr.split('/')[0]}/32")
            if not cluster.impairment(node.name).none:  # the cluster file's nodes[i].link
                try:
                    net.link_impair(node.netns, "eth0", cluster.impairment(node.name))
                except net.NetError as e:
                    raise LabError(f"nodes[{node.index}].link: {e}") from None
    macs = {n.name: next(link["mac"] for link in net.link_list(n.netns) if link["name"] == VXLAN_DEV)
            for n in nodes} if cluster.backend == "vxlan" else {}
    for node in nodes:
        with net.held(node.netns):
            for other in nodes:
                if other is node:
                    continue
                if cluster.backend == "host-gw":
                    net.route_add(node.netns, other.pod_cidr, via=other.ip, dev="eth0")
                    continue
                vtep = other.pod_cidr.split("/")[0]  # flannel: the remote subnet's .0 is its VTEP address
                net.neigh_replace(node.netns, VXLAN_DEV, vtep, macs[other.name])
                net.fdb_append(node.netns, VXLAN_DEV, macs[other.name], other.ip)
                net.route_add(node.netns, other.pod_cidr, via=vtep, dev=VXLAN_DEV, onlink=True)


def build_outside(cluster: Cluster) -> None:
    """The outside: a namespace on the node network's bridge that is not a node (north-south
    traffic starts there). Only the connected route: it reaches the nodes and the LoadBalancer
    addresses, which are on the same L2 network, and nothing else."""
    ns = cluster.layout.outside_netns
    net.ns_create(ns, net.POD_SYSCTLS)  # an end host: forwards nothing
    net.veth(cluster.netns, OUTSIDE_LINK, ns, "eth0", master=NODE_BRIDGE)
    net.addr_add(ns, "eth0", f"{cluster.outside_ip}/{cluster.node_subnet.split('/')[1]}")


def check_host(cluster: Cluster) -> None:
    """This machine (namespace) can become the node of `cluster`: it is not one already."""
    for other in running_labs():
        if other.name == cluster.name:
            raise LabError(f"a lab named {cluster.name!r} is already up; remove it with: "
                           f"sudo netlab down --name {cluster.name}")
    if net.link_exists(None, "cni0"):
        raise LabError("this machine is a node already (it has a cni0 bridge); remove that lab with "
                       "sudo netlab down --name LAB, or delete the bridge: ip link delete cni0")


def build_host_node(cluster: Cluster) -> None:
    """This namespace as the cluster's node: forwarding, bridged traffic through netfilter (what
    kube-proxy needs, as kubeadm's preflight requires it), and cni0 with the node's pod gateway."""
    cluster.layout.host_netns.write_text(f"{os.stat('/proc/self/ns/net').st_ino}\n")
    with contextlib.suppress(FileNotFoundError):  # bridge-nf-call-iptables lives in br_netfilter
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True)
    node = cluster.nodes[0]
    net.sysctl(None, {"net.ipv4.ip_forward": 1, "net.bridge.bridge-nf-call-iptables": 1})
    net.bridge(None, "cni0")
    net.addr_add(None, "cni0", f"{node.gateway}/{node.pod_cidr.split('/')[1]}")


def remove_host_node(cluster: Cluster) -> None:
    """What build_host_node, the CNI agent's routes, kube-proxy and the network-policy agent added
to this namespace."""
    if net.link_exists(None, "cni0"):
        net.link_delete(None, "cni0")
    pods = ipaddress.ip_network(cluster.pod_subnet)
    for r in net.route_list(None):
        if r["dst"] != "default" and ipaddress.ip_network(r["dst"]).subnet_of(pods):
            net.route_del(None, r["dst"])
    for agent in ("proxy", "netpol"):  # each removes the rules it writes, of every mode
        subprocess.run([sys.executable, "-m", agent, "cleanup"], capture_output=True)


CNI_PLUGINS = {"netlab-bridge": "cni.bridge", "netlab-ipam": "cni.ipam"}  # executable: module


def write_cni_launchers(bin_dir: Path) -> None:
    """The lab's CNI plugin executables. A CNI call is a new process each time, and Python's site
    set-up alone costs ~20 ms, so these start Python with -S and import the plugin from the
    project's source; the plugin loads site-packages only if it has to do netlink work itself.
    (The `netlab-bridge` and `netlab-ipam` console scripts work too, only slower to start.)"""
    spec = importlib.util.find_spec("cni")  # locates the package without importing it
    root = str(Path(spec.origin).parent.parent)
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, module in CNI_PLUGINS.items():
        exe = bin_dir / name
        exe.write_text(f"#!{sys.executable} -SE\nimport sys\nsys.path.insert(0, {root!r})\n"
                       f"from cni.fastpath import run\nrun(module={module!r})\n")
        exe.chmod(0o755)


def write_node_files(cluster: Cluster) -> None:
    """Per-node files the kubelet reads: the CNI conflist and the IPAM data directory."""
    layout = cluster.layout
    write_cni_launchers(layout.cni_bin)
    for node in cluster.nodes:
        files = layout.node(node.name)
        files.cni_conflist.parent.mkdir(parents=True, exist_ok=True)
        conf = {
            "cniVersion": "1.0.0",  # what Debian's reference portmap (1.1.1) speaks
            "name": "netlab",
            "plugins": [
                {
                    "type": "netlab-bridge",
                    "agent": str(files.cni_agent_socket),
                    "bridge": "cni0",
                    "isGateway": True,
                    "isDefaultGateway": True,
                    "hairpinMode": True,
                    "mtu": VXLAN_MTU if cluster.backend == "vxlan" else 1500,
                    "ipam": {
                        "type": "netlab-ipam",
                        "ranges": [[{"subnet": node.pod_cidr, "gateway": node.gateway}]],
                        "dataDir": str(files.ipam),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        files.cni_conflist.write_text(json.dumps(conf, indent=2) + "\n")


def wait_for_api(cluster: Cluster, timeout: float = 30) -> None:
    """Until the API server answers /readyz on loopback with the lab's CA."""
    import ssl
    import time
    import urllib.request

    port = cluster.layout.apiserver_port.read_text().strip()
    ctx = ssl.create_default_context(cafile=str(cluster.layout.ca_cert))
    timeout = pace.scaled(timeout)
    end = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", timeout=1, context=ctx).read()
            return
        except OSError:
            if time.monotonic() > end:
                raise LabError(f"the API server did not come up in {timeout:.0f} s; see its log: "
                               f"netlab logs --name {cluster.name} kube-apiserver") from None
            time.sleep(0.05)


def lab_processes(lab: str) -> list[int]:
    """Processes that belong to the lab: they carry NETLAB_LAB=<lab> in their environment."""
    marker = f"{LAB_ENV}={lab}".encode()
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{pid}/environ", "rb") as f:
            if marker in f.read().split(b"\0"):
                pids.append(int(pid))
    return pids


def lab_namespaces(lab: str) -> list[str]:
    """The lab's namespace, its nodes' and its pods' (also when the state directory is gone)."""
    layout = Layout(lab)
    try:
        nodes = {n.netns for n in Cluster.from_state(lab).nodes} | {layout.outside_netns}
        def ours(ns):
            return ns == layout.netns or ns in nodes or layout.is_pod_netns(ns)
    except ClusterError:
        def ours(ns):  # every node namespace is <lab>-<node>
            return ns == layout.netns or ns.startswith(layout.node_netns(""))
    return [ns for ns in net.ns_list() if ours(ns)]


def down(lab: str) -> bool:
    """Remove everything the lab made; safe after SIGKILL of every lab process and with stale
    namespace files. Returns whether there was anything to remove."""
    require_root()
    layout = Layout(lab)
    made_in = layout.host_netns  # a machine's node: only its own namespace can undo it
    if made_in.exists() and made_in.read_text().strip() != str(os.stat("/proc/self/ns/net").st_ino):
        raise LabError(f"lab {lab!r} made a node of another network namespace; run netlab down there")
    if layout.state.is_dir():  # first: the supervisor's watchdog starts no new supervisor now
        with contextlib.suppress(OSError):
            layout.going_down.touch()
    # everything goes, state included: no component needs a graceful stop, and 150 Python
    # processes each finalizing on SIGTERM cost seconds
    sup = supervisor.supervisor_pid(lab)
    if sup is not None:  # first, so that it restarts nothing while the rest go
        with contextlib.suppress(ProcessLookupError):
            os.kill(sup, signal.SIGKILL)
    found = sup is not None
    pids = _kill_all(lab)
    cgroups.remove(layout.cgroup)  # what a pod left anywhere (a process moved to another namespace) goes too
    namespaces = lab_namespaces(lab)
    for ns in namespaces:
        net.ns_delete(ns)
    if made_in.exists():
        with contextlib.suppress(ClusterError):
            remove_host_node(Cluster.from_state(lab))
    d = layout.state
    if d.exists():
        found = True
        for _ in range(20):  # a process killed mid-write may still land one file as it dies
            shutil.rmtree(d, ignore_errors=True)
            if not d.exists():
                break
            time.sleep(0.05)
    return found or bool(pids or namespaces)


def _kill_all(lab: str) -> set[int]:
    """SIGKILL the lab's processes and those in its namespaces, and wait until they are gone,
    scanning again until none is left: a scan misses what was forked after it (an
    iptables-restore, a CNI plugin, a container)."""
    killed: set[int] = set()
    for _ in range(10):
        pids = set(lab_processes(lab))
        for ns in lab_namespaces(lab):
            pids.update(net.ns_pids(ns))
        pids.discard(os.getpid())
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 2
        while time.monotonic() < end and any(supervisor.alive(p) for p in pids):
            time.sleep(0.01)
        killed |= pids
    return killed


def exec_in_node(lab: str, node: str, argv: list[str]) -> int:
    """Run a command inside a node's namespace (or the outside's: `outside`), attached to the terminal."""
    require_root()
    cluster = Cluster.from_state(lab)
    ns = cluster.layout.outside_netns if node == OUTSIDE and not cluster.host else cluster.node(node).netns
    if not argv:
        argv = [os.environ.get("SHELL", "/bin/bash")]
    return subprocess.call(argv, preexec_fn=lambda: net.setns(ns))


def status(lab: str) -> dict:
    """The lab's plan, and what runs: its supervisor's pid (None: not running) and its components
    as their processes show them (supervisor.read_status)."""
    cluster = Cluster.from_state(lab)
    join_command = cluster.layout.join_command  # on a machine made a control plane by init
    return {
        "name": cluster.name,
        "backend": cluster.backend,
        "proxyMode": cluster.proxy_mode,
        "subnets": {"nodeSubnet": cluster.node_subnet, "podSubnet": cluster.pod_subnet,
                    "serviceSubnet": cluster.service_subnet},
        "nodes": [{"name": n.name, "role": n.role, "ip": n.ip, "podCIDR": n.pod_cidr,
                   "namespace": n.netns or "(this machine's)",
                   "up": n.netns is None or net.ns_exists(n.netns)} for n in cluster.nodes],
        "outside": None if cluster.host else {"ip": cluster.outside_ip, "namespace": cluster.layout.outside_netns},
        "loadBalancerPool": cluster.lb_pool_text,
        "supervisor": supervisor.supervisor_pid(lab),
        "components": supervisor.read_status(lab),
        "joinCommand": join_command.read_text().strip() if join_command.exists() else None,
    }
