"""The lab's layout on disk and in the kernel: every path, socket, namespace and file name that a
component or a tool derives from a lab's name. Nothing else spells them out.

    <root>/<lab>/                      the lab's state directory (root: NETLAB_STATE_ROOT or /var/lib/netlab)
      cluster.yaml                     the resolved cluster file
      kubeconfig, kubeconfig-node      for the host's loopback listener, and for inside the lab
      token, pki/                      the bearer token; CA (and its key, where it was made), serving certificate and key
      apiserver.port, apiserver.ready  the loopback port chosen at up; written once the API server serves
      store.db                         the SQLite store
      components.json, status.json     what the supervisor runs, and how each component is doing
                                       (pid and start time of each running process)
      supervisor.pid, logs/<c>.log     the supervisor (pid and start time; it holds a lock on the
                                       file while it runs), and each component's log
      going-down                       written by `down` first: no supervisor starts again
      host-netns, join-command         on a machine made a node by init/join
      cni/bin/                         the CNI plugin launchers
      nodes/<node>/
        cni/net.d/10-netlab.conflist   the node's CNI configuration
        cni/agent.sock, cni/ipam/      the CNI agent's socket, netlab-ipam's data
        runtime.sock                   the node's runtime (the spawner)
        attach/<hash>.sock             each container's attach streams (its log relay's)
        pki/kubelet.crt, kubelet.key   the kubelet's serving certificate (port 10250)
        local-path/<pv>_<ns>_<claim>/  a local PersistentVolume's directory (the local provisioner's,
                                       as rancher's local-path-provisioner names it)
        rootfs/                        an empty directory: where each container's root is put together,
                                       inside the container's own mount namespace
        pods/<uid>/                    one pod: state.json, logs/ (CRI format), exits/, its /etc files
                                       (etc-hosts, resolv.conf, hostname), volumes/<name>/

Control groups (netlab.kit.cgroups, relative to each hierarchy's root): `netlab/<lab>` (the lab),
`netlab/<lab>/<node>`, `.../pod<uid>` (a pod), `.../pod<uid>/pause` and `.../pod<uid>/<container>-<run>`.

Network namespaces: `<lab>` (the node network), `<lab>-<node>` (a node), `<lab>-outside` (the outside:
a machine on the node network that is not a node), `<lab>-pod-<12 hex of the pod's uid>` (a pod).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

STATE_ROOT = "/var/lib/netlab"
CNI_CONFLIST = "10-netlab.conflist"
SYSTEM_CNI_BIN = "/usr/lib/cni"  # the reference plugins (portmap, ...) from Debian's package


def state_root() -> Path:
    return Path(os.environ.get("NETLAB_STATE_ROOT", STATE_ROOT))


def pod_netns(lab: str, uid: str) -> str:
    """A pod's network namespace: short enough for every tool, unique by the pod's uid."""
    return f"{lab}-pod-{uid.replace('-', '')[:12]}"


def is_pod_netns(lab: str, name: str) -> bool:
    return name.startswith(f"{lab}-pod-")


def node_netns(lab: str, node: str) -> str:
    return f"{lab}-{node}"


OUTSIDE = "outside"  # the name `netlab exec`, `trace` and the Python API know the outside by


def outside_netns(lab: str) -> str:
    """The outside: a user's machine on the node network's L2 segment, not a node."""
    return f"{lab}-{OUTSIDE}"


def lab_cgroup(lab: str) -> str:
    """The lab's control group: every pod process of every node is under it."""
    return f"netlab/{lab}"


@dataclass(frozen=True)
class PodLayout:
    dir: Path
    cgroup: str = ""  # the pod's control group (empty: none known, as for a bare directory in tests)

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    def log(self, container: str, previous: bool = False) -> Path:
        return self.logs / (f"{container}.previous.log" if previous else f"{container}.log")

    def exit_file(self, container: str) -> Path:
        """The last exit status the runtime wrote for the container."""
        return self.dir / "exits" / container

    def etc_file(self, name: str) -> Path:
        """The pod's /etc/hosts, /etc/resolv.conf and /etc/hostname, bind-mounted into each container
        (the kubelet's etc-hosts, the runtime's sandbox files)."""
        return self.dir / ("etc-hosts" if name == "hosts" else name)

    @property
    def service_account(self) -> Path:
        """The service account files mounted at /var/run/secrets/kubernetes.io/serviceaccount."""
        return self.dir / "serviceaccount"

    @property
    def volumes(self) -> Path:
        return self.dir / "volumes"

    def volume(self, name: str) -> Path:
        """A volume's files (configMap, secret, projected, downwardAPI, emptyDir)."""
        return self.volumes / name

    @property
    def pause_cgroup(self) -> str:
        return f"{self.cgroup}/pause"

    def container_cgroup(self, container: str, run: int) -> str:
        """A container's control group for one run (a restart starts in a new one, as a new
        container's does)."""
        return f"{self.cgroup}/{container}-{run}"


