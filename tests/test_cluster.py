"""The cluster file: defaults, the derived address plan, and one clear error per bad field."""

import pytest

from netlab.kit.cluster import Cluster, ClusterError


def test_defaults_follow_the_design():
    c = Cluster.default()
    assert c.name == "netlab" and c.backend == "host-gw" and c.proxy_mode == "iptables"
    assert [(n.name, n.ip, n.pod_cidr, n.gateway, n.netns) for n in c.nodes] == [
        ("control-plane", "172.18.0.2", "10.244.0.0/24", "10.244.0.1", "netlab-control-plane"),
        ("worker", "172.18.0.3", "10.244.1.0/24", "10.244.1.1", "netlab-worker"),
        ("worker2", "172.18.0.4", "10.244.2.0/24", "10.244.2.1", "netlab-worker2"),
    ]
    assert (c.api_service_ip, c.dns_service_ip) == ("10.96.0.1", "10.96.0.10")


def test_kind_style_file(tmp_path):
    f = tmp_path / "cluster.yaml"
    f.write_text("""
kind: Cluster
apiVersion: netlab.dev/v1alpha1
name: lab2
nodes: [{role: control-plane}, {role: worker}]
networking: {nodeSubnet: 172.19.0.0/24, podSubnet: 10.245.0.0/16, backend: vxlan, proxyMode: nftables}
store: etcd://127.0.0.1:2379
""")
    c = Cluster.load(f)
    assert (c.name, c.backend, c.proxy_mode, c.store) == ("lab2", "vxlan", "nftables", "etcd://127.0.0.1:2379")
    assert [n.ip for n in c.nodes] == ["172.19.0.2", "172.19.0.3"]
    assert Cluster.load(f, nodes=4).nodes[-1].name == "worker3"
    assert Cluster.from_dict(Cluster.load(f).to_dict()) == c


