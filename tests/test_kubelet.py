"""The kubelet in a running lab: manifests from the Kubernetes docs become Running, Ready pods with
real programs and addresses from their node's pod subnet; pods reach each other across nodes;
multi-container pods, init containers, crash back-off, readiness, logs, deletion, and a kubelet
restart that leaves running pods untouched."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from netlab.kit import net
from netlab.lab import supervisor

pytestmark = pytest.mark.lab
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"


def pod_spec(name: str, containers: list[dict], **spec) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"test": name}},
                       "spec": {"containers": containers, **spec}})


def shared(path, containers: list[dict]) -> dict:
    """The spec fields that mount the test's directory into every container at the same path, where
    the test and the containers leave each other marks (a container's root is its own: the host's
    /tmp is not in it)."""
    mount = {"name": "test-dir", "mountPath": str(path)}
    return {"containers": [dict(c, volumeMounts=[*c.get("volumeMounts", []), mount]) for c in containers],
            "volumes": [{"name": "test-dir", "hostPath": {"path": str(path), "type": "Directory"}}]}


def test_docs_nginx_deployment_runs(netlab_lab):
    lab = netlab_lab
    lab.apply(EXAMPLES / "nginx-deployment.yaml")
    pods = lab.wait_ready("app=nginx", count=3)
    cidrs = {n.name: ipaddress.ip_network(n.pod_cidr) for n in lab.cluster.nodes}
    for p in pods:
        assert ipaddress.ip_address(p["status"]["podIP"]) in cidrs[p["spec"]["nodeName"]]
        assert p["status"]["phase"] == "Running" and p["status"]["containerStatuses"][0]["ready"]
    wide = lab.kubectl("get", "pods", "-l", "app=nginx", "-o", "wide").stdout
    for p in pods:
        line = next(ln for ln in wide.splitlines() if ln.startswith(p["metadata"]["name"]))
        assert line.split()[1:3] == ["1/1", "Running"] and p["status"]["podIP"] in line and p["spec"]["nodeName"] in line
    # the page is served on port 80 of the pod, from another pod's namespace
    other = lab.pod_netns(pods[1])
    out = net.run(other, ["curl", "-s", "-m", "3", f"http://{pods[0]['status']['podIP']}/"], check=False).stdout
    assert "Welcome to nginx!" in out
    assert "serving HTTP on 0.0.0.0:80" in lab.kubectl("logs", pods[0]["metadata"]["name"]).stdout
    lab.kubectl("delete", "-f", str(EXAMPLES / "nginx-deployment.yaml"))


def test_pod_to_pod_same_and_across_nodes_with_agnhost_dial(netlab_lab):
    lab = netlab_lab
    lab.apply(EXAMPLES / "web.yaml")
    pods = lab.wait_ready("app=web", count=3)
    by_node: dict[str, list[dict]] = {}
    for p in pods:
        by_node.setdefault(p["spec"]["nodeName"], []).append(p)
    assert len(by_node) >= 2, "replicas should spread over the workers"
    src = pods[0]
    for dst in pods:
        for proto, port in (("http", 8080), ("udp", 8081)):
            url = (f"http://127.0.0.1:8080/dial?request=hostname&protocol={proto}&host={dst['status']['podIP']}"
                   f"&port={port}&tries=1")
            out = lab.exec(src, ["curl", "-s", "-m", "5", url]).stdout
            assert json.loads(out)["responses"] == [dst["metadata"]["name"]], (proto, out)
    # the pod's own view: hostname = pod name, cluster DNS in resolv.conf, its entry in /etc/hosts
    assert lab.exec(src, ["hostname"]).stdout.strip() == src["metadata"]["name"]
    cmdline = Path(f"/proc/{lab.container_pid(src)}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert cmdline.startswith("agnhost netexec --http-port=8080"), cmdline  # as ps shows it on a node
    resolv = lab.exec(src, ["cat", "/etc/resolv.conf"]).stdout
    assert "nameserver 10.96.0.10" in resolv and "search default.svc.cluster.local svc.cluster.local cluster.local" \
        in resolv and "options ndots:5" in resolv
    assert f"{src['status']['podIP']}\t{src['metadata']['name']}" in lab.exec(src, ["cat", "/etc/hosts"]).stdout
    assert "127.0.0.1" in open("/etc/hosts").read() and src["metadata"]["name"] not in open("/etc/hosts").read()


def test_host_network_pod_shares_its_node(netlab_lab):
    lab = netlab_lab
    node = lab.cluster.nodes[1]
    lab.kubectl("apply", "-f", "-", input=pod_spec("hostnet", [
        {"name": "h", "image": AGNHOST, "args": ["netexec", "--http-port=8089", "--udp-port=-1"]}],
        hostNetwork=True, nodeName=node.name, hostAliases=[{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]))
    pod = lab.wait_ready("test=hostnet", count=1)[0]
    assert pod["status"]["podIP"] == pod["status"]["hostIP"] == node.ip
    # it serves on the node's own address, and its hostname is the node's
    other = lab.cluster.nodes[2].name
    assert lab.node_exec(other, ["curl", "-s", "-m", "5", f"http://{node.ip}:8089/hostname"]).stdout == node.name
    assert lab.exec(pod, ["hostname"]).stdout.strip() == node.name
    hosts = lab.exec(pod, ["cat", "/etc/hosts"]).stdout  # the node's file, then the aliases, once
    assert hosts.startswith(open("/etc/hosts").read().rstrip("\n"))
    assert hosts.count("# Entries added by HostAliases.") == 1 and "10.1.2.3\tfoo.local\tbar.local\n" in hosts
    lab.kubectl("delete", "pod", "hostnet", "--grace-period=1")


def test_two_containers_share_localhost_and_init_runs_first(netlab_lab):
    lab = netlab_lab
    lab.kubectl("apply", "-f", "-", input=pod_spec("duo", [
        {"name": "web", "image": "nginx"},
        {"name": "client", "image": "curlimages/curl",
         "command": ["sh", "-c", "until curl -s localhost:80 >/dev/null; do sleep 0.2; done; "
                                 "curl -s localhost:80 | grep -o 'Welcome to nginx!'; sleep 3600"]},
    ], initContainers=[{"name": "setup", "image": "busybox", "command": ["sh", "-c", "echo init ran; sleep 0.5"]}]))
    pod = lab.wait_ready("test=duo", count=1)[0]
    init = pod["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["reason"] == "Completed" and init["state"]["terminated"]["exitCode"] == 0
    web_started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    assert init["state"]["terminated"]["finishedAt"] <= web_started
    assert lab.kubectl("logs", "duo", "-c", "setup").stdout.strip() == "init ran"
    lab.wait(lambda: "Welcome to nginx!" in lab.kubectl("logs", "duo", "-c", "client").stdout, 10, "client log")
    logs = lab.kubectl("logs", "duo")  # kubectl picks the first container and says so
    assert 'Defaulted container "web" out of: web, client, setup (init)' in logs.stderr
    assert "serving HTTP on 0.0.0.0:80" in logs.stdout
    lab.kubectl("delete", "pod", "duo")


def test_crashing_container_backs_off_and_unknown_image_is_explained(netlab_lab):
    lab = netlab_lab
    lab.kubectl("apply", "-f", "-", input=pod_spec("crasher", [
        {"name": "c", "image": "busybox", "command": ["sh", "-c", "echo crashing; exit 3"]}]))
    lab.kubectl("apply", "-f", "-", input=pod_spec("mystery", [{"name": "m", "image": "example.com/mystery:1.0"}]))
    lab.kubectl("apply", "-f", "-", input=pod_spec("typo", [{"name": "t", "image": "busybox", "command": ["slep", "1"]}]))

    def backing_off():
        st = lab.get("pods", "crasher")["status"].get("containerStatuses") or [{}]
        waiting = st[0].get("state", {}).get("waiting", {})
        return st[0] if waiting.get("reason") == "CrashLoopBackOff" else None
    st = lab.wait(backing_off, 20, "CrashLoopBackOff")
    assert st["restartCount"] >= 1 and st["lastState"]["terminated"]["exitCode"] == 3
    assert "CrashLoopBackOff" in lab.kubectl("get", "pod", "crasher").stdout
    assert "crashing" in lab.kubectl("logs", "crasher", "--previous").stdout
    events = lab.kubectl("get", "events", "--field-selector", "involvedObject.name=crasher").stdout
    assert "Back-off restarting failed container c" in events
    st = lab.wait(lambda: (lab.get("pods", "mystery")["status"].get("containerStatuses") or [{}])[0].get(
        "state", {}).get("waiting"), 20, "mystery waiting")
    assert st["reason"] == "ErrImagePull" and "not in netlab's catalog" in st["message"] and "agnhost" in st["message"]
    # a command that does not exist: the start fails, as a runtime reports it (StartError, 128)
    st = lab.wait(lambda: (lab.get("pods", "typo")["status"].get("containerStatuses") or [{}])[0].get(
        "lastState", {}).get("terminated"), 20, "typo's failed start")
    assert st["reason"] == "StartError" and st["exitCode"] == 128, st
    assert 'exec: "slep": executable file not found in $PATH' in st["message"]
    lab.kubectl("delete", "pod", "crasher", "mystery", "typo", "--grace-period=1")


def test_readiness_probe_drives_endpoints(netlab_lab, tmp_path):
    lab = netlab_lab
    flag = tmp_path / "ready"
    flag.touch()
    lab.kubectl("apply", "-f", "-", input=pod_spec("probed", **shared(tmp_path, [
        {"name": "web", "image": AGNHOST, "args": ["netexec"],
         "readinessProbe": {"exec": {"command": ["test", "-f", str(flag)]}, "periodSeconds": 1,
                            "failureThreshold": 1}}])))
    lab.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "probed"},
        "spec": {"selector": {"test": "probed"}, "ports": [{"port": 80, "targetPort": 8080}]}}))
    lab.wait_ready("test=probed", count=1)

    def ready_endpoints():
        slices = lab.items("endpointslices", selector="kubernetes.io/service-name=probed")
        return [e for s in slices for e in s.get("endpoints") or [] if e["conditions"]["ready"]]
    lab.wait(ready_endpoints, 10, "a ready endpoint")
    flag.unlink()
    lab.wait(lambda: not ready_endpoints(), 10, "the endpoint to leave")
    assert "0/1" in lab.kubectl("get", "pod", "probed").stdout
    flag.touch()
    lab.wait(ready_endpoints, 10, "the endpoint back")
    lab.kubectl("delete", "svc", "probed")
    lab.kubectl("delete", "pod", "probed", "--grace-period=1")


def test_readiness_gate_holds_the_pod_until_its_condition_is_true(netlab_lab):
    lab = netlab_lab
    gate = "example.com/feature-1"
    lab.kubectl("apply", "-f", "-", input=pod_spec("gated", [{"name": "web", "image": AGNHOST, "args": ["netexec"]}],
                                                   readinessGates=[{"conditionType": gate}]))

    def ready_condition():
        conds = {c["type"]: c for c in lab.get("pods", "gated")["status"].get("conditions") or []}
        return conds.get("ContainersReady", {}).get("status") == "True" and conds["Ready"]
    ready = lab.wait(ready_condition, 20, "the container ready")
    assert ready["status"] == "False" and ready["reason"] == "ReadinessGatesNotReady"
    assert ready["message"] == f'corresponding condition of pod readiness gate "{gate}" does not exist.'
    assert "0/1" in lab.kubectl("get", "pod", "gated", "-o", "wide").stdout.splitlines()[1].split()[-1]
    # a controller sets the gate's condition; the kubelet keeps it and the pod becomes Ready
    lab.kubectl("patch", "pod", "gated", "--subresource=status", "-p",
                json.dumps({"status": {"conditions": [{"type": gate, "status": "True"}]}}))
    lab.wait(lambda: ready_condition()["status"] == "True", 10, "the pod Ready")
    time.sleep(1.5)  # the kubelet's next syncs leave the condition in place
    conds = {c["type"]: c for c in lab.get("pods", "gated")["status"]["conditions"]}
    assert conds[gate]["status"] == "True" and conds["Ready"]["status"] == "True"
    assert lab.kubectl("get", "pod", "gated", "-o", "wide").stdout.splitlines()[1].split()[-1] == "1/1"
    lab.kubectl("delete", "pod", "gated", "--grace-period=1")


def test_kubelet_restart_keeps_pods_and_deletion_cleans_up(netlab_lab, tmp_path):
    lab = netlab_lab
    lab.apply(EXAMPLES / "run-my-nginx.yaml")
    before = {p["metadata"]["name"]: p for p in lab.wait_ready("run=my-nginx", count=2)}
    pids = {n: lab.container_pid(p) for n, p in before.items()}
    nodes = {p["spec"]["nodeName"] for p in before.values()}
    # a container that ends while its kubelet is down: the node's runtime keeps its exit status
    flag = tmp_path / "exit-now"
    lab.kubectl("apply", "-f", "-", input=pod_spec("exiter", **shared(tmp_path, [
        {"name": "e", "image": "busybox", "command": ["sh", "-c", f"until [ -f {flag} ]; do sleep 0.1; done; exit 7"]}]),
        restartPolicy="Never", nodeName=sorted(nodes)[0]))
    lab.wait(lambda: (lab.get("pods", "exiter")["status"].get("containerStatuses") or [{}])[0].get(
        "state", {}).get("running"), 20, "exiter running")
    for row in supervisor.read_status(lab.name) or []:
        if row["name"] in {f"kubelet-{n}" for n in nodes}:
            os.kill(row["pid"], signal.SIGKILL)
    flag.touch()
    time.sleep(2.5)  # the supervisor restarts them; they adopt the running pods
    lab.wait(lambda: all(r["pid"] and r["restarts"] >= 1 for r in supervisor.read_status(lab.name)
                         if r["name"] in {f"kubelet-{n}" for n in nodes}), 20, "kubelets back")
    # the node's runtime restarted: its running containers are untouched, and it starts new ones
    for row in supervisor.read_status(lab.name) or []:
        if row["name"] in {f"runtime-{n}" for n in nodes}:
            os.kill(row["pid"], signal.SIGKILL)
    lab.wait(lambda: all(r["pid"] and r["restarts"] >= 1 for r in supervisor.read_status(lab.name)
                         if r["name"] in {f"runtime-{n}" for n in nodes}), 20, "runtimes back")
    time.sleep(1)
    after = {p["metadata"]["name"]: p for p in lab.wait_ready("run=my-nginx", count=2)}
    assert set(after) == set(before)
    for n, p in after.items():
        assert p["status"]["podIP"] == before[n]["status"]["podIP"]
        assert p["status"]["containerStatuses"][0]["restartCount"] == 0
        assert lab.container_pid(p) == pids[n], "the container process must be untouched"
    exiter = lab.wait(lambda: (p := lab.get("pods", "exiter"))["status"]["phase"] == "Failed" and p, 20, "exiter done")
    assert exiter["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 7
    lab.kubectl("delete", "pod", "exiter", "--grace-period=1")
    lab.kubectl("scale", "deployment", "my-nginx", "--replicas=3")
    assert len(lab.wait_ready("run=my-nginx", count=3)) == 3
    # deleting a pod stops it and removes its namespace and its address lease
    victim = next(iter(after.values()))
    ns, ip, node = lab.pod_netns(victim), victim["status"]["podIP"], victim["spec"]["nodeName"]
    lab.kubectl("delete", "pod", victim["metadata"]["name"])
    assert not net.ns_exists(ns)
    lease = lab.cluster.state_dir / "nodes" / node / "cni" / "ipam" / "netlab" / ip
    assert not lease.exists()
    lab.kubectl("delete", "-f", str(EXAMPLES / "run-my-nginx.yaml"))
    lab.wait(lambda: not lab.items("pods", selector="run=my-nginx"), 30, "pods gone")


def test_logs_and_exec_come_through_the_pods_kubelet(netlab_lab):
    lab = netlab_lab
    lab.kubectl("apply", "-f", "-", input=pod_spec("talker", [
        {"name": "web", "image": AGNHOST, "args": ["netexec", "--http-port=8090", "--udp-port=-1"],
         "env": [{"name": "GREETING", "value": "hello from the spec"}]},
        {"name": "sh", "image": "busybox", "command": ["sh", "-c", "echo one; echo two >&2; sleep 1; echo three; exit 0"]}],
        restartPolicy="Never"))

    def started() -> dict | None:
        p = lab.get("pods", "talker")
        statuses = p["status"].get("containerStatuses") or []
        return p if len(statuses) == 2 and all("waiting" not in cs["state"] for cs in statuses) else None
    pod = lab.wait(started, 30, "talker's containers started")
    node, cp = lab.cluster.node(pod["spec"]["nodeName"]), lab.cluster.nodes[0]
    # the kubelet's port on its node's address: the lab's token needed, its certificate the lab CA's
    url, ca = f"https://{node.ip}:10250/healthz", str(lab.cluster.layout.ca_cert)
    curl = ["curl", "-s", "--max-time", "5", "--cacert", ca]
    assert lab.node_exec(cp.name, [*curl, "-o", "/dev/null", "-w", "%{http_code}", url]).stdout == "401"
    token = lab.cluster.layout.token.read_text().strip()
    assert lab.node_exec(cp.name, [*curl, "-H", f"Authorization: Bearer {token}", url]).stdout == "ok"
    # a follow ends with the container's log: once the container is done
    follow = lab.kubectl("logs", "-f", "talker", "-c", "sh", timeout=30)
    assert follow.stdout == "one\ntwo\nthree\n"
    stamped = lab.kubectl("logs", "talker", "-c", "sh", "--timestamps", "--tail=2").stdout.splitlines()
    assert [ln.split(" ", 1)[1] for ln in stamped] == ["two", "three"]
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ", ln) for ln in stamped), stamped
    # exec: in the container, with the container's environment (a built-in program's too)
    assert lab.kubectl("exec", "talker", "-c", "web", "--", "printenv", "GREETING").stdout == "hello from the spec\n"
    assert lab.kubectl("exec", "talker", "-c", "web", "--", "hostname").stdout == "talker\n"
    r = lab.kubectl("exec", "-i", "talker", "-c", "web", "--", "sh", "-c", "cat; exit 4", input="in\n", check=False)
    assert (r.returncode, r.stdout) == (4, "in\n"), r.stderr
    r = lab.kubectl("exec", "talker", "-c", "sh", "--", "true", check=False)
    assert r.returncode == 1 and 'container not found ("sh")' in r.stderr, r.stderr
    lab.kubectl("delete", "pod", "talker", "--grace-period=1")
