"""NetworkPolicy rendering (netpol/render.py), without a kernel: the table's layout as a learner
reads it, and each semantic case as a whole truth table over upstream e2e's model (namespaces
x, y, z, pods a, b, c, TCP 80 and 81), judged by the evaluator in tests/netpolkit.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from netlab.api.selectors import format_label_selector
from netpol import render
from netpol.model import policy_types
from tests.netpolkit import NODES, Evaluator, Packet, allowed, expect, model, namespace, pod, policy, truth_table


def ns_of(key: str) -> str:
    return key.split("/")[0]


def name_of(key: str) -> str:
    return key.split("/")[1]


def rulesets(policies, m=None, nodes=NODES):
    m = m or model()
    return {n: render.build(policies, m.pods, m.namespaces, n) for n in nodes}


def check(policies, fn, m=None, port=80, proto="tcp"):
    m = m or model()
    assert truth_table(rulesets(policies, m), m, port, proto) == expect(m, fn)


def ns_peer(**labels: str) -> dict:
    return {"namespaceSelector": {"matchLabels": labels}}


DENY_INGRESS_X = policy("x", "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})


# --- the table as a learner reads it -------------------------------------------------------------

def test_the_table_is_replaced_whole_in_one_transaction_and_hooks_after_dnat():
    text = render.render([], [], [], "worker", "10.244.1.0/24")
    lines = text.splitlines()
    assert lines[:3] == ["add table inet netlab-netpol", "delete table inet netlab-netpol", "table inet netlab-netpol {"]
    hooks = [ln.strip() for ln in lines if "type filter hook" in ln]
    assert hooks == [f"type filter hook {h} priority {p}; policy accept;" for h, p in (
        ("forward", "filter"), ("forward", "filter + 1"), ("input", "101"), ("output", "filter"), ("output", "filter + 1"))]
    assert "prerouting" not in text and "postrouting" not in text  # after DNAT, before SNAT
    assert text.count("ct state established,related accept") == 5
    assert "NetworkPolicy for the pods of node worker (10.244.1.0/24)" in text


def test_no_policy_allows_everything():
    check([], lambda s, d: True)
    rs = rulesets([])["worker"]
    assert set(rs.chains) == set(render.BASE_CHAINS)
    assert not rs.sets["ingress-pods"].elements and not rs.sets["egress-pods"].elements


def test_chains_and_sets_are_named_for_the_policy_and_pod():
    m = model()
    pol = policy("x", "allow-b", {"podSelector": {"matchLabels": {"pod": "a"}},
                                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                                               "ports": [{"port": 80}]}]})
    rs = render.build([pol], m.pods, m.namespaces, m.node("x/a"))
    assert rs.sets["ingress-pods"].elements == [f'{m.ip("x/a")} comment "x/a" : goto pod-ingress-x/a']
    assert rs.chains["pod-ingress-x/a"].rules == [
        'jump ingress-x/allow-b comment "NetworkPolicy x/allow-b"',
        'counter drop comment "default deny ingress of x/a (x/allow-b)"']
    assert rs.chains["ingress-x/allow-b"].comment == "NetworkPolicy x/allow-b: its ingress rules"
    assert rs.chains["ingress-x/allow-b"].rules == [
        'ip saddr @ingress-x/allow-b/0/0 meta l4proto . th dport { tcp . 80 } counter accept '
        'comment "rule 0 from[0] podSelector pod=b, ports TCP/80"']
    peers = rs.sets["ingress-x/allow-b/0/0"]
    assert peers.elements == [m.ip("x/b")] and peers.comment == "x/allow-b ingress rule 0 from[0]: podSelector pod=b"
    # the other node has none of x/a's rules: only what its own pods need
    other = render.build([pol], m.pods, m.namespaces, "worker2" if m.node("x/a") == "worker" else "worker")
    assert set(other.chains) == set(render.BASE_CHAINS) and "ingress-x/allow-b/0/0" not in other.sets


def test_drops_can_be_logged():
    m = model()
    text = render.render([DENY_INGRESS_X], m.pods, m.namespaces, m.node("x/a"), log_drops=True)
    assert 'counter log prefix "netpol drop ingress x/a: " drop comment' in text


def test_a_policy_annotated_log_drops_logs_the_drops_of_the_pods_it_selects():
    m = model()
    logged = policy("x", "deny-a", {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"]})
    logged["metadata"]["annotations"] = {"netpol.netlab.io/log-drops": "true"}
    rs = render.build([DENY_INGRESS_X, logged], m.pods, m.namespaces, m.node("x/a"))
    assert rs.chains["pod-ingress-x/a"].rules[-1].startswith('counter log prefix "netpol drop ingress x/a: " drop')
    other = next(c for n, c in rs.chains.items() if n.startswith("pod-ingress-") and n != "pod-ingress-x/a")
    assert "log" not in other.rules[-1]  # a pod only the unannotated policy selects


def test_a_policy_with_no_rules_has_an_empty_chain_that_says_so():
    rs = rulesets([DENY_INGRESS_X])["worker"]
    assert rs.chains["ingress-x/deny-ingress"].rules == []
    assert "(none: it allows nothing)" in rs.chains["ingress-x/deny-ingress"].comment


def test_long_names_stay_within_nftables_limit():
    m = model()
    long = "p" * 253
    pol = policy("x", long, {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
    rs = render.build([pol], m.pods, m.namespaces, "worker")
    assert all(len(n) <= 255 for n in [*rs.chains, *rs.sets])
    assert any(n.startswith(f"ingress-x/{'p' * 100}") for n in rs.chains)


# --- the semantics, as truth tables ---------------------------------------------------------------

def test_default_deny_ingress():
    check([DENY_INGRESS_X], lambda s, d: ns_of(d) != "x")


def test_default_deny_egress():
    pol = policy("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    check([pol], lambda s, d: ns_of(s) != "x")


def test_allow_from_same_namespace():
    pol = policy("x", "same-ns", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
    check([pol], lambda s, d: ns_of(d) != "x" or ns_of(s) == "x")


def test_allow_from_a_namespace_by_label():
    pol = policy("x", "from-y", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})
    check([pol], lambda s, d: ns_of(d) != "x" or ns_of(s) == "y")


def test_allow_from_a_namespace_by_its_name_label_the_api_server_sets():
    pol = policy("x", "from-y", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In",
                                                      "values": ["y", "z"]}]}}]}]})
    m = model()
    bare = type(m)(m.pods, ())  # namespaces not (yet) known: their name label still holds
    for mm in (m, bare):
        check([pol], lambda s, d: ns_of(d) != "x" or ns_of(s) in ("y", "z"), mm)


def test_pod_and_namespace_selector_in_one_peer_is_and():
    pol = policy("x", "and", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]})
    check([pol], lambda s, d: d != "x/a" or s == "y/b")


def test_pod_and_namespace_selector_in_two_peers_is_or():
    pol = policy("x", "or", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}}, {"podSelector": {"matchLabels": {"pod": "b"}}}]}]})
    check([pol], lambda s, d: d != "x/a" or ns_of(s) == "y" or s == "x/b")


def test_empty_and_missing_selectors():
    # namespaceSelector {}: every namespace; missing: the policy's own
    every = policy("x", "every-ns", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]})
    check([every], lambda s, d: ns_of(d) != "x" or name_of(s) == "b")
    own = policy("x", "own-ns", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]})
    check([own], lambda s, d: ns_of(d) != "x" or s == "x/b")
    # a rule with no `from`: every source; no rules: none
    check([policy("x", "all", {"podSelector": {}, "ingress": [{}]})], lambda s, d: True)
    check([policy("x", "none", {"podSelector": {}, "ingress": []})], lambda s, d: ns_of(d) != "x")
    # the policy's podSelector {}: every pod of its namespace; a selector matching none: no pod
    check([policy("x", "nobody", {"podSelector": {"matchLabels": {"pod": "nope"}}})], lambda s, d: True)


def test_match_expressions():
    pol = policy("x", "expr", {"podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn",
                                                                       "values": ["a"]}]},
                               "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {
                                   "matchExpressions": [{"key": "pod", "operator": "Exists"},
                                                        {"key": "pod", "operator": "In", "values": ["c"]}]}}]}]})
    check([pol], lambda s, d: d == "x/a" or ns_of(d) != "x" or name_of(s) == "c")


def test_named_port():
    pol = policy("x", "named", {"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]})
    check([pol], lambda s, d: ns_of(d) != "x", port=80)
    check([pol], lambda s, d: True, port=81)


def test_named_ports_resolve_on_each_selected_pod():
    pods = (pod("x", "a", "10.244.1.2", "worker", ports=(("http", 8080, "TCP"),)),
            pod("x", "b", "10.244.1.3", "worker", ports=(("http", 9090, "TCP"), ("dns", 53, "UDP"))),
            pod("y", "c", "10.244.1.4", "worker"))
    pol = policy("x", "named", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}, {"port": "dns"}]}]})
    rs = render.build([pol], pods, [namespace("x"), namespace("y")], "worker")
    # "dns" is UDP on x/b: a port named dns with protocol TCP (the default) matches nothing
    assert rs.sets["ingress-x/named/0/named-ports"].elements == ["10.244.1.2 . tcp . 8080", "10.244.1.3 . tcp . 9090"]
    ev = Evaluator(rs)
    assert ev.hook("forward", Packet("10.244.1.4", "10.244.1.2", dport=8080)) == "accept"
    assert ev.hook("forward", Packet("10.244.1.4", "10.244.1.2", dport=9090)) == "drop"
    assert ev.hook("forward", Packet("10.244.1.4", "10.244.1.3", dport=9090)) == "accept"
    assert ev.hook("forward", Packet("10.244.1.4", "10.244.1.3", "udp", 53)) == "drop"


def test_egress_named_ports_resolve_on_the_destination():
    pol = policy("x", "egress-named", {"podSelector": {}, "policyTypes": ["Egress"],
                                       "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": "serve-81-tcp"}]}]})
    check([pol], lambda s, d: ns_of(s) != "x", port=80)
    check([pol], lambda s, d: True, port=81)


def test_end_port():
    pol = policy("x", "range", {"podSelector": {}, "ingress": [{"ports": [{"port": 81, "endPort": 90}]}]})
    check([pol], lambda s, d: ns_of(d) != "x", port=80)
    check([pol], lambda s, d: True, port=81)
    m = model()
    assert allowed(rulesets([pol], m), m, "y/a", "x/a", port=90)
    assert not allowed(rulesets([pol], m), m, "y/a", "x/a", port=91)


def test_overlapping_ports_are_merged_for_nftables():
    pol = policy("x", "ports", {"podSelector": {}, "ingress": [{"ports": [
        {"port": 80}, {"port": 80, "endPort": 85}, {"port": 86}, {"port": 90, "endPort": 95}, {"port": 53, "protocol": "UDP"}]}]})
    rs = rulesets([pol])["worker"]
    assert "meta l4proto . th dport { tcp . 80-86, tcp . 90-95, udp . 53 }" in rs.chains["ingress-x/ports"].rules[0]


def test_protocols():
    udp = policy("x", "udp", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP", "port": 80}]}]})
    check([udp], lambda s, d: ns_of(d) != "x", proto="tcp")
    check([udp], lambda s, d: True, proto="udp")
    sctp = policy("x", "sctp", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP"}]}]})
    check([sctp], lambda s, d: True, proto="sctp", port=12345)
    check([sctp], lambda s, d: ns_of(d) != "x", proto="tcp")
    assert "meta l4proto sctp counter accept" in rulesets([sctp])["worker"].chains["ingress-x/sctp"].rules[0]


def test_ip_block_with_except():
    m = model()
    pol = policy("x", "block", {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{m.ip('y/b')}/32"]}}]}]})
    check([pol], lambda s, d: ns_of(d) != "x" or s != "y/b", m)
    rs = rulesets([pol], m)["worker"]
    assert rs.chains["ingress-x/block"].rules[0].startswith(f"ip saddr 10.244.0.0/16 ip saddr != {{ {m.ip('y/b')}/32 }} ")
    # from outside the cluster
    assert allowed(rulesets([pol], m), m, "", "x/a", src_ip="10.244.200.1")
    assert not allowed(rulesets([pol], m), m, "", "x/a", src_ip="172.18.0.1")


def test_egress_to_an_ip_block():
    m = model()
    pol = policy("x", "to-block", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [
        {"ipBlock": {"cidr": f"{m.ip('y/a')}/32"}}]}]})
    check([pol], lambda s, d: ns_of(s) != "x" or d == "y/a", m)


def test_egress_to_dns_only():
    m = model()
    pol = policy("x", "dns-only", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [
        {"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]})
    check([pol], lambda s, d: ns_of(s) != "x", m)
    check([pol], lambda s, d: True, m, port=53, proto="udp")
    check([pol], lambda s, d: True, m, port=53, proto="tcp")


def test_multiple_policies_are_unioned():
    from_y = policy("x", "from-y", {"podSelector": {}, "ingress": [{"from": [ns_peer(ns="y")]}]})
    from_z = policy("x", "from-z", {"podSelector": {"matchLabels": {"pod": "a"}},
                                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]})
    check([from_y, from_z], lambda s, d: ns_of(d) != "x" or ns_of(s) == "y" or (d == "x/a" and ns_of(s) == "z"))
    m = model()
    rs = render.build([from_y, from_z], m.pods, m.namespaces, m.node("x/a"))
    assert rs.chains["pod-ingress-x/a"].rules == [
        'jump ingress-x/from-y comment "NetworkPolicy x/from-y"', 'jump ingress-x/from-z comment "NetworkPolicy x/from-z"',
        'counter drop comment "default deny ingress of x/a (x/from-y, x/from-z)"']


def test_ingress_and_egress_both_hold_between_pods_of_one_node():
    m = model()
    egress = policy("x", "egress-to-y", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})
    ingress = policy("y", "from-z", {"podSelector": {}, "ingress": [{"from": [ns_peer(ns="z")]}]})
    check([egress, ingress], lambda s, d: (ns_of(s) != "x" or ns_of(d) == "y") and (ns_of(d) != "y" or ns_of(s) == "z"), m)


def test_a_pod_whose_labels_change_enters_a_policy():
    pol = policy("x", "deny-marked", {"podSelector": {"matchLabels": {"deny": "yes"}}, "policyTypes": ["Ingress"]})
    check([pol], lambda s, d: True)
    m = model({"x/b": {"pod": "b", "deny": "yes"}})
    check([pol], lambda s, d: d != "x/b", m)


def test_a_namespace_whose_labels_change_enters_a_peer():
    pol = policy("x", "from-team", {"podSelector": {}, "ingress": [{"from": [ns_peer(team="t")]}]})
    m = model()
    check([pol], lambda s, d: ns_of(d) != "x", m)
    relabelled = type(m)(m.pods, (namespace("x"), namespace("y", team="t"), namespace("z")))
    check([pol], lambda s, d: ns_of(d) != "x" or ns_of(s) == "y", relabelled)


def test_policy_types_are_inferred_and_obeyed():
    assert policy_types({}) == ["Ingress"]
    assert policy_types({"egress": [{}]}) == ["Ingress", "Egress"]
    assert policy_types({"egress": []}) == ["Ingress"]
    assert policy_types({"policyTypes": ["Egress"], "ingress": [{}]}) == ["Egress"]
    # egress rules and no policyTypes: isolated both ways
    both = policy("x", "both", {"podSelector": {}, "egress": [{"to": [{"podSelector": {}}]}]})
    check([both], lambda s, d: ns_of(s) != "x" and ns_of(d) != "x")
    # policyTypes [Ingress]: its egress rules are ignored
    ingress_only = policy("x", "in", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}],
                                      "egress": [{"to": [{"podSelector": {}}]}]})
    check([ingress_only], lambda s, d: True)


def test_replies_and_established_connections_pass():
    m = model()
    rs = rulesets([DENY_INGRESS_X], m)[m.node("x/a")]
    ev = Evaluator(rs)
    assert ev.hook("forward", Packet(m.ip("y/a"), m.ip("x/a"))) == "drop"
    assert ev.hook("forward", Packet(m.ip("y/a"), m.ip("x/a"), state="established")) == "accept"
    deny_out = policy("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    ev = Evaluator(rulesets([DENY_INGRESS_X, deny_out], m)[m.node("x/a")])
    # x/a answers a connection the node made to it (a probe), although it may send nothing new
    assert ev.hook("forward", Packet(m.ip("x/a"), m.ip("y/a"), state="established")) == "accept"


def test_egress_to_the_node_itself_is_judged_at_input_and_the_node_reaches_its_pods():
    m = model()
    deny_out = policy("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    node = ("172.18.0.3", "10.244.1.1")
    ev = Evaluator(rulesets([DENY_INGRESS_X, deny_out], m)[m.node("x/a")], local=node)
    assert ev.hook("input", Packet(m.ip("x/a"), "172.18.0.3", dport=10250)) == "drop"
    assert ev.hook("input", Packet(m.ip("y/a"), "172.18.0.3", dport=10250)) == "accept"
    for src in node:  # the node's own traffic to its pods: always allowed
        assert ev.hook("output", Packet(src, m.ip("x/a"))) == "accept"


def test_service_traffic_ipvs_sends_on_through_output_is_judged_there():
    m = model()
    deny_out = policy("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    ev = Evaluator(rulesets([DENY_INGRESS_X, deny_out], m)[m.node("x/a")], local=("172.18.0.3",))
    # after IPVS's DNAT the packet leaves with the client pod's address: ingress and egress both hold
    assert ev.hook("output", Packet(m.ip("y/a"), m.ip("x/a"))) == "drop"
    assert ev.hook("output", Packet(m.ip("x/a"), m.ip("y/a"))) == "drop"
    assert ev.hook("output", Packet(m.ip("y/a"), m.ip("z/a"))) == "accept"


def test_host_network_and_finished_pods_take_no_part():
    pods = (pod("x", "host", "172.18.0.3", "worker", host_network=True),
            pod("x", "done", "10.244.1.9", "worker", labels={"pod": "b"}, phase="Succeeded"),
            pod("x", "b", "10.244.1.4", "worker"), pod("x", "a", "10.244.1.5", "worker"))
    pol = policy("x", "from-b", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]})
    rs = render.build([pol], pods, [namespace("x")], "worker")
    assert [e.split(" ")[0] for e in rs.sets["ingress-pods"].elements] == ["10.244.1.5", "10.244.1.4"]
    assert rs.sets["ingress-x/from-b/0/0"].elements == ["10.244.1.4"]
    assert "172.18.0.3" not in rs.text


def test_a_pod_outside_the_node_pod_cidr_is_not_policed_there():
    pods = (pod("x", "a", "10.244.1.5", "worker"), pod("x", "odd", "10.244.7.5", "worker"))
    rs = render.build([DENY_INGRESS_X], pods, [namespace("x")], "worker", "10.244.1.0/24")
    assert [e.split(" ")[0] for e in rs.sets["ingress-pods"].elements] == ["10.244.1.5"]


def test_two_pods_reporting_one_address_get_one_map_element():
    pods = (pod("x", "a", "10.244.1.5", "worker"), pod("x", "b", "10.244.1.5", "worker"))
    rs = render.build([DENY_INGRESS_X], pods, [namespace("x")], "worker")
    assert len(rs.sets["ingress-pods"].elements) == 1


def test_selectors_are_described_as_kubectl_prints_them():
    sel = {"matchLabels": {"tier": "x", "app": "web"}, "matchExpressions": [
        {"key": "env", "operator": "In", "values": ["b", "a"]}, {"key": "legacy", "operator": "DoesNotExist"},
        {"key": "zone", "operator": "Exists"}]}
    assert format_label_selector(sel) == "app=web,env in (a,b),!legacy,tier=x,zone"
    assert format_label_selector({}) == format_label_selector(None) == "<none>"


def test_render_command_prints_the_table_for_a_state_file(tmp_path):
    m = model()
    state = tmp_path / "state.yaml"
    state.write_text(yaml.safe_dump_all([*m.namespaces, *m.pods, DENY_INGRESS_X]))
    out = subprocess.run([sys.executable, "-m", "netpol", "render", "--state", str(state), "--hostname-override",
                          "worker", "--pod-cidr", "10.244.1.0/24"], capture_output=True, text=True, check=True).stdout
    assert out == render.render([DENY_INGRESS_X], m.pods, m.namespaces, "worker", "10.244.1.0/24")
    bad = subprocess.run([sys.executable, "-m", "netpol", "render", "--state", str(tmp_path / "none.yaml")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "cannot read --state" in bad.stderr


@pytest.mark.parametrize("rule", [{"from": [{}]}, {"from": [{"ipBlock": {"cidr": "bogus"}}]}])
def test_a_peer_that_matches_nothing_allows_nothing(rule):
    check([policy("x", "odd", {"podSelector": {}, "ingress": [rule]})], lambda s, d: ns_of(d) != "x")


def test_netlab_rules_groups_a_policy_from_the_kernel_listing():
    """`netlab rules --policy`'s grouping of `nft -j list table inet netlab-netpol`, as a real
    kernel (nft 1.0.6) listed the table for a policy with a pod+namespace peer, an ipBlock with
    except, a numbered and a named port, and a default-deny egress policy."""
    import json
    from pathlib import Path

    from netlab.tools.rules import format_policies, netpol_policies

    pcs = netpol_policies(json.loads((Path(__file__).parent / "data" / "netpol-table.json").read_text()))
    assert [(p.policy, p.direction, p.chain) for p in pcs] == [
        ("x/allow-client", "ingress", "ingress-x/allow-client"), ("z/deny-egress", "egress", "egress-z/deny-egress")]
    allow = pcs[0]
    assert allow.pods == [("x/a", "10.244.1.2", "pod-ingress-x/a", 0)]
    assert [(p.peer, p.addresses, [q.ports for q in p.ports]) for p in allow.rules[0]] == [
        ("from[0] namespaceSelector ns=y and podSelector pod=b", ["10.244.1.3"],
         ["TCP/80", "named TCP/serve-81-tcp (10.244.1.2 tcp/81)"]),
        ("from[1] ipBlock 10.244.2.0/24 except 10.244.2.9/32", ["10.244.2.0/24", "except 10.244.2.9"],
         ["TCP/80", "named TCP/serve-81-tcp (10.244.1.2 tcp/81)"])]
    text = format_policies(pcs, "z/deny-egress")
    assert text.splitlines() == [
        "NetworkPolicy z/deny-egress  egress  chain egress-z/deny-egress",
        "  selects pod z/c (10.244.1.4): 0 packets dropped by its default deny  [pod-egress-z/c]",
        "  no egress rules: allows nothing (a default deny)"]


def test_the_log_drops_annotation_is_a_change_the_agent_syncs_for():
    from netpol.agent import _relevant

    before = policy("x", "p", {"podSelector": {}})
    after = policy("x", "p", {"podSelector": {}})
    after["metadata"]["annotations"] = {"netpol.netlab.io/log-drops": "true"}
    assert _relevant("networkpolicies", before) != _relevant("networkpolicies", after)
    after["metadata"]["annotations"]["other"] = "x"
    relabelled = dict(after, metadata={**after["metadata"], "labels": {"a": "b"}})
    assert _relevant("networkpolicies", relabelled) == _relevant("networkpolicies", after)


# `nft monitor trace` of one SYN y/b -> x/a, dropped, as a real kernel printed it (the kernel test
# makes such traces live; this one pins the reading)
TRACE = """\
trace id ec7c4120 ip netlab-trace pre packet: iif "eth1" ether saddr 2e:48:a0:9c:48:e6 ether daddr be:8a:75:4d:14:ce \
ip saddr 10.244.2.5 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 27428 ip length 60 tcp sport 55642 \
tcp dport 80 tcp flags == syn tcp window 64240
trace id ec7c4120 ip netlab-trace pre rule tcp flags syn meta nftrace set 1 (verdict continue)
trace id ec7c4120 inet netlab-netpol egress-forward policy accept
trace id ec7c4120 inet netlab-netpol ingress-forward rule ip daddr vmap @ingress-pods (verdict goto pod-ingress-x/a)
trace id ec7c4120 inet netlab-netpol pod-ingress-x/a rule jump ingress-x/allow-b comment "NetworkPolicy x/allow-b" \
(verdict jump ingress-x/allow-b)
trace id ec7c4120 inet netlab-netpol pod-ingress-x/a rule counter packets 0 bytes 0 drop comment \
"default deny ingress of x/a (x/allow-b)" (verdict drop)
"""


def test_trace_reads_the_verdict_from_the_rules_comments():
    from netlab.tools.trace import _hop

    (pkt,) = _hop("worker", TRACE).packets
    assert [str(v) for v in pkt["verdicts"]] == [
        "ingress of pod x/a on node worker: DROPPED by the default deny of NetworkPolicy x/allow-b: no rule of theirs "
        "allows it [chain pod-ingress-x/a]"]
    assert pkt["rules"][-1] == ('netlab-netpol pod-ingress-x/a: drop comment "default deny ingress of x/a (x/allow-b)" '
                                "(verdict drop)")
    accepted = TRACE.replace('rule counter packets 0 bytes 0 drop comment "default deny ingress of x/a (x/allow-b)" '
                             "(verdict drop)", "x").splitlines()[:-1] + [
        'trace id ec7c4120 inet netlab-netpol ingress-x/allow-b rule ip saddr @ingress-x/allow-b/0/0 counter packets 1 '
        'bytes 60 accept comment "rule 0 from[0] podSelector pod=b" (verdict accept)']
    (pkt,) = _hop("worker", "\n".join(accepted)).packets
    assert [str(v) for v in pkt["verdicts"]] == [
        "ingress of pod x/a on node worker: allowed by NetworkPolicy x/allow-b rule 0 from[0] podSelector pod=b "
        "[chain ingress-x/allow-b]"]
