"""Pods isolated as a container runtime isolates them, each property tested as the attack it stops:
from inside a pod, the lab's token, CA key and store are not there; a write to /root stays in the
container; another pod's processes are neither visible nor signalable; the host's network namespace
cannot be entered; the runtime's socket is not reachable; capabilities are containerd's default set
unless the pod asks, seccomp's RuntimeDefault when asked; runAsUser and readOnlyRootFilesystem hold;
a memory hog is OOMKilled; the cpu limit is the cgroup's; and nothing a pod started survives
`netlab down`."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from netlab.kit import cgroups

pytestmark = pytest.mark.lab
DEFAULT_CAPS = "00000000a80425fb"  # containerd's 14: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
#                                    NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP


def pod(name: str, containers: list[dict], **spec) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"terminationGracePeriodSeconds": 1, "containers": containers, **spec}})


def sleeper(name: str = "c", **fields) -> dict:
    return {"name": name, "image": "busybox", "command": ["sleep", "3600"], **fields}


def run(lab, name: str, *argv: str, container: str | None = None) -> subprocess.CompletedProcess:
    """A command in the pod, as kubectl exec runs it (through the kubelet, with the container's privileges)."""
    return lab.kubectl("exec", name, *(["-c", container] if container else []), "--", *argv, check=False)


def start(lab, name: str, containers: list[dict], **spec) -> dict:
    lab.kubectl("apply", "-f", "-", input=pod(name, containers, **spec))
    return lab.wait(lambda: (p := lab.get("pods", name))["status"].get("phase") == "Running" and all(
        s.get("ready") for s in p["status"].get("containerStatuses") or [{}]) and p, 60, f"{name} running")


@pytest.fixture(scope="module")
def victim(netlab_lab):
    p = start(netlab_lab, "iso-victim", [sleeper()])
    yield p
    netlab_lab.kubectl("delete", "pod", "iso-victim", "--grace-period=0", "--force", check=False)


@pytest.fixture(scope="module")
def attacker(netlab_lab):
    p = start(netlab_lab, "iso-attacker", [sleeper()])
    yield p
    netlab_lab.kubectl("delete", "pod", "iso-attacker", "--grace-period=0", "--force", check=False)


def test_the_labs_secrets_and_the_runtime_socket_are_not_in_a_pod(netlab_lab, attacker):
    lab, layout = netlab_lab, netlab_lab.cluster.layout
    node = layout.node(attacker["spec"]["nodeName"])
    for path in (layout.token, layout.ca_key, layout.store_db, node.runtime_socket, layout.state):
        assert Path(path).exists()  # the host has them
        out = run(lab, "iso-attacker", "ls", "-d", str(path))
        assert out.returncode != 0 and "No such file" in out.stderr, (path, out.stdout)
    for path, mine in (("/var/lib/netlab", ""), ("/run", "secrets\n"), ("/tmp", "")):  # whatever the host has there
        assert run(lab, "iso-attacker", "ls", "-A", path).stdout == mine, path  # /run: the service account's mount
    assert run(lab, "iso-attacker", "cat", str(layout.token)).returncode != 0
    # the container's root is the host's filesystem (its tools) without the private parts
    assert run(lab, "iso-attacker", "ls", "/root", "/tmp").stdout.split() == ["/root:", "/tmp:"]
    assert "sh" in run(lab, "iso-attacker", "ls", "/bin").stdout.split()


def test_a_write_to_root_stays_in_the_container(netlab_lab, attacker):
    mark = f"/root/nlt-iso-{os.getpid()}"
    assert run(netlab_lab, "iso-attacker", "touch", mark).returncode == 0
    assert run(netlab_lab, "iso-attacker", "ls", mark).returncode == 0, "the container's own layer is writable"
    assert not os.path.exists(mark), "a pod's write must not land on the host"
    # a restart is a new container with a fresh writable layer
    assert not os.path.exists("/etc/nlt-iso")
    assert run(netlab_lab, "iso-attacker", "sh", "-c", "echo x > /etc/nlt-iso").returncode == 0
    assert not os.path.exists("/etc/nlt-iso")


def test_another_pods_processes_are_not_visible_or_signalable(netlab_lab, victim, attacker):
    lab = netlab_lab
    victim_pid = lab.container_pid(victim)
    ps = run(lab, "iso-attacker", "ps", "-eo", "pid,args").stdout
    assert "sleep 3600" in ps and len(ps.strip().splitlines()) <= 4, ps  # its own sleep (PID 1) and the ps
    assert run(lab, "iso-attacker", "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '").stdout.split()[1:] == \
        ["sleep", "3600"], "the container is PID 1 of its own PID namespace"
    out = run(lab, "iso-attacker", "kill", "-9", str(victim_pid))
    assert out.returncode != 0
    time.sleep(0.3)
    assert Path(f"/proc/{victim_pid}").exists(), "the other pod's container lives on"
    # pods have their own IPC and UTS namespaces too (the test runs in the host's)
    for ns in ("ipc", "uts", "pid", "mnt", "cgroup"):
        assert os.readlink(f"/proc/{victim_pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        assert os.readlink(f"/proc/{victim_pid}/ns/{ns}") != os.readlink(
            f"/proc/{lab.container_pid(attacker)}/ns/{ns}"), ns


def test_the_hosts_network_namespace_cannot_be_entered(netlab_lab, attacker):
    sup = netlab_lab.cluster.layout.supervisor_pid.read_text().split()[0]
    for target in (sup, "1"):
        out = run(netlab_lab, "iso-attacker", "nsenter", "-t", target, "-n", "ip", "link")
        assert out.returncode != 0, out.stdout
    links = run(netlab_lab, "iso-attacker", "ip", "-o", "link").stdout
    assert sorted(line.split(": ")[1].split("@")[0] for line in links.splitlines()) == ["eth0", "lo"]


def test_capabilities_are_containerds_default_unless_the_pod_asks(netlab_lab):
    lab = netlab_lab
    start(lab, "iso-caps", [
        sleeper("plain"),
        sleeper("netadmin", securityContext={"capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]}}),
        sleeper("none", securityContext={"capabilities": {"drop": ["ALL"]}}),
        sleeper("priv", securityContext={"privileged": True}),
        sleeper("confined", securityContext={"seccompProfile": {"type": "RuntimeDefault"}})])

    def caps(container: str) -> dict[str, str]:
        text = run(lab, "iso-caps", "grep", "^Cap", "/proc/1/status", container=container).stdout
        return dict(line.split(":\t") for line in text.splitlines())
    assert caps("plain")["CapEff"] == DEFAULT_CAPS and caps("plain")["CapBnd"] == DEFAULT_CAPS
    assert int(caps("netadmin")["CapEff"], 16) == (int(DEFAULT_CAPS, 16) | 1 << 12) & ~(1 << 27)
    assert caps("none")["CapEff"] == "0000000000000000"
    host = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("CapBnd:"))
    assert caps("priv")["CapEff"] == host, "privileged: every capability the node has"
    # seccomp: Unconfined unless the pod asks for RuntimeDefault, as upstream (a filter: mode 2)
    seccomp = {c: run(lab, "iso-caps", "grep", "^Seccomp:", "/proc/1/status", container=c).stdout.split()[1]
               for c in ("plain", "confined")}
    assert seccomp == {"plain": "0", "confined": "2"}
    # what they allow: NET_ADMIN adds an address in the pod's namespace, the default set does not
    out = run(lab, "iso-caps", "ip", "addr", "add", "127.0.0.2/8", "dev", "lo", container="plain")
    assert out.returncode != 0 and "Operation not permitted" in out.stderr
    assert run(lab, "iso-caps", "ip", "addr", "add", "127.0.0.2/8", "dev", "lo", container="netadmin").returncode == 0
    assert run(lab, "iso-caps", "mount", "-t", "tmpfs", "x", "/mnt", container="plain").returncode != 0
    lab.kubectl("delete", "pod", "iso-caps", "--grace-period=0", "--force")


def test_run_as_user_and_read_only_root(netlab_lab):
    lab = netlab_lab
    start(lab, "iso-user", [
        sleeper("user", securityContext={"runAsUser": 1000, "runAsGroup": 3000, "allowPrivilegeEscalation": False},
                volumeMounts=[{"name": "scratch", "mountPath": "/data/scratch"}]),
        sleeper("ro", securityContext={"readOnlyRootFilesystem": True},
                volumeMounts=[{"name": "scratch", "mountPath": "/data/scratch"}])],
          securityContext={"fsGroup": 2000}, volumes=[{"name": "scratch", "emptyDir": {}}])
    ids = [run(lab, "iso-user", "id", flag, container="user").stdout.strip() for flag in ("-u", "-g", "-G")]
    assert ids == ["1000", "3000", "3000 2000"]
    assert run(lab, "iso-user", "grep", "NoNewPrivs", "/proc/1/status", container="user").stdout.split() == \
        ["NoNewPrivs:", "1"]
    assert run(lab, "iso-user", "grep", "CapEff", "/proc/1/status", container="user").stdout.split() == \
        ["CapEff:", "0000000000000000"]
    assert run(lab, "iso-user", "touch", "/data/scratch/x", container="user").returncode == 0, "the emptyDir is writable"
    out = run(lab, "iso-user", "touch", "/etc/x", container="ro")
    assert out.returncode != 0 and "Read-only file system" in out.stderr
    assert run(lab, "iso-user", "touch", "/data/scratch/y", container="ro").returncode == 0, "a volume stays writable"
    lab.kubectl("delete", "pod", "iso-user", "--grace-period=0", "--force")
    # runAsNonRoot with an image that runs as root: the kubelet refuses, as upstream
    lab.kubectl("apply", "-f", "-", input=pod("iso-nonroot", [sleeper(securityContext={"runAsNonRoot": True})]))
    w = lab.wait(lambda: (lab.get("pods", "iso-nonroot")["status"].get("containerStatuses") or [{}])[0].get(
        "state", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError" and
        lab.get("pods", "iso-nonroot")["status"]["containerStatuses"][0]["state"]["waiting"], 30, "refused")
    assert w["message"].startswith("container has runAsNonRoot and image will run as root")
    lab.kubectl("delete", "pod", "iso-nonroot", "--grace-period=0", "--force")


def test_a_memory_hog_is_oom_killed_and_limits_are_the_cgroups(netlab_lab):
    lab = netlab_lab
    lab.kubectl("apply", "-f", "-", input=pod("iso-hog", [{
        "name": "hog", "image": "python", "command": ["python3", "-c", "x = bytearray(512 * 1024 * 1024); print(len(x))"],
        "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}, sleeper(
        "steady", resources={"limits": {"memory": "32Mi", "cpu": "500m"}})], restartPolicy="Never"))
    term = lab.wait(lambda: (lab.get("pods", "iso-hog")["status"].get("containerStatuses") or [{}])[0].get(
        "state", {}).get("terminated"), 60, "the hog killed")
    assert (term["exitCode"], term["reason"]) == (137, "OOMKilled")
    p = lab.get("pods", "iso-hog")
    where = lab.cluster.layout.node(p["spec"]["nodeName"]).pod(p["metadata"]["uid"])
    cg = where.container_cgroup("steady", 0)
    pid = lab.container_pid(p, "steady")
    assert cgroups.procs(cg) >= {pid}, "the container's processes are in its cgroup"
    h = {x.version: x for x in cgroups.hierarchies()}
    if 2 in h:
        assert (h[2].root / cg / "cpu.max").read_text().split() == ["50000", "100000"]
        assert (h[2].root / cg / "memory.max").read_text().strip() == str(32 * 2 ** 20)
    else:
        cpu = next(x for x in cgroups.hierarchies() if "cpu" in x.controllers)
        mem = next(x for x in cgroups.hierarchies() if "memory" in x.controllers)
        assert (cpu.root / cg / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (mem.root / cg / "memory.limit_in_bytes").read_text().strip() == str(32 * 2 ** 20)
    lab.kubectl("delete", "pod", "iso-hog", "--grace-period=0", "--force")
    lab.wait(lambda: not cgroups.exists(where.cgroup), 30, "the pod's cgroup removed with the pod")


def test_share_process_namespace(netlab_lab):
    lab = netlab_lab
    start(lab, "iso-shared", [sleeper("a"), sleeper("b", command=["sleep", "3601"])], shareProcessNamespace=True)
    ps = run(lab, "iso-shared", "ps", "-eo", "pid,args", container="b").stdout
    assert "sleep 3600" in ps and "sleep 3601" in ps and "/pause" in ps.splitlines()[1], ps
    start(lab, "iso-apart", [sleeper("a"), sleeper("b", command=["sleep", "3601"])])
    ps = run(lab, "iso-apart", "ps", "-eo", "pid,args", container="b").stdout
    assert "sleep 3601" in ps and "sleep 3600" not in ps, ps
    lab.kubectl("delete", "pod", "iso-shared", "iso-apart", "--grace-period=0", "--force")


def test_nothing_a_pod_started_survives_netlab_down():
    """A process of a pod's that left its namespaces (here: started by the test in the host's, in the
    pod's cgroup) goes with the lab."""
    from netlab.tools.testing import Lab
    with Lab("nltiso", nodes=1, nodeSubnet="172.31.77.0/24", podSubnet="10.231.0.0/16") as lab:
        p = start(lab, "escapee", [sleeper()])
        where = lab.cluster.layout.node(p["spec"]["nodeName"]).pod(p["metadata"]["uid"])
        cg = where.container_cgroup("c", 0)
        escaped = subprocess.Popen(["sleep", "600"], preexec_fn=lambda: cgroups.join(cg))
        try:
            assert escaped.pid in cgroups.procs(lab.cluster.layout.cgroup)
            lab.down()
            assert escaped.wait(10) == -9, "killed with the lab's cgroup"
            assert not cgroups.exists(lab.cluster.layout.cgroup)
        finally:
            if escaped.poll() is None:
                escaped.kill()
                escaped.wait()
