"""kube-proxy's renderers against upstream's own expectations, and the syncers against the real
kernel (iptables-restore and nft in a namespace of their own)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from netlab.kit import net
from proxy import iptables_render as iptables
from proxy import nftables_render as nftables
from proxy.config import Config
from proxy.iptables_sync import IptablesSyncer, detect_backend
from proxy.nftables_sync import NftablesSyncer
from proxy.syncer import Runner
from proxy.__main__ import load_state
from proxy.model import ServiceMap, service_ports

UPSTREAM = Path(__file__).parent / "data" / "upstream"


def chains(text: str) -> dict[str, dict[str, list[str]]]:
    """table -> chain -> rules in order (chain order within a file carries no meaning)."""
    out: dict[str, dict[str, list[str]]] = {}
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = out.setdefault(line[1:], {})
        elif line.startswith(":"):
            table.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            chain, _, rule = line[3:].partition(" ")
            table.setdefault(chain, []).append(rule)
    return out


def upstream_ports():
    services, slices = load_state(str(UPSTREAM / "overall.yaml"))
    return service_ports(services, slices)


def test_iptables_rules_match_upstreams_overall_test():
    cfg = Config(node_name="test-node", cluster_cidr="10.0.0.0/8", random_fully=False, nfacct=True)
    rs = iptables.render(upstream_ports(), cfg)
    ours = chains(iptables.restore_text(rs, "filter") + iptables.restore_text(rs, "nat"))
    want = chains((UPSTREAM / "overall.iptables").read_text())
    for table in ("filter", "nat"):
        assert set(ours[table]) == set(want[table]), table
        for chain, rules in want[table].items():
            assert ours[table][chain] == rules, f"{table} {chain}"


def test_probabilities_and_affinity():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}],
                    "sessionAffinity": "ClientIP"}}
    eps = {"metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
           "endpoints": [{"addresses": [f"10.244.1.{i}"]} for i in range(2, 6)]}
    rs = iptables.render(service_ports([svc], [eps]), Config(cluster_cidr="10.244.0.0/16"))
    svc_chain = next(c for c in rs.nat.chains if c.startswith("KUBE-SVC-"))
    rules = rs.nat.chains[svc_chain]
    # the masquerade rule, 4 affinity checks (default 3 hours), then 1/4, 1/3, 1/2 and the rest
    assert all("--rcheck --seconds 10800 --reap" in r for r in rules[1:5])
    probs = [r.split("--probability ")[1].split()[0] if "--probability" in r else None for r in rules[5:]]
    assert probs == ["0.2500000000", "0.3333333333", "0.5000000000", None]


def test_terminating_endpoints_only_when_none_is_ready():
    svc = {"metadata": {"name": "s", "namespace": "n"}, "spec": {"clusterIP": "10.96.0.30", "ports": [{"port": 80}]}}

    def slice_(eps):
        return {"metadata": {"name": "s-1", "namespace": "n", "labels": {"kubernetes.io/service-name": "s"}},
                "addressType": "IPv4", "ports": [{"port": 80}], "endpoints": eps}
    ready = {"addresses": ["10.244.1.2"], "conditions": {"ready": True}}
    draining = {"addresses": ["10.244.1.3"], "conditions": {"ready": False, "serving": True, "terminating": True}}
    used = {e.ip for e in service_ports([svc], [slice_([ready, draining])])[0].categorize("")[0]}
    assert used == {"10.244.1.2"}
    used = {e.ip for e in service_ports([svc], [slice_([draining])])[0].categorize("")[0]}
    assert used == {"10.244.1.3"}


def test_render_command_touches_nothing():
    for mode in ("iptables", "nftables", "ipvs"):
        r = subprocess.run([sys.executable, "-m", "proxy", "render", "--mode", mode, "--state",
                            str(UPSTREAM / "overall.yaml"), "--hostname-override", "test-node",
                            "--cluster-cidr", "10.0.0.0/8", "--node-ip", "192.168.0.2"],
                           capture_output=True, text=True, check=True)
        assert "172.30.0.41" in r.stdout


# --- against the kernel -------------------------------------------------------------------------

def _svc(name: str, ip: str, endpoints: list[str]) -> tuple[dict, dict]:
    svc = {"metadata": {"name": name, "namespace": "default"},
           "spec": {"type": "NodePort", "clusterIP": ip, "ports": [{"name": "http", "port": 80, "nodePort": 30080 +
                                                                    int(ip.split(".")[-1])}]}}
    eps = {"metadata": {"name": f"{name}-1", "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
           "endpoints": [{"addresses": [a]} for a in endpoints]}
    return svc, eps


def _state(*specs) -> list:
    svcs, slices = zip(*[_svc(*s) for s in specs], strict=True) if specs else ((), ())
    return service_ports(list(svcs), list(slices))


def test_service_map_rereads_only_the_services_that_changed():
    (sa, ea), (sb, eb) = _svc("a", "10.96.0.11", ["10.244.1.2"]), _svc("b", "10.96.0.12", ["10.244.1.3"])
    m = ServiceMap()
    for o in (sa, sb):
        m.set_service(o)
    for o in (ea, eb):
        m.set_slice(o)
    first = m.take()
    assert [(p.name, [e.ip for e in p.endpoints]) for p in first] == [("a", ["10.244.1.2"]), ("b", ["10.244.1.3"])]
    assert m.take() is first  # nothing changed
    m.set_slice({**eb, "endpoints": [{"addresses": ["10.244.2.9"]}]})
    second = m.take()
    assert second[0] is first[0] and [e.ip for e in second[1].endpoints] == ["10.244.2.9"]
    # the slice now filed under another Service: b has no endpoints left, a gains them
    m.set_slice({**eb, "metadata": {**eb["metadata"], "labels": {"kubernetes.io/service-name": "a"}}})
    assert [(p.name, len(p.endpoints)) for p in m.take()] == [("a", 2), ("b", 0)]
    m.set_service(sa, deleted=True)
    assert [p.name for p in m.take()] == ["b"]


@pytest.fixture
def node():
    ns = "nltproxy"
    net.ns_create(ns)
    try:
        yield ns
    finally:
        net.ns_delete(ns)


def run(argv: list[str], stdin: str | None = None) -> str:
    return Runner().run(argv, stdin)


def _in(ns: str, fn, *args):
    return net.call_in(ns, fn, *args)


@pytest.mark.lab
def test_iptables_full_then_partial_syncs(node):
    cfg = Config(node_name="n1", cluster_cidr="10.244.0.0/16")
    backend = detect_backend()

    def steps():
        s = IptablesSyncer(cfg, backend)
        kinds = [s.sync(_state(("a", "10.96.0.11", ["10.244.1.2"]), ("b", "10.96.0.12", ["10.244.1.3"])))]
        # b gains an endpoint, a goes: only b's chains are rewritten, a's are deleted
        final = _state(("b", "10.96.0.12", ["10.244.1.3", "10.244.2.4"]))
        kinds.append(s.sync(final))
        after_partial = run([s.tool("iptables-save")])
        s.cleanup()
        fresh = IptablesSyncer(cfg, backend)  # the same state written from scratch
        fresh.sync(final)
        after_full = run([fresh.tool("iptables-save")])
        fresh.cleanup()
        return kinds, after_partial, after_full, run([s.tool("iptables-save")])
    kinds, after_partial, after_full, after_cleanup = _in(node, steps)
    assert kinds == ["full", "partial"]
    assert chains(after_partial) == chains(after_full)
    assert "10.96.0.11" not in after_partial and "--to-destination 10.244.2.4:8080" in after_partial
    assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in after_partial
    assert "KUBE-" not in after_cleanup


@pytest.mark.lab
def test_iptables_first_sync_removes_the_chains_an_earlier_kube_proxy_left(node):
    cfg = Config(node_name="n1", cluster_cidr="10.244.0.0/16")
    backend = detect_backend()

    def steps():
        IptablesSyncer(cfg, backend).sync(_state(("a", "10.96.0.11", ["10.244.1.2"]),
                                                      ("b", "10.96.0.12", ["10.244.1.3"])))
        s = IptablesSyncer(cfg, backend)  # started again, after Service a went
        s.sync(_state(("b", "10.96.0.12", ["10.244.1.3"])))
        saved = run([s.tool("iptables-save"), "-t", "nat"])
        s.cleanup()
        return saved
    saved = _in(node, steps)
    assert "10.244.1.2" not in saved and "--to-destination 10.244.1.3:8080" in saved
    for prefix in (":KUBE-SVC-", ":KUBE-EXT-", ":KUBE-SEP-"):  # b's only
        assert sum(ln.startswith(prefix) for ln in saved.splitlines()) == 1, prefix


@pytest.mark.lab
@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_full_syncs_put_back_a_missing_jump_and_never_add_one_twice(node, backend):
    cfg = Config(node_name="n1", cluster_cidr="10.244.0.0/16")

    def steps():
        s = IptablesSyncer(cfg, backend)
        state = _state(("a", "10.96.0.11", ["10.244.1.2"]))
        s.sync(state)
        s.sync(state, full=True)
        twice = run([s.tool("iptables-save")])
        run([s.tool("iptables"), "-t", "nat", "-D", "PREROUTING", *shlex.split(iptables.JUMPS[-3][2])])
        s.sync(state, full=True)
        repaired = run([s.tool("iptables-save")])
        s.cleanup()
        return twice, repaired
    twice, repaired = _in(node, steps)
    for table, chain, rule in iptables.JUMPS:
        assert twice.count(f"-A {chain} {rule}") == 1, (table, chain, rule)
        assert repaired.count(f"-A {chain} {rule}") == 1, (table, chain, rule)


@pytest.mark.lab
def test_nftables_full_then_partial_syncs(node):
    cfg = Config(node_name="n1", cluster_cidr="10.244.0.0/16", node_ips=["172.18.0.2"])
    a = ("a", "10.96.0.11", ["10.244.1.2"])

    def steps():
        def listed():
            return run(["nft", "list", "table", "ip", nftables.TABLE])
        s = NftablesSyncer(cfg)
        kinds = [s.sync(_state(a, ("b", "10.96.0.12", ["10.244.1.3"])))]
        kinds.append(s.sync(_state(("b", "10.96.0.12", ["10.244.1.3", "10.244.2.4"]), ("c", "10.96.0.13", []))))
        partial = listed()
        s.STALE_DELAY = 0  # (upstream waits a second)
        s.delete_stale()
        cleaned = listed()
        # b's chains, left flushed and wanted again before their deletion, are kept (and do not
        # hold up the deletion of a's)
        s.STALE_DELAY = 60
        s.sync(_state(a))
        s.sync(_state(("b", "10.96.0.12", ["10.244.1.3"])))
        s.STALE_DELAY = 0
        s.delete_stale()
        back = listed()
        s.cleanup()
        return kinds, partial, cleaned, back, run(["nft", "list", "ruleset"])
    kinds, partial, cleaned, back, after = _in(node, steps)
    assert kinds == ["full", "partial"]
    assert "10.96.0.12 . tcp . 80 : goto service-" in partial and "10.96.0.11" not in partial
    assert "numgen random mod 2 vmap" in partial and "dnat to 10.244.2.4:8080" in partial
    assert "10.96.0.13 . tcp . 80 comment" in partial  # no endpoints: the reject map
    assert "elements = { 172.18.0.2 }" in partial  # nodeport-ips
    # a's chains: flushed by the sync, deleted a second later in a transaction of their own
    a_chains = [r"service-\w+-default/a/tcp/http", r"external-\w+-default/a/tcp/http",
                r"endpoint-\w+-default/a/tcp/http__10\.244\.1\.2/8080"]
    for c in a_chains:
        assert re.search(rf"chain {c} {{\n\t}}", partial), c
        assert not re.search(rf"chain {c} ", cleaned), c
    assert "dnat to 10.244.1.3:8080" in back and not any(re.search(rf"chain {c} ", back) for c in a_chains)
    assert "kube-proxy" not in after


def nft_items(text: str) -> dict[str, object]:
    """An `nft -f` transaction as declarations (a set), each chain's rules (in order) and the
    map and set elements (a set)."""
    decls, rules, elements = set(), {}, set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("delete table"):
            continue
        if line.startswith("add rule "):
            chain, _, rule = line.removeprefix(f"add rule {nftables.T} ").partition(" ")
            rules.setdefault(chain, []).append(rule)
        elif line.startswith("add element "):
            elements.add(line)
        else:
            decls.add(line)
    return {"declarations": decls, "rules": rules, "elements": elements}


def test_nftables_rules_match_upstreams_overall_test():
    cfg = Config(node_name="test-node", cluster_cidr="10.0.0.0/8", service_cidrs=["172.30.0.0/16"],
                          node_ips=["192.168.0.2"])
    ours = nft_items(nftables.transaction(nftables.render(upstream_ports(), cfg), None).text)
    want = nft_items((UPSTREAM / "overall.nft").read_text())
    assert ours["declarations"] == want["declarations"]
    assert ours["elements"] == want["elements"]
    assert set(ours["rules"]) == set(want["rules"])
    for chain, rules in want["rules"].items():
        assert ours["rules"][chain] == rules, chain
