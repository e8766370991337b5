"""The syncers of every mode against a recorded fake of the commands they run, as upstream's
proxier tests run theirs against iptablestest's and knftables' fakes: what a full and a partial
sync hand to iptables-restore and nft, that a failed restore makes the next sync a full one, that
a missing jump is put back, and what IPVS mode runs (its netlink calls stubbed)."""

from __future__ import annotations

import pytest

from netlab.kit import net
from proxy import ipvs_sync
from proxy import iptables_render as iptables
from proxy.config import Config
from proxy.iptables_sync import IptablesSyncer
from proxy.nftables_sync import NftablesSyncer
from proxy.syncer import SyncError
from tests.proxyfake import FakeRunner, rules_of
from tests.test_proxy import _state, chains

CFG = Config(node_name="n1", cluster_cidr="10.244.0.0/16", node_ips=["172.18.0.2"])
A, B = ("a", "10.96.0.11", ["10.244.1.2"]), ("b", "10.96.0.12", ["10.244.1.3"])


def test_iptables_partial_sync_rewrites_only_what_changed():
    fake = FakeRunner()
    s = IptablesSyncer(CFG, "nft", fake)
    assert s.sync(_state(A, B)) == "full"
    final = _state(("b", "10.96.0.12", ["10.244.1.3", "10.244.2.4"]))
    fake.calls.clear()
    assert s.sync(final) == "partial"
    [(argv, text)] = fake.commands("iptables-restore")
    assert argv[0] == "iptables-nft-restore" and "--noflush" in argv
    assert "10.96.0.11" not in text and "--to-destination 10.244.2.4:8080" in text
    assert "-X KUBE-SVC-" in text  # a's chains deleted
    assert not fake.commands("iptables-save")  # a partial sync reads nothing back
    # the tables now hold what a fresh kube-proxy writes for the same state
    fresh = FakeRunner()
    IptablesSyncer(CFG, "nft", fresh).sync(final)
    assert chains(fake.save()) == chains(fresh.save())
    for table, chain, rule in iptables.JUMPS:
        assert fake.save(table).count(f"-A {chain} {rule}\n") == 1
    assert s.stats["syncs"] == 2 and s.stats["partial"] == 1 and s.stats["failures"] == 0


def test_iptables_failed_restore_counts_and_makes_the_next_sync_full():
    fake = FakeRunner()
    s = IptablesSyncer(CFG, "nft", fake)
    s.sync(_state(A))
    fake.fail = lambda argv, stdin: "iptables-restore: line 7 failed" if "restore" in argv[0] else None
    with pytest.raises(SyncError, match="line 7 failed"):
        s.sync(_state(A, B))
    assert s.stats["failures"] == 1 and s.applied is None
    fake.fail = lambda argv, stdin: None
    fake.calls.clear()
    assert s.sync(_state(A, B)) == "full"
    assert [argv[0] for argv, _ in fake.calls].count("iptables-nft-save") == 2  # the tables read again
    assert "-A KUBE-SERVICES" in fake.save("nat") and "10.96.0.12" in fake.save("nat")


def test_iptables_full_sync_puts_back_a_deleted_jump():
    fake = FakeRunner()
    s = IptablesSyncer(CFG, "legacy", fake)
    s.sync(_state(A))
    table, chain, rule = iptables.JUMPS[-3]
    fake.tables[table][chain].remove(rule)  # someone deleted the jump
    fake.calls.clear()
    assert s.sync(_state(A), full=True) == "full"
    restores = fake.commands("iptables-restore")
    assert len(restores) == 2 and f"-C {chain} {rule}" in restores[0][1]  # checked, failed, then read and put back
    assert f"-I {chain} 1 {rule}" in restores[1][1]
    assert fake.save(table).count(f"-A {chain} {rule}\n") == 1


def test_iptables_first_sync_deletes_chains_a_previous_kube_proxy_left():
    fake = FakeRunner()
    IptablesSyncer(CFG, "nft", fake).sync(_state(A, B))
    IptablesSyncer(CFG, "nft", fake).sync(_state(B))  # restarted, after a went
    nat = rules_of(fake.save("nat"))
    assert sum(c.startswith("KUBE-SVC-") for c in nat) == 1 and "10.96.0.11" not in fake.save("nat")


def test_iptables_cleanup_leaves_nothing():
    fake = FakeRunner()
    s = IptablesSyncer(CFG, "nft", fake)
    s.sync(_state(A, B))
    s.cleanup()
    assert "KUBE-" not in fake.save()


def test_nftables_transactions_and_stale_chains():
    fake = FakeRunner()
    s = NftablesSyncer(CFG, fake)
    assert s.sync(_state(A, B)) == "full"
    [(argv, text)] = fake.commands("nft")
    assert argv == ["nft", "-f", "-"] and text.startswith("add table ip kube-proxy")
    fake.calls.clear()
    assert s.sync(_state(B)) == "partial"
    [(_, text)] = fake.commands("nft")
    assert "delete table" not in text and "flush chain ip kube-proxy service-" in text
    assert s.stale_due() is not None
    s.STALE_DELAY = 0
    fake.calls.clear()
    s.delete_stale()
    [(_, text)] = fake.commands("nft")
    assert text.count("delete chain ip kube-proxy") == 3 and "default/a/" in text and s.stale_due() is None
    fake.fail = lambda argv, stdin: "Error: Could not process rule"
    with pytest.raises(SyncError):
        s.sync(_state(A, B))
    assert s.stats["failures"] == 1 and s.applied is None
    fake.fail = lambda argv, stdin: None
    assert s.sync(_state(A, B)) == "full"


