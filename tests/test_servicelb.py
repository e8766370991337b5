"""LoadBalancer addresses without a lab: the pool's allocation rules (MetalLB's controller), the
cluster file's pool, the announcer's election (MetalLB's L2 ShouldAnnounce), ARP frames, and
kube-proxy's health-check answers."""

from __future__ import annotations

import hashlib
import json

import pytest

from lb import arp, election
from netlab.api.loadbalancers import implemented_here
from netlab.control.controllers.servicelb import Pool, PoolError
from netlab.kit.cluster import Cluster, ClusterError
from proxy.healthcheck import body, local_endpoints
from proxy.model import Endpoint, ServicePort


def test_pool_gives_the_lowest_free_address_keeps_one_and_honours_a_request():
    pool = Pool.parse("172.18.0.200-172.18.0.202")
    assert pool.assign(None, [], set()) == "172.18.0.200"
    assert pool.assign(None, [], {"172.18.0.200"}) == "172.18.0.201"
    assert pool.assign(None, ["172.18.0.202"], {"172.18.0.200"}) == "172.18.0.202"  # kept
    assert pool.assign(None, ["10.0.0.1"], set()) == "172.18.0.200"  # not from the pool: replaced
    assert pool.assign("172.18.0.201", ["172.18.0.200"], set()) == "172.18.0.201"
    with pytest.raises(PoolError, match='"172.18.0.9" is not allowed in config'):
        pool.assign("172.18.0.9", [], set())
    with pytest.raises(PoolError, match="already in use"):
        pool.assign("172.18.0.201", [], {"172.18.0.201"})
    with pytest.raises(PoolError, match="no available IPs"):
        pool.assign(None, [], {"172.18.0.200", "172.18.0.201", "172.18.0.202"})
    assert str(Pool.parse("172.18.0.200/30")) == "172.18.0.200-172.18.0.203"


def test_which_services_are_ours():
    lb = {"spec": {"type": "LoadBalancer"}}
    assert implemented_here(lb) and implemented_here({"spec": {"type": "LoadBalancer",
                                                               "loadBalancerClass": "netlab.dev/l2"}})
    assert not implemented_here({"spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/other"}})
    assert not implemented_here({"spec": {"type": "NodePort"}})


def test_cluster_file_pool_default_and_validation():
    assert Cluster.default().lb_pool == ("172.18.0.200", "172.18.0.250")
    assert Cluster.default().outside_ip == "172.18.0.254"
    c = Cluster.from_dict({"networking": {"nodeSubnet": "172.19.0.0/24", "loadBalancerPool": "172.19.0.10-172.19.0.20"}})
    assert c.lb_pool == ("172.19.0.10", "172.19.0.20") and Cluster.from_dict(c.to_dict()) == c
    for pool, msg in [("172.18.0.1-172.18.0.9", "holds 172.18.0.1 (the gateway)"),
                      ("172.18.0.250-172.18.0.254", "holds 172.18.0.254 (the outside)"),
                      ("172.18.1.0/29", "is not within networking.nodeSubnet"),
                      ("172.18.0.9-172.18.0.5", "ends before it starts"), ("lots", "is not an address range")]:
        with pytest.raises(ClusterError, match=r"^networking.loadBalancerPool: .*" + msg.replace("(", r"\(")
                           .replace(")", r"\)")):
            Cluster.from_dict({"networking": {"loadBalancerPool": pool}})


def node(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "status": {}}


def slice_(*eps: tuple[str, str, bool]) -> dict:
    return {"metadata": {"name": "s", "namespace": "d", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"port": 80}],
            "endpoints": [{"addresses": [ip], "nodeName": n, "conditions": {"ready": ready}} for ip, n, ready in eps]}


NODES = {n["metadata"]["name"]: n for n in [
    node("control-plane", **{"node.kubernetes.io/exclude-from-external-load-balancers": ""}),
    node("worker"), node("worker2"), node("worker3")]}


def test_election_orders_by_sha256_of_node_and_ip_among_live_speakers():
    svc = {"spec": {"type": "LoadBalancer"}}
    alive = set(NODES)
    slices = [slice_(("10.244.1.2", "worker", True))]
    want = min(["worker", "worker2", "worker3"], key=lambda n: hashlib.sha256(f"{n}#172.18.0.200".encode()).digest())
    assert election.announcer(svc, "172.18.0.200", slices, NODES, alive) == want  # any speaker (Cluster policy)
    assert election.announcer(svc, "172.18.0.200", slices, NODES, alive - {want}) not in (want, None, "control-plane")
    assert election.announcer(svc, "172.18.0.200", [slice_(("10.244.1.2", "worker", False))], NODES, alive) is None
    assert election.announcer(svc, "172.18.0.200", slices, NODES, {"control-plane"}) is None  # excluded


def test_election_with_external_traffic_policy_local_needs_a_local_ready_endpoint():
    svc = {"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}}
    slices = [slice_(("10.244.2.2", "worker2", True), ("10.244.3.2", "worker3", False))]
    assert election.announcer(svc, "172.18.0.201", slices, NODES, set(NODES)) == "worker2"
    assert election.announcer(svc, "172.18.0.201", slices, NODES, set(NODES) - {"worker2"}) is None


def test_arp_reply_and_gratuitous_frames():
    mac = arp.mac_bytes("02:00:00:00:00:01")
    asker = arp.mac_bytes("02:00:00:00:00:99")
    req = arp.Arp(arp.REQUEST, asker, "172.18.0.254", b"\0" * 6, "172.18.0.200")
    parsed = arp.parse(arp.frame(asker, req))
    assert parsed == req
    rep = arp.reply_to(parsed, mac)
    wire = arp.frame(mac, rep)
    assert wire[:6] == asker and wire[6:12] == mac and wire[12:14] == b"\x08\x06"
    back = arp.parse(wire)
    assert (back.op, back.sender_mac, back.sender_ip, back.target_ip) == (arp.REPLY, mac, "172.18.0.200", "172.18.0.254")
    g = [arp.parse(arp.frame(mac, a)) for a in arp.gratuitous("172.18.0.200", mac)]
    assert [a.op for a in g] == [arp.REQUEST, arp.REPLY]
    assert all(a.sender_ip == a.target_ip == "172.18.0.200" and a.eth_dst == arp.BROADCAST for a in g)
    assert arp.parse(b"\x00" * 60) is None


def test_health_check_counts_this_nodes_ready_endpoints():
    sp = ServicePort("d", "web", "", "TCP", "10.96.0.5", 80, health_check_node_port=31000,
                     endpoints=[Endpoint("10.244.1.2", 8080, True, True, False, "worker"),
                                Endpoint("10.244.1.3", 8080, False, False, True, "worker"),
                                Endpoint("10.244.2.2", 8080, True, True, False, "worker2")])
    other = ServicePort("d", "plain", "", "TCP", "10.96.0.6", 80)
    assert local_endpoints([sp, other], "worker") == {("d", "web"): (31000, 1)}
    assert local_endpoints([sp], "worker3") == {("d", "web"): (31000, 0)}
    assert json.loads(body(("d", "web"), 1, True)) == {"service": {"namespace": "d", "name": "web"},
                                                       "localEndpoints": 1, "serviceProxyHealthy": True}
