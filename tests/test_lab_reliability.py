"""A whole lab (one node, every component) through what a host or a crash does to it: a host
that forwards packets, and a SIGKILLed supervisor."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from netlab.kit import net
from netlab.lab import supervisor
from netlab.tools.packets import Sniffer, send
from netlab.tools.testing import Lab
from tests.labkit import host_sysctl

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    with Lab("nltr", nodes=1) as lab:
        yield lab


def pod(name: str) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: nltr}}}}\n"
            "spec: {containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [pause]}]}\n")


def rows(lab: Lab) -> dict[str, dict]:
    return {r["name"]: r for r in supervisor.read_status(lab.name) or []}


def gone(pid: int, timeout: float = 10) -> bool:
    return Lab.wait(lambda: not supervisor.alive(pid), timeout, f"pid {pid} gone")


def netlab_status(lab: Lab) -> str:
    r = subprocess.run([sys.executable, "-m", "netlab.tools.cli", "status", "--name", lab.name],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_pod_forwards_nothing_on_a_host_that_forwards(lab):
    try:
        with host_sysctl("net.ipv4.ip_forward", "1"):  # what a new pod's namespace would take
            lab.apply(pod("nltr-a") + "---\n" + pod("nltr-b"))
            lab.wait_ready("app=nltr", count=2)
        a, b = lab.get("pods", "nltr-a"), lab.get("pods", "nltr-b")
        ns_a, ns_b = lab.pod_netns(a), lab.pod_netns(b)
        assert net.read_sysctl(ns_a, "net.ipv4.ip_forward") == "0"
        node = lab.cluster.nodes[0]
        frame = IP(src=node.gateway, dst=b["status"]["podIP"]) / UDP(sport=4000, dport=9999) / b"via-a"
        src = net.link_mac(node.netns, "cni0")
        with Sniffer(ns_b, "eth0", "udp port 9999", timeout=1.5) as at_b:  # sent to pod a, for pod b
            send(node.netns, Ether(dst=net.link_mac(ns_a, "eth0"), src=src) / frame, iface="cni0")
        assert not at_b.packets, "a pod forwarded a packet for another pod"
        with Sniffer(ns_b, "eth0", "udp port 9999", timeout=1.5) as at_b:  # the same, sent to pod b itself
            send(node.netns, Ether(dst=net.link_mac(ns_b, "eth0"), src=src) / frame, iface="cni0")
        assert at_b.packets
    finally:
        lab.kubectl("delete", "pod", "nltr-a", "nltr-b", "--ignore-not-found", "--wait=false")


def test_a_killed_supervisor_comes_back_and_restarts_what_dies(lab):
    before = rows(lab)
    old = supervisor.supervisor_pid(lab.name)
    os.kill(old, signal.SIGKILL)
    new = lab.wait(lambda: (p := supervisor.supervisor_pid(lab.name)) not in (None, old) and p, 20,
                   "a new supervisor, started by the watchdog")
    # it adopted every component: the same processes, none restarted
    assert {n: (r["pid"], r["restarts"]) for n, r in rows(lab).items()} == \
        {n: (r["pid"], r["restarts"]) for n, r in before.items()}
    scheduler = before["kube-scheduler"]["pid"]
    os.kill(scheduler, signal.SIGKILL)
    lab.wait(lambda: rows(lab)["kube-scheduler"]["pid"] not in (None, scheduler), 20, "a new scheduler")
    lab.apply(pod("nltr-after"))
    try:
        assert lab.wait_ready("app=nltr", count=1, timeout=60)[0]["spec"]["nodeName"] == "control-plane"
        r = lab.wait(lambda: (r := rows(lab)["kube-scheduler"])["state"] == "running" and r, 5, "running")
        assert r["restarts"] == before["kube-scheduler"]["restarts"] + 1
        out = netlab_status(lab)
        assert "supervisor is not running" not in out
        assert re.search(rf"^kube-scheduler +{r['pid']} +running +{r['restarts']} ", out, re.M), out
        assert supervisor.supervisor_pid(lab.name) == new
    finally:
        lab.kubectl("delete", "pod", "nltr-after", "--ignore-not-found", "--wait=false")


def test_status_tells_what_runs_while_no_supervisor_does(lab):
    before = rows(lab)
    sup = supervisor.supervisor_pid(lab.name)
    for pid in (before[supervisor.WATCHDOG]["pid"], sup):  # the watchdog first: nothing comes back
        os.kill(pid, signal.SIGKILL)
        gone(pid)
    scheduler = before["kube-scheduler"]["pid"]
    os.kill(scheduler, signal.SIGKILL)
    gone(scheduler)
    out = netlab_status(lab)
    running = len(before) - 2  # all but the watchdog and the scheduler
    assert f"the lab's supervisor is not running: {running} of its {len(before)} components still run" in out, out
    assert re.search(r"^kube-scheduler +exited ", out, re.M), out
    api = before["kube-apiserver"]["pid"]
    assert re.search(rf"^kube-apiserver +{api} +running ", out, re.M), out
    lab.apply(pod("nltr-pending"))
    try:
        time.sleep(2)
        assert not lab.get("pods", "nltr-pending")["spec"].get("nodeName"), "scheduled with no scheduler"
        # a supervisor started again adopts what runs and starts the rest
        supervisor.spawn(lab.name)
        assert lab.wait_ready("app=nltr", count=1, timeout=60)[0]["metadata"]["name"] == "nltr-pending"
        after = rows(lab)
        assert after["kube-apiserver"]["pid"] == api and after["kube-apiserver"]["restarts"] == 0
        assert after["kube-scheduler"]["pid"] not in (None, scheduler)
        assert after[supervisor.WATCHDOG]["pid"] not in (None, before[supervisor.WATCHDOG]["pid"])
        assert "supervisor is not running" not in netlab_status(lab)
    finally:
        lab.kubectl("delete", "pod", "nltr-pending", "--ignore-not-found", "--wait=false")