@dataclass(frozen=True)
class NodeLayout:
    dir: Path
    cgroup: str = ""  # the node's control group under the lab's

    @property
    def cni(self) -> Path:
        return self.dir / "cni"

    @property
    def cni_conflist(self) -> Path:
        return self.cni / "net.d" / CNI_CONFLIST

    @property
    def cni_agent_socket(self) -> Path:
        return self.cni / "agent.sock"

    @property
    def ipam(self) -> Path:
        return self.cni / "ipam"

    @property
    def runtime_socket(self) -> Path:
        """Where the node's spawner (its container runtime) takes requests from the kubelet."""
        return self.dir / "runtime.sock"

    @property
    def kubelet_cert(self) -> Path:
        """The kubelet's serving certificate (upstream's /var/lib/kubelet/pki/kubelet.crt)."""
        return self.dir / "pki" / "kubelet.crt"

    @property
    def kubelet_key(self) -> Path:
        return self.dir / "pki" / "kubelet.key"

    def attach_socket(self, uid: str, container: str) -> Path:
        """Where a container's log relay serves its attach streams (a short name: a unix socket's
        path has 107 bytes at most)."""
        return self.dir / "attach" / (hashlib.sha256(f"{uid}/{container}".encode()).hexdigest()[:16] + ".sock")

    @property
    def local_path(self) -> Path:
        """Where the local provisioner makes the node's PersistentVolumes (local-path-provisioner's
        /opt/local-path-provisioner)."""
        return self.dir / "local-path"

    def local_volume(self, pv: str, namespace: str, claim: str) -> Path:
        return self.local_path / f"{pv}_{namespace}_{claim}"

    @property
    def rootfs(self) -> Path:
        """An empty directory, where the runtime puts each container's root together (in the
        container's own mount namespace: the host sees it empty)."""
        return self.dir / "rootfs"

    @property
    def pods(self) -> Path:
        return self.dir / "pods"

    def pod(self, uid: str) -> PodLayout:
        return PodLayout(self.pods / uid, f"{self.cgroup}/pod{uid}" if self.cgroup else "")


@dataclass(frozen=True)
class Layout:
    """One lab's names and places."""
    lab: str

    @property
    def state(self) -> Path:
        return state_root() / self.lab

    # --- the lab's files ---
    @property
    def cluster_file(self) -> Path:
        return self.state / "cluster.yaml"

    @property
    def kubeconfig(self) -> Path:
        """For the host's kubectl: the loopback listener."""
        return self.state / "kubeconfig"

    @property
    def kubeconfig_node(self) -> Path:
        """For the components inside the lab: the control-plane node's address."""
        return self.state / "kubeconfig-node"

    def component_kubeconfig(self, component: str) -> Path:
        """A component's own identity (its client certificate) for inside the lab:
        kubeconfigs/<component>.conf, as kubeadm's controller-manager.conf and scheduler.conf."""
        return self.state / "kubeconfigs" / f"{component}.conf"

    @property
    def token(self) -> Path:
        return self.state / "token"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's key, on the machine that made it (kubeadm's /etc/kubernetes/pki/ca.key)."""
        return self.pki / "ca.key"

    @property
    def apiserver_port(self) -> Path:
        return self.state / "apiserver.port"

    @property
    def apiserver_ready(self) -> Path:
        """Written by the API server once it serves; the components that need it start after."""
        return self.state / "apiserver.ready"

    @property
    def store_db(self) -> Path:
        return self.state / "store.db"

    @property
    def components(self) -> Path:
        return self.state / "components.json"

    @property
    def status(self) -> Path:
        return self.state / "status.json"

    @property
    def supervisor_pid(self) -> Path:
        return self.state / "supervisor.pid"

    @property
    def going_down(self) -> Path:
        """Written by `down` before it kills anything: the supervisor's watchdog starts none again."""
        return self.state / "going-down"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    @property
    def host_netns(self) -> Path:
        """On a machine made a node: the namespace (inode) it was made in; only that one may undo it."""
        return self.state / "host-netns"

    @property
    def join_command(self) -> Path:
        return self.state / "join-command"

    @property
    def cni_bin(self) -> Path:
        return self.state / "cni" / "bin"

    @property
    def cni_path(self) -> str:
        """CNI_PATH: the lab's launchers first, then the reference plugins."""
        return f"{self.cni_bin}:{SYSTEM_CNI_BIN}"

    @property
    def cgroup(self) -> str:
        return lab_cgroup(self.lab)

    def node(self, name: str) -> NodeLayout:
        return NodeLayout(self.state / "nodes" / name, f"{self.cgroup}/{name}")

    def nodes(self) -> list[NodeLayout]:
        return [self.node(d.name) for d in sorted((self.state / "nodes").glob("*")) if d.is_dir()]

    # --- the lab's namespaces ---
    @property
    def netns(self) -> str:
        """The lab's own namespace, holding the node network's bridge."""
        return self.lab

    def node_netns(self, node: str) -> str:
        return node_netns(self.lab, node)

    @property
    def outside_netns(self) -> str:
        return outside_netns(self.lab)

    def pod_netns(self, uid: str) -> str:
        return pod_netns(self.lab, uid)

    def is_pod_netns(self, name: str) -> bool:
        return is_pod_netns(self.lab, name)
