"""The cluster file (kind-style `kind: Cluster`), its defaults, validation and the address plan.

    kind: Cluster
    apiVersion: netlab.dev/v1alpha1
    name: netlab
    nodes:
      - role: control-plane
      - role: worker
      - role: worker
        link: {delay: 50ms, jitter: 5ms, loss: 1%, rate: 10mbit}   # netem and tbf on its uplink
    networking:
      nodeSubnet: 172.18.0.0/24
      podSubnet: 10.244.0.0/16
      serviceSubnet: 10.96.0.0/12
      backend: host-gw          # or vxlan
      proxyMode: iptables       # or nftables, ipvs
      dnsDomain: cluster.local
      loadBalancerPool: 172.18.0.200-172.18.0.250   # LoadBalancer IPs (default: the node subnet's upper part)
    store: sqlite               # or etcd://HOST:PORT

Beside the nodes on the node network: the gateway (.1, the lab's namespace), the outside (the last
usable address, a machine that is not a node) and the LoadBalancer pool (MetalLB-style L2 addresses).

A subnet the file does not name is the default's, unless another lab that is up holds it: then
`up` picks the next free one (`beside`), as kind picks a free network for a second cluster.

`netlab init` and `netlab join` (one machine per node, as kubeadm sets a cluster up) save a
resolved file with `host:` instead of a node list: the machine's own namespace is the lab's one node.

    host: {node: vm1, role: control-plane, ip: 192.168.56.10, podCIDR: 10.244.0.0/24,
           server: https://192.168.56.10:6443}
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import yaml

from netlab.kit import impair
from netlab.kit.layout import Layout, node_netns

API_VERSION = "netlab.dev/v1alpha1"
BACKENDS = ("host-gw", "vxlan")
PROXY_MODES = ("iptables", "nftables", "ipvs")
ROLES = ("control-plane", "worker")
# Lab names become namespace and link name prefixes: keep them short DNS labels.
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$")


SUBNETS = {"node_subnet": "nodeSubnet", "pod_subnet": "podSubnet", "service_subnet": "serviceSubnet"}
# Where `beside` looks for a free subnet in place of a default: the block size it steps by (the
# second lab gets 172.19.0.0/24, 10.245.0.0/16, 10.112.0.0/12) and the private range it stays in.
_PICK = {"node_subnet": (16, "172.16.0.0/12"), "pod_subnet": (16, "10.0.0.0/8"), "service_subnet": (12, "10.0.0.0/8")}


class ClusterError(ValueError):
    """A bad cluster file or option; the message names the field and what is allowed."""


def state_dir(lab: str) -> Path:
    return Layout(lab).state


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    role: str
    index: int
    ip: str          # on the node network
    pod_cidr: str    # this node's slice of the pod subnet
    netns: str | None  # the node's network namespace; None: the one netlab runs in (init/join)

    @property
    def gateway(self) -> str:
        """The node's cni0 address: the first address of its pod CIDR."""
        return str(ipaddress.ip_network(self.pod_cidr)[1])


@dataclasses.dataclass(frozen=True)
class Host:
    """This machine as a node of a cluster spread over machines (`netlab init`, `netlab join`)."""
    node: str
    role: str
    ip: str
    pod_cidr: str
    server: str  # the API server its components talk to

    def to_dict(self) -> dict[str, str]:
        return {"node": self.node, "role": self.role, "ip": self.ip, "podCIDR": self.pod_cidr, "server": self.server}