def test_ipvs_sync_runs_ipset_and_iptables_restore(monkeypatch):
    calls = []
    addrs = {"10.96.0.99/32"}  # left from a Service that went
    monkeypatch.setattr(net, "dummy", lambda ns, name: calls.append(("dummy", name)))
    monkeypatch.setattr(net, "addr_list", lambda ns, dev=None: sorted(addrs))
    monkeypatch.setattr(net, "addr_add", lambda ns, dev, a: (calls.append(("add", a)), addrs.add(a)))
    monkeypatch.setattr(net, "addr_del", lambda ns, dev, a: (calls.append(("del", a)), addrs.discard(a)))
    monkeypatch.setattr(net, "ipvs_apply", lambda ns, vs: calls.append(("ipvs", sorted(vs))))
    fake = FakeRunner()
    s = ipvs_sync.IpvsSyncer(CFG, fake, backend="nft")
    assert s.sync(_state(A, B)) == "full"
    assert ("del", "10.96.0.99/32") in calls and addrs == {"10.96.0.11/32", "10.96.0.12/32"}
    assert ("ipvs", [("10.96.0.11", 80, "TCP"), ("10.96.0.12", 80, "TCP"), ("172.18.0.2", 30091, "TCP"),
                     ("172.18.0.2", 30092, "TCP")]) in calls
    [(_, sets)] = fake.commands("ipset")
    assert "add KUBE-CLUSTER-IP 10.96.0.11,tcp:80" in sets and "add KUBE-NODE-PORT-TCP 30091" in sets
    nat = fake.save("nat")
    assert "--match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ" in nat
    assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in nat
    fake.fail = lambda argv, stdin: "ipset v7: Kernel error" if argv[0] == "ipset" else None
    with pytest.raises(SyncError):
        s.sync(_state(A))
    assert s.stats["failures"] == 1


def test_ipvs_sync_binds_and_programs_load_balancer_ips(monkeypatch):
    """A LoadBalancer Service in IPVS mode: its ingress IP bound to kube-ipvs0 (so the node's kernel
    hands the packets to IPVS, as upstream binds it), a virtual server for it (only local real servers
    for externalTrafficPolicy Local), the KUBE-LOAD-BALANCER sets and chain (masquerade unless Local),
    and strict ARP among the sysctls so that only the announcing speaker answers ARP for the IP. The
    kernel here has no ip_vs: the real thing is the test VM's (scripts/test-vm)."""
    from proxy.model import service_ports

    calls, addrs = [], set()
    monkeypatch.setattr(net, "dummy", lambda ns, name: None)
    monkeypatch.setattr(net, "addr_list", lambda ns, dev=None: sorted(addrs))
    monkeypatch.setattr(net, "addr_add", lambda ns, dev, a: addrs.add(a))
    monkeypatch.setattr(net, "addr_del", lambda ns, dev, a: addrs.discard(a))
    monkeypatch.setattr(net, "ipvs_apply", lambda ns, vs: calls.append(dict(vs)))

    def lb(name: str, ip: str, lb_ip: str, local: bool) -> tuple[dict, dict]:
        svc = {"metadata": {"name": name, "namespace": "default"},
               "spec": {"type": "LoadBalancer", "clusterIP": ip, "externalTrafficPolicy": "Local" if local else "Cluster",
                        "ports": [{"name": "http", "port": 80, "nodePort": 30000 + int(ip.split(".")[-1])}]},
               "status": {"loadBalancer": {"ingress": [{"ip": lb_ip, "ipMode": "VIP"}]}}}
        eps = {"metadata": {"name": f"{name}-1", "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
               "endpoints": [{"addresses": ["10.244.1.2"], "nodeName": "n1", "conditions": {"ready": True}},
                             {"addresses": ["10.244.2.2"], "nodeName": "n2", "conditions": {"ready": True}}]}
        return svc, eps
    (s1, e1), (s2, e2) = lb("web", "10.96.0.21", "172.18.0.200", False), lb("local", "10.96.0.22", "172.18.0.201", True)
    fake = FakeRunner()
    ipvs_sync.IpvsSyncer(CFG, fake, backend="nft").sync(service_ports([s1, s2], [e1, e2]))
    assert {"172.18.0.200/32", "172.18.0.201/32", "10.96.0.21/32", "10.96.0.22/32"} == addrs
    (vs,) = calls
    assert vs[("172.18.0.200", 80, "TCP")] == ("rr", 0, [("10.244.1.2", 8080), ("10.244.2.2", 8080)])
    assert vs[("172.18.0.201", 80, "TCP")] == ("rr", 0, [("10.244.1.2", 8080)])  # n1's own endpoint only
    [(_, sets)] = fake.commands("ipset")
    assert "add KUBE-LOAD-BALANCER 172.18.0.200,tcp:80" in sets and "add KUBE-LOAD-BALANCER 172.18.0.201,tcp:80" in sets
    assert "add KUBE-LOAD-BALANCER-LOCAL 172.18.0.201,tcp:80" in sets
    assert "add KUBE-LOAD-BALANCER-LOCAL 172.18.0.200" not in sets
    nat = fake.save("nat")
    assert ('-A KUBE-SERVICES -m comment --comment "Kubernetes service lb portal" -m set --match-set '
            "KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER") in nat
    assert "--match-set KUBE-LOAD-BALANCER-LOCAL dst,dst -j RETURN" in nat
    assert "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ" in nat
    assert ipvs_sync.SYSCTLS["net.ipv4.conf.all.arp_ignore"] == 1
    assert ipvs_sync.SYSCTLS["net.ipv4.conf.all.arp_announce"] == 2