@pytest.mark.parametrize("doc, message", [
    ({"networking": {"backend": "flannel"}}, "networking.backend: 'flannel' is not one of host-gw, vxlan"),
    ({"networking": {"proxyMode": "userspace"}}, "networking.proxyMode: 'userspace' is not one of iptables"),
    ({"networking": {"podSubnet": "10.2"}}, "networking.podSubnet: '10.2' is not an IPv4 subnet"),
    ({"networking": {"podSubnet": "172.18.0.0/16"}}, "overlaps"),
    ({"nodes": [{"role": "master"}]}, "nodes[0].role: 'master' is not one of control-plane, worker"),
    ({"nodes": [{"role": "worker"}]}, "the first node, and only it, must have role: control-plane"),
    ({"networking": {"mtu": 9000}}, "networking.mtu: unknown field"),
    ({"name": "Bad_Name"}, "name: 'Bad_Name' is not allowed"),
    ({"store": "mysql://x"}, "store: 'mysql://x' is not 'sqlite' or 'etcd://HOST:PORT'"),
    ({"kind": "Pod"}, "kind: expected Cluster"),
])
def test_bad_fields_are_named(doc, message):
    with pytest.raises(ClusterError) as e:
        Cluster.from_dict(doc)
    assert message in str(e.value)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [Cluster\n")
    with pytest.raises(ClusterError, match="not valid YAML"):
        Cluster.load(bad)
    with pytest.raises(ClusterError, match="does not exist"):
        Cluster.load(tmp_path / "nope.yaml")


def test_clashes():
    a = Cluster.default(name="a")
    assert "already up" in a.clashes_with(Cluster.default(name="a"))
    assert "nodeSubnet" in a.clashes_with(Cluster.default(name="b"))
    other = Cluster.from_dict({"networking": {"nodeSubnet": "172.19.0.0/24", "podSubnet": "10.245.0.0/16"}},
                              name="b")
    assert a.clashes_with(other) is None


def test_a_machine_as_the_node_round_trips_and_needs_host_gw():
    host = {"node": "vm1", "role": "control-plane", "ip": "192.168.56.10", "podCIDR": "10.244.0.0/24",
            "server": "https://192.168.56.10:6443"}
    c = Cluster.from_dict({"host": host})
    assert [(n.name, n.role, n.ip, n.pod_cidr, n.netns) for n in c.nodes] == [
        ("vm1", "control-plane", "192.168.56.10", "10.244.0.0/24", None)]
    assert Cluster.from_dict(c.to_dict()) == c
    with pytest.raises(ClusterError, match="networking.backend: vxlan is not supported across machines"):
        Cluster.from_dict({"host": host, "networking": {"backend": "vxlan"}})
    with pytest.raises(ClusterError, match="host.server: missing"):
        Cluster.from_dict({"host": {k: v for k, v in host.items() if k != "server"}})


def test_join_ca_hash_is_kubeadms(tmp_path):
    """What `kubeadm token create --print-join-command` prints, computed as kubeadm's docs do with openssl."""
    import subprocess

    from netlab.lab.join import ca_cert_hash
    from netlab.lab.pki import make_pki

    make_pki(tmp_path, ["127.0.0.1"], ["localhost"])
    der = subprocess.run("openssl x509 -pubkey -noout -in ca.crt | openssl pkey -pubin -outform der | "
                         "openssl dgst -sha256 -hex", shell=True, cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.split()[-1]
    assert ca_cert_hash((tmp_path / "ca.crt").read_bytes()) == f"sha256:{der}"


def test_free_subnets_beside_the_labs_that_are_up():
    first = Cluster.default(name="a")
    assert Cluster.default(name="z").beside([]) == Cluster.default(name="z")
    second = Cluster.default(name="b").beside([first])
    assert (second.node_subnet, second.pod_subnet, second.service_subnet) == \
        ("172.19.0.0/24", "10.245.0.0/16", "10.112.0.0/12")
    assert (second.nodes[1].ip, second.nodes[1].pod_cidr, second.dns_service_ip) == \
        ("172.19.0.3", "10.245.1.0/24", "10.112.0.10")
    third = Cluster.default(name="c").beside([first, second])
    assert (third.node_subnet, third.pod_subnet, third.service_subnet) == \
        ("172.20.0.0/24", "10.246.0.0/16", "10.128.0.0/12")
    # what the cluster file names is kept, the rest picked around it
    named = Cluster.from_dict({"networking": {"podSubnet": "10.245.0.0/16"}}, name="d")
    assert named.fixed == {"pod_subnet"}
    beside = named.beside([first])
    assert (beside.node_subnet, beside.pod_subnet, beside.service_subnet) == \
        ("172.19.0.0/24", "10.245.0.0/16", "10.112.0.0/12")
    # a named node or pod subnet another lab holds: refused in one line naming both
    with pytest.raises(ClusterError, match=r"^networking.podSubnet 10.245.0.0/16 overlaps lab 'b' "
                                           r"\(its podSubnet 10.245.0.0/16\); name another"):
        named.beside([first, second])
    with pytest.raises(ClusterError, match=r"^networking.nodeSubnet 10.244.7.0/24 overlaps lab 'a' \(its podSubnet"):
        Cluster.from_dict({"networking": {"nodeSubnet": "10.244.7.0/24", "podSubnet": "10.250.0.0/16"}},
                          name="e").beside([first])
    with pytest.raises(ClusterError, match="a lab named 'a' is already up"):
        Cluster.default(name="a").beside([second, first])
    # ClusterIPs never leave a lab's nodes: a named service subnet may be another lab's too
    assert Cluster.from_dict({"networking": {"serviceSubnet": "10.96.0.0/12"}}, name="f").beside(
        [first]).service_subnet == "10.96.0.0/12"
    # the resolved file names every subnet: a lab read back from its state keeps them
    assert Cluster.from_dict(second.to_dict()).fixed == {"node_subnet", "pod_subnet", "service_subnet"}
