"""IPVS mode. What it programs is checked without a kernel (virtual servers, ipsets, nat rules for
upstream's inputs); the lab test needs the kernel's ip_vs module and skips without it, naming it
(it runs in the Vagrant VM); on such a kernel `netlab up` with proxyMode ipvs fails saying so."""

from __future__ import annotations

import collections
import sys

import pytest

from netlab.kit import net
from netlab.lab.build import LabError
from netlab.tools.testing import Lab
from proxy import ipvs_render as ipvs
from proxy.config import Config
from tests.test_proxy import upstream_ports

CFG = Config(node_name="test-node", cluster_cidr="10.0.0.0/8", node_ips=["192.168.0.2"])


def test_virtual_servers_for_upstreams_inputs():
    vs = ipvs.virtual_servers(upstream_ports(), CFG)
    assert vs[("172.30.0.41", 80, "TCP")] == ("rr", 0, [("10.180.0.1", 80)])
    assert vs[("172.30.0.44", 80, "TCP")] == ("rr", 0, [("10.180.0.4", 80), ("10.180.0.5", 80)])
    assert vs[("192.168.99.33", 80, "TCP")][2] == [("10.180.0.4", 80), ("10.180.0.5", 80)]
    assert vs[("172.30.0.45", 80, "TCP")] == ("rr", 10800, [("10.180.0.3", 80)])  # ClientIP: persistence
    assert vs[("192.168.0.2", 3003, "TCP")] == ("rr", 0, [("10.180.0.3", 80)])  # NodePort on the node's IP
    assert vs[("1.2.3.4", 80, "TCP")] == ("rr", 0, [])  # eTP Local, no local endpoint: nothing to send to
    assert vs[("172.30.0.46", 80, "TCP")][2] == []


def test_ipsets_and_nat_rules():
    sets = ipvs.ipsets(upstream_ports())
    assert "172.30.0.41,tcp:80" in sets["KUBE-CLUSTER-IP"] and "192.168.99.33,tcp:80" in sets["KUBE-EXTERNAL-IP"]
    assert {"3001", "3002", "3003"} <= set(sets["KUBE-NODE-PORT-TCP"])
    assert "10.180.0.1,tcp:80,10.180.0.1" in sets["KUBE-LOOP-BACK"]
    text = ipvs.nat_text(CFG)
    assert "-m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ" in text
    assert "--match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE" in text and text.endswith("COMMIT\n")


needs_ipvs = pytest.mark.skipif(not net.ipvs_available(), reason=net.IPVS_MISSING)


@pytest.mark.lab
@pytest.mark.skipif(net.ipvs_available(), reason="this kernel has ip_vs")
def test_up_in_ipvs_mode_names_the_missing_kernel_feature():
    with pytest.raises(LabError, match=r"networking.proxyMode ipvs: IPVS mode needs the kernel's IP Virtual Server"):
        Lab("nltipvs0", nodes=2, nodeSubnet="172.31.3.0/24", podSubnet="10.203.0.0/16", proxyMode="ipvs").up()
    assert not net.ns_exists("nltipvs0")


@pytest.mark.lab
@needs_ipvs
def test_round_robin_and_affinity_in_ipvs_mode():
    with Lab("nltipvs", nodes=3, nodeSubnet="172.31.4.0/24", podSubnet="10.204.0.0/16", proxyMode="ipvs") as lab:
        lab.apply("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
""")
        lab.wait_ready("app=web", count=3)
        lab.wait_ready("app=client", count=1)
        node = lab.get("pod", "client")["spec"]["nodeName"]
        ip = lab.get("service", "web")["spec"]["clusterIP"]
        lab.wait(lambda: ip in lab.node_exec(node, ["ipvsadm", "-Ln"]).stdout and
                 lab.node_exec(node, ["ipvsadm", "-Ln"]).stdout.count("Masq") >= 6, what="IPVS virtual servers")

        def hits(service: str, n: int) -> collections.Counter:
            from tests.test_proxy_lab import REQUESTS

            r = lab.exec("client", [sys.executable, "-c", REQUESTS, lab.get("service", service)["spec"]["clusterIP"],
                                    "80", str(n)])
            return collections.Counter(r.stdout.split("\n")[:-1])
        rr = hits("web", 90)
        assert len(rr) == 3 and set(rr.values()) == {30}, rr  # rr: exactly even
        assert len(hits("sticky", 20)) == 1