@dataclasses.dataclass(frozen=True)
class Cluster:
    name: str = "netlab"
    roles: tuple[str, ...] = ("control-plane", "worker", "worker")
    node_subnet: str = "172.18.0.0/24"
    pod_subnet: str = "10.244.0.0/16"
    service_subnet: str = "10.96.0.0/12"
    backend: str = "host-gw"
    proxy_mode: str = "iptables"
    dns_domain: str = "cluster.local"
    store: str = "sqlite"
    host: Host | None = None
    load_balancer_pool: str | None = None  # as the file names it; None: derived (lb_pool)
    # each node's uplink impairments (nodes[i].link), by node index; missing or empty: none
    links: tuple[impair.Impairment, ...] = ()
    # the subnets (SUBNETS' keys) the cluster file named; the others may be picked by `beside`
    fixed: frozenset[str] = dataclasses.field(default=frozenset(), compare=False)

    def impairment(self, node: str) -> impair.Impairment:
        """What the cluster file puts on `node`'s uplink (nodes[i].link)."""
        i = next((n.index for n in self.nodes if n.name == node), None)
        return self.links[i] if i is not None and i < len(self.links) else impair.Impairment()

    # --- derived plan ---
    @property
    def netns(self) -> str:
        """The lab's own namespace, holding the node network's bridge."""
        return self.layout.netns

    @property
    def layout(self) -> Layout:
        return Layout(self.name)

    @property
    def state_dir(self) -> Path:
        return self.layout.state

    @property
    def api_ready_file(self) -> Path:
        return self.layout.apiserver_ready

    @property
    def nodes(self) -> list[Node]:
        if self.host:
            h = self.host
            return [Node(h.node, h.role, 0, h.ip, h.pod_cidr, None)]
        hosts = ipaddress.ip_network(self.node_subnet)
        pods = list(ipaddress.ip_network(self.pod_subnet).subnets(new_prefix=24))
        names = _node_names(self.roles)
        return [Node(name, role, i, str(hosts[i + 2]), str(pods[i]), node_netns(self.name, name))
                for i, (name, role) in enumerate(zip(names, self.roles, strict=False))]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ClusterError(f"no node {name!r} in lab {self.name!r}; nodes: {', '.join(n.name for n in self.nodes)}")

    @property
    def node_gateway(self) -> str:
        """The lab namespace's address on the node network (.1)."""
        return str(ipaddress.ip_network(self.node_subnet)[1])

    @property
    def outside_ip(self) -> str:
        """The outside's address on the node network: the subnet's last usable one."""
        return str(ipaddress.ip_network(self.node_subnet)[-2])

    @property
    def lb_pool(self) -> tuple[str, str] | None:
        """The LoadBalancer pool's first and last address: the file's, or by default the node
        subnet's upper part (172.18.0.200-172.18.0.250 of a /24), above the nodes and below the
        outside; None when the subnet has no room left for one, and on machines' own network
        (init/join) unless the file names one."""
        if self.load_balancer_pool:
            return _pool_range(self.load_balancer_pool)
        if self.host:  # machines' own network: only a pool the file names
            return None
        net = ipaddress.ip_network(self.node_subnet)
        n = net.num_addresses
        first = max(n * 200 // 256, len(self.roles) + 2)
        last = min(n * 250 // 256, n - 3)
        return (str(net[first]), str(net[last])) if first <= last else None

    @property
    def lb_pool_text(self) -> str:
        pool = self.lb_pool
        return f"{pool[0]}-{pool[1]}" if pool else ""

    @property
    def api_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_subnet)[1])

    @property
    def dns_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_subnet)[10])

    # --- files ---
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "Cluster", "apiVersion": API_VERSION, "name": self.name,
            "nodes": [{"role": r} | ({"link": self.links[i].to_dict()} if i < len(self.links) and not
                                     self.links[i].none else {}) for i, r in enumerate(self.roles)],
            "networking": {
                "nodeSubnet": self.node_subnet, "podSubnet": self.pod_subnet,
                "serviceSubnet": self.service_subnet, "backend": self.backend,
                "proxyMode": self.proxy_mode, "dnsDomain": self.dns_domain,
            } | ({"loadBalancerPool": self.load_balancer_pool} if self.load_balancer_pool else {}),
            "store": self.store,
        } | ({"host": self.host.to_dict()} if self.host else {})

    def save(self) -> Path:
        path = self.layout.cluster_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def from_state(cls, lab: str) -> Cluster:
        """The resolved cluster file of a lab that is up (components read their plan from here)."""
        path = Layout(lab).cluster_file
        if not path.exists():
            raise ClusterError(f"lab {lab!r} is not up (no {path}); start it with: sudo netlab up --name {lab}")
        return cls.load(path)

    @classmethod
    def load(cls, path: str | os.PathLike, **overrides: Any) -> Cluster:
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ClusterError(f"cluster file {path} does not exist") from None
        except yaml.YAMLError as e:
            raise ClusterError(f"cluster file {path} is not valid YAML: {e}") from None
        return cls.from_dict(doc or {}, **overrides)

    @classmethod
    def from_dict(cls, doc: Any, *, name: str | None = None, nodes: int | None = None) -> Cluster:
        if not isinstance(doc, dict):
            raise ClusterError("cluster file: expected a mapping with kind: Cluster")
        _only(doc, {"kind", "apiVersion", "name", "nodes", "networking", "store", "host"}, "")
        if doc.get("kind", "Cluster") != "Cluster":
            raise ClusterError(f"kind: expected Cluster, got {doc.get('kind')!r}")
        net = doc.get("networking") or {}
        if not isinstance(net, dict):
            raise ClusterError("networking: expected a mapping")
        _only(net, {"nodeSubnet", "podSubnet", "serviceSubnet", "backend", "proxyMode", "dnsDomain",
                    "loadBalancerPool"}, "networking.")
        roles, links = cls.roles, []
        if "nodes" in doc:
            if not isinstance(doc["nodes"], list) or not doc["nodes"]:
                raise ClusterError("nodes: expected a list of {role: control-plane|worker}")
            roles, links = [], []
            for i, n in enumerate(doc["nodes"]):
                if not isinstance(n, dict):
                    raise ClusterError(f"nodes[{i}]: expected a mapping like {{role: worker}}")
                _only(n, {"role", "link"}, f"nodes[{i}].")
                roles.append(n.get("role", "worker"))
                try:
                    links.append(impair.from_dict(n["link"], f"nodes[{i}].link") if "link" in n else impair.Impairment())
                except impair.ImpairError as e:
                    raise ClusterError(str(e)) from None
            roles = tuple(roles)
        if nodes is not None:
            roles, links = _roles_for(nodes), []
        d = cls()
        c = cls(
            name=name or doc.get("name", d.name),
            roles=roles,
            node_subnet=net.get("nodeSubnet", d.node_subnet),
            pod_subnet=net.get("podSubnet", d.pod_subnet),
            service_subnet=net.get("serviceSubnet", d.service_subnet),
            backend=net.get("backend", d.backend),
            proxy_mode=net.get("proxyMode", d.proxy_mode),
            dns_domain=net.get("dnsDomain", d.dns_domain),
            store=str(doc.get("store", d.store)),
            host=_host(doc["host"]) if doc.get("host") else None,
            load_balancer_pool=str(net["loadBalancerPool"]) if net.get("loadBalancerPool") else None,
            links=tuple(links) if any(not imp.none for imp in links) else (),
            fixed=frozenset(f for f, key in SUBNETS.items() if key in net),
        )
        c.validate()
        return c

    @classmethod
    def default(cls, name: str | None = None, nodes: int | None = None) -> Cluster:
        return cls.from_dict({}, name=name, nodes=nodes)

    def validate(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ClusterError(f"name: {self.name!r} is not allowed; use 1-16 lowercase letters, digits "
                               "and '-', starting and ending with a letter or digit")
        for i, role in enumerate(self.roles):
            if role not in ROLES:
                raise ClusterError(f"nodes[{i}].role: {role!r} is not one of {', '.join(ROLES)}")
        if self.roles.count("control-plane") != 1 or self.roles[0] != "control-plane":
            raise ClusterError("nodes: the first node, and only it, must have role: control-plane")
        subnets = {}
        for field, value in (("nodeSubnet", self.node_subnet), ("podSubnet", self.pod_subnet),
                             ("serviceSubnet", self.service_subnet)):
            try:
                subnets[field] = net = ipaddress.IPv4Network(value)
            except (ValueError, TypeError):
                raise ClusterError(f"networking.{field}: {value!r} is not an IPv4 subnet such as "
                                   f"{getattr(Cluster, _snake(field))}") from None
            if net.prefixlen > 28:
                raise ClusterError(f"networking.{field}: {value} is too small")
        if subnets["podSubnet"].prefixlen > 23:
            raise ClusterError("networking.podSubnet: needs room for a /24 per node (a /23 or larger)")
        if len(self.roles) > min(subnets["nodeSubnet"].num_addresses - 4,  # network, gateway, outside, broadcast
                                 2 ** (24 - subnets["podSubnet"].prefixlen)):
            raise ClusterError(f"nodes: {len(self.roles)} nodes do not fit in networking.nodeSubnet "
                               f"{self.node_subnet} and podSubnet {self.pod_subnet}")
        names = list(subnets)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if subnets[a].overlaps(subnets[b]):
                    raise ClusterError(f"networking.{a} {subnets[a]} overlaps networking.{b} {subnets[b]}")
        if self.load_balancer_pool and not self.host:
            self._validate_pool(subnets["nodeSubnet"])
        if self.backend not in BACKENDS:
            raise ClusterError(f"networking.backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.proxy_mode not in PROXY_MODES:
            raise ClusterError(f"networking.proxyMode: {self.proxy_mode!r} is not one of "
                               f"{', '.join(PROXY_MODES)}")
        if not re.match(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$", self.dns_domain):
            raise ClusterError(f"networking.dnsDomain: {self.dns_domain!r} is not a DNS domain")
        if self.host:
            if self.host.role not in ROLES:
                raise ClusterError(f"host.role: {self.host.role!r} is not one of {', '.join(ROLES)}")
            if self.backend != "host-gw":
                raise ClusterError(f"networking.backend: {self.backend} is not supported across machines "
                                   "(netlab init/join); use host-gw")
        if self.store != "sqlite" and not re.match(r"^etcd://[^/:]+:\d+$", self.store):
            raise ClusterError(f"store: {self.store!r} is not 'sqlite' or 'etcd://HOST:PORT'")

    def _validate_pool(self, node_net: ipaddress.IPv4Network) -> None:
        """A pool the file names: inside the node subnet, clear of the gateway, nodes and outside."""
        field = "networking.loadBalancerPool"
        try:
            first, last = (ipaddress.IPv4Address(a) for a in _pool_range(self.load_balancer_pool or ""))
        except ValueError:
            raise ClusterError(f"{field}: {self.load_balancer_pool!r} is not an address range such as "
                               "172.18.0.200-172.18.0.250 or a CIDR such as 172.18.0.200/29") from None
        if first > last:
            raise ClusterError(f"{field}: {self.load_balancer_pool} ends before it starts")
        if first not in node_net or last not in node_net:
            raise ClusterError(f"{field}: {self.load_balancer_pool} is not within networking.nodeSubnet {node_net}")
        taken = {str(node_net[0]): "the subnet's own address", self.node_gateway: "the gateway",
                 self.outside_ip: "the outside", str(node_net[-1]): "the broadcast address"}
        taken |= {n.ip: f"node {n.name}" for n in self.nodes}
        for ip, what in taken.items():
            if first <= ipaddress.IPv4Address(ip) <= last:
                raise ClusterError(f"{field}: {self.load_balancer_pool} holds {ip} ({what}); "
                                   "choose addresses above the nodes and below the outside")

    def clashes_with(self, other: Cluster) -> str | None:
        """Why this lab cannot run beside `other`, or None. Node and pod subnets must not overlap
        another lab's (an address names one thing on the machine); ClusterIPs never leave a lab's
        nodes, so service subnets may."""
        if self.name == other.name:
            return f"a lab named {self.name!r} is already up"
        for field in ("node_subnet", "pod_subnet"):
            a, b = ipaddress.ip_network(getattr(self, field)), ipaddress.ip_network(getattr(other, field))
            if a.overlaps(b):
                return (f"networking.{SUBNETS[field]} {a} overlaps lab {other.name!r}'s {b}; "
                        "choose another subnet in the cluster file")
        return None

    def beside(self, others: list[Cluster]) -> Cluster:
        """This cluster as it can run beside `others` (the labs that are up): each subnet the
        cluster file did not name moved, where another lab holds it, to the next free one (free of
        every subnet of theirs and of this lab's own). A node or pod subnet the file named that
        overlaps another lab's is refused (ClusterError, one line naming the field), as is a name
        in use."""
        for other in others:
            if other.name == self.name:
                raise ClusterError(f"a lab named {self.name!r} is already up")
        for field in ("node_subnet", "pod_subnet"):
            mine = ipaddress.ip_network(getattr(self, field))
            for other in others if field in self.fixed else ():
                for theirs_field in ("node_subnet", "pod_subnet"):
                    theirs = ipaddress.ip_network(getattr(other, theirs_field))
                    if mine.overlaps(theirs):
                        raise ClusterError(
                            f"networking.{SUBNETS[field]} {mine} overlaps lab {other.name!r} (its "
                            f"{SUBNETS[theirs_field]} {theirs}); name another, or leave it out to have a free one picked")
        taken = [ipaddress.ip_network(getattr(o, f)) for o in others for f in SUBNETS]
        taken += [ipaddress.ip_network(getattr(self, f)) for f in self.fixed]
        picked: dict[str, str] = {}
        for field in SUBNETS:
            if field in self.fixed:
                continue
            net = ipaddress.ip_network(getattr(self, field))
            if any(net.overlaps(t) for t in taken):
                net = next((c for c in _candidates(net, *_PICK[field]) if not any(c.overlaps(t) for t in taken)), None)
                if net is None:
                    raise ClusterError(f"networking.{SUBNETS[field]}: no free subnet beside the labs that are up; "
                                       "name one in the cluster file")
                picked[field] = str(net)
            taken.append(net)
        if not picked:
            return self
        c = dataclasses.replace(self, **picked)
        c.validate()
        return c


def _candidates(net: ipaddress.IPv4Network, block: int, within: str) -> list[ipaddress.IPv4Network]:
    """`net`'s place in each `block`-sized block of `within`, from the block after `net`'s on,
    wrapping around."""
    block = min(block, net.prefixlen)
    home = net.supernet(new_prefix=block)
    offset = int(net.network_address) - int(home.network_address)
    blocks = list(ipaddress.ip_network(within).subnets(new_prefix=block))
    start = blocks.index(home) if home in blocks else -1
    return [ipaddress.ip_network(f"{b.network_address + offset}/{net.prefixlen}")
            for b in blocks[start + 1:] + blocks[:max(start, 0)]]


def _pool_range(text: str) -> tuple[str, str]:
    """`A-B` or a CIDR (MetalLB's two spellings) as its first and last address."""
    text = text.strip()
    if "-" in text:
        a, b = (x.strip() for x in text.split("-", 1))
        return str(ipaddress.IPv4Address(a)), str(ipaddress.IPv4Address(b))
    net = ipaddress.IPv4Network(text, strict=False)
    return str(net[0]), str(net[-1])


def _host(doc: Any) -> Host:
    if not isinstance(doc, dict):
        raise ClusterError("host: expected a mapping with node, role, ip, podCIDR, server")
    _only(doc, {"node", "role", "ip", "podCIDR", "server"}, "host.")
    try:
        return Host(str(doc["node"]), str(doc["role"]), str(doc["ip"]), str(doc["podCIDR"]), str(doc["server"]))
    except KeyError as e:
        raise ClusterError(f"host.{e.args[0]}: missing") from None


def _only(doc: dict, allowed: set[str], prefix: str) -> None:
    for key in doc:
        if key not in allowed:
            raise ClusterError(f"{prefix}{key}: unknown field; allowed: {', '.join(sorted(allowed))}")


def _roles_for(n: int) -> tuple[str, ...]:
    if not isinstance(n, int) or n < 1:
        raise ClusterError(f"--nodes: {n!r} must be a number of nodes, 1 or more")
    return ("control-plane",) + ("worker",) * (n - 1)


def _node_names(roles: tuple[str, ...]) -> list[str]:
    """kind's names: control-plane, worker, worker2, worker3, ..."""
    names, workers = [], 0
    for role in roles:
        if role == "control-plane":
            names.append("control-plane")
        else:
            workers += 1
            names.append("worker" if workers == 1 else f"worker{workers}")
    return names


def _snake(camel: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)
