"""The pieces of pod isolation that are functions of the spec, without a kernel: capabilities as
containerd computes them, the security context, cgroup limits from resources, the spawner's
request for a container (namespaces, root), the atomic writer and volume payloads, hostPath
types, and which cgroup hierarchies a machine's mounts give."""

from __future__ import annotations

import base64
import os
import socket
import stat

import pytest

from netlab.kit import cgroups
from netlab.kit.layout import Layout, PodLayout
from netlab.node.kubelet import runtime, security, volumes

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"b": "2", "a": "1"},
                    "annotations": {"x": "y"}},
       "spec": {"nodeName": "worker", "serviceAccountName": "default", "containers": [
           {"name": "c", "resources": {"requests": {"cpu": "125m", "memory": "32Mi"},
                                       "limits": {"cpu": "250m", "memory": "64Mi"}}}]}}


def test_capabilities_as_containerd_computes_them():
    assert security.capabilities({}) == [c for c in security.CAPABILITIES if c in security.DEFAULT_CAPS]
    assert len(security.capabilities({})) == 14
    caps = security.capabilities({"securityContext": {"capabilities": {"add": ["NET_ADMIN", "CAP_SYS_TIME"],
                                                                        "drop": ["MKNOD", "cap_net_raw"]}}})
    assert "NET_ADMIN" in caps and "SYS_TIME" in caps and "MKNOD" not in caps and "NET_RAW" not in caps
    assert security.capabilities({"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["KILL"]}}}) == ["KILL"]
    everything = security.capabilities({"securityContext": {"capabilities": {"add": ["ALL"], "drop": ["CHOWN"]}}})
    assert "CHOWN" not in everything and len(everything) == len(security.CAPABILITIES) - 1
    assert security.capabilities({"securityContext": {"privileged": True}}, last_cap=37) == \
        list(security.CAPABILITIES[:38])
    assert security.capabilities({"securityContext": {"capabilities": {"add": ["NOPE"]}}}) == security.capabilities({})


def test_security_context_merges_pod_and_container():
    pod = {"metadata": POD["metadata"], "spec": {"securityContext": {"runAsUser": 1000, "fsGroup": 2000,
                                                                     "supplementalGroups": [5]}}}
    sec = security.context(pod, {"name": "c", "securityContext": {"runAsGroup": 3000,
                                                                  "allowPrivilegeEscalation": False}})
    assert (sec["uid"], sec["gid"], sec["groups"], sec["noNewPrivs"]) == (1000, 3000, [5, 2000], True)
    root = security.context({"metadata": POD["metadata"], "spec": {}}, {"name": "c"})
    assert (root["uid"], root["gid"], root["groups"], root["noNewPrivs"], root["readOnly"]) == \
        (None, None, None, False, False)
    with pytest.raises(security.ConfigError, match="container has runAsNonRoot and image will run as root"):
        security.context(pod | {"spec": {"securityContext": {"runAsNonRoot": True}}}, {"name": "c"})
    with pytest.raises(security.ConfigError, match="runAsUser breaks non-root policy"):
        security.context(pod | {"spec": {}}, {"name": "c", "securityContext": {"runAsNonRoot": True, "runAsUser": 0}})
    assert sec["seccomp"] is None  # Unconfined, upstream's default
    confined = {"name": "c", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}
    assert security.context(pod, confined)["seccomp"] == "RuntimeDefault"
    with pytest.raises(security.ConfigError, match="Localhost"):
        security.context(pod, {"name": "c", "securityContext": {"seccompProfile": {"type": "Localhost"}}})
    argv = security.enter_argv(sec)
    assert argv[0] == "setpriv" and argv[-1] == "--" and "--reuid=1000" in argv and "--no-new-privs" in argv
    assert "--groups=5,2000" in argv and argv[1].startswith("--bounding-set=-all,+chown")
    assert security.enter_argv({"privileged": True, "caps": []}) == []


def test_resources_and_quantities():
    assert security.quantity("64Mi") == 64 * 2 ** 20 and security.quantity("250m") == 0.25
    assert security.quantity("1.5G") == 1.5e9 and security.quantity(2) == 2.0
    with pytest.raises(ValueError):
        security.quantity("12 apples")
    assert security.resources(POD["spec"]["containers"][0]) == {"memory": 64 * 2 ** 20, "cpuQuota": 25000,
                                                               "cpuShares": 128}
    assert security.resources({}) == {"cpuShares": 2}  # BestEffort: the minimum shares
    assert security.resources({"resources": {"limits": {"cpu": "1m"}}})["cpuQuota"] == 1000


def test_a_containers_request_names_its_namespaces_and_its_root(tmp_path):
    pause = runtime.Process(4242, 1)
    kw = dict(netns="nltx-pod-1", pause=pause, argv=["sleep", "1"], env={}, workdir="", mounts=[],
              log=tmp_path / "l", cgroup=None, security={"caps": [0], "readOnly": True}, resources={},
              scratch=tmp_path)
    req = runtime.container_request(spec={}, **kw)
    assert (req["pidns"], req["ipc"], req["uts"]) == ("new", "/proc/4242/ns/ipc", "/proc/4242/ns/uts")
    assert req["root"]["readOnly"] and req["root"]["cwd"] == "/" and req["security"]["caps"] == [0]
    assert {"/root", "/home", "/tmp", "/run", "/var/lib/netlab"} <= set(req["root"]["hide"])
    assert runtime.container_request(spec={"shareProcessNamespace": True}, **kw)["pidns"] == "/proc/4242/ns/pid"
    host = runtime.container_request(spec={"hostPID": True, "hostIPC": True}, **kw)
    assert (host["pidns"], host["ipc"]) == ("host", None)
    # what the built-in programs run on stays, read-only, when it is under a hidden path
    assert runtime.kept_paths(["/nowhere"]) == []
    assert all(p.startswith("/") for p in runtime.kept_paths(["/"]))


def test_the_atomic_writer(tmp_path):
    target = tmp_path / "vol"
    assert volumes.write_payload(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert os.readlink(target / "..data").startswith("..") and os.readlink(target / "a") == "..data/a"
    assert (target / "a").read_bytes() == b"1" and (target / "dir" / "b").read_bytes() == b"2"
    assert stat.S_IMODE((target / "dir" / "b").stat().st_mode) == 0o600
    first = os.readlink(target / "..data")
    assert not volumes.write_payload(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)}), "unchanged: no swap"
    assert volumes.write_payload(target, {"a": (b"new", 0o644)})
    assert os.readlink(target / "..data") != first and not (target / first).exists()
    assert (target / "a").read_text() == "new" and not (target / "dir").exists()
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith("..")) == ["a"]


def test_volume_payloads():
    cms = {"cm": {"data": {"k": "v", "other": "o"}, "binaryData": {"bin": base64.b64encode(b"\0\1").decode()}}}
    secrets = {"s": {"data": {"user": base64.b64encode(b"admin").decode()}}}
    p = volumes.payload(POD, {"configMap": {"name": "cm", "defaultMode": 0o400}}, cms, {}, "t", b"")
    assert p == {"k": (b"v", 0o400), "other": (b"o", 0o400), "bin": (b"\0\1", 0o400)}
    p = volumes.payload(POD, {"configMap": {"name": "cm", "items": [{"key": "k", "path": "d/k", "mode": 0o600}]}},
                        cms, {}, "t", b"")
    assert p == {"d/k": (b"v", 0o600)}
    with pytest.raises(volumes.VolumeError, match='configmap "nope" not found'):
        volumes.payload(POD, {"configMap": {"name": "nope"}}, cms, {}, "t", b"")
    assert volumes.payload(POD, {"configMap": {"name": "nope", "optional": True}}, cms, {}, "t", b"") == {}
    with pytest.raises(volumes.VolumeError, match="non-existent config key: zz"):
        volumes.payload(POD, {"configMap": {"name": "cm", "items": [{"key": "zz", "path": "z"}]}}, cms, {}, "t", b"")
    assert volumes.payload(POD, {"secret": {"secretName": "s"}}, {}, secrets, "t", b"") == {"user": (b"admin", 0o644)}
    d = volumes.payload(POD, {"downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "one", "fieldRef": {"fieldPath": "metadata.labels['a']"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "requests.memory", "divisor": "1Mi"}}]}},
        {}, {}, "t", b"")
    assert {k: v[0] for k, v in d.items()} == {"labels": b'a="1"\nb="2"', "name": b"p", "one": b"1", "cpu": b"250",
                                               "mem": b"32"}
    seen = []
    proj = volumes.payload(POD, {"projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "audience": "vault", "expirationSeconds": 600}},
        {"secret": {"name": "s", "items": [{"key": "user", "path": "u"}]}},
        {"configMap": {"name": "cm", "items": [{"key": "k", "path": "k"}]}},
        {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
        cms, secrets, lambda aud, exp: seen.append((aud, exp)) or "tok", b"")
    assert {k: v[0] for k, v in proj.items()} == {"token": b"tok", "u": b"admin", "k": b"v", "ns": b"ns"}
    assert seen == [("vault", 600)] and proj["token"][1] == 0o600


def test_service_account_and_memory_volumes(tmp_path):
    where = PodLayout(tmp_path)
    d = runtime.service_account(POD, where, "the-token", b"CA")
    assert (d / "token").read_text() == "the-token" and (d / "namespace").read_text() == "ns"
    assert runtime.service_account(POD | {"spec": {"automountServiceAccountToken": False}}, where, "t", b"") is None
    pod = {"metadata": POD["metadata"], "spec": {"containers": POD["spec"]["containers"], "volumes": [
        {"name": "a", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}, {"name": "b", "emptyDir": {"medium": "Memory"}},
        {"name": "c", "emptyDir": {}}]}}
    assert volumes.tmpfs_volumes(pod) == [{"name": "a", "options": f"mode=1777,size={16 * 2 ** 20}"},
                                          {"name": "b", "options": f"mode=1777,size={64 * 2 ** 20}"}]
    sources = volumes.prepare(pod, where, {}, {}, "t", b"")
    assert sources["a"].tmpfs == "a" and sources["c"].path == where.volume("c")
    mounts, problems = volumes.container_mounts({"volumeMounts": [
        {"name": "a", "mountPath": "/cache/"}, {"name": "c", "mountPath": "/data", "subPathExpr": "$(POD)/x"},
        {"name": "zz", "mountPath": "/zz"}, {"name": "c", "mountPath": "/up", "subPath": "../etc"}]},
        sources, {"POD": "p"}, 99)
    assert mounts[0] == {"tmpfs": "a", "sub": "", "destination": "/cache", "readOnly": False, "pause": 99}
    assert mounts[1]["source"] == str(where.volume("c") / "p" / "x") and (where.volume("c") / "p" / "x").is_dir()
    assert len(problems) == 2


def test_host_path_types(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    assert volumes.host_path({"path": str(f), "type": "File"}).path == f
    with pytest.raises(volumes.VolumeError, match=f"hostPath type check failed: {f} is not a directory"):
        volumes.host_path({"path": str(f), "type": "Directory"})
    with pytest.raises(volumes.VolumeError, match="is not a socket file"):
        volumes.host_path({"path": str(f), "type": "Socket"})
    volumes.host_path({"path": str(tmp_path / "new" / "dir"), "type": "DirectoryOrCreate"})
    assert (tmp_path / "new" / "dir").is_dir()
    volumes.host_path({"path": str(tmp_path / "made"), "type": "FileOrCreate"})
    assert (tmp_path / "made").is_file()
    with pytest.raises(volumes.VolumeError):
        volumes.host_path({"path": str(tmp_path / "no" / "such"), "type": "FileOrCreate"})
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock"))
    assert volumes.host_path({"path": str(tmp_path / "sock"), "type": "Socket"}).path == tmp_path / "sock"
    s.close()
    assert volumes.host_path({"path": "/dev/null", "type": "CharDevice"}).devices
    assert volumes.host_path({"path": str(tmp_path / "anything")}).path == tmp_path / "anything"  # no type: no check


def test_cgroup_hierarchies_from_mounts(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    info = f"30 25 0:26 / {v2} rw,nosuid - cgroup2 cgroup2 rw\n"
    assert cgroups.detect(info) == [cgroups.Hierarchy(v2, 2, ("memory", "cpu", "pids"))]
    (v2 / "cgroup.controllers").write_text("hugetlb\n")  # v2 without memory (a hybrid machine): the v1 ones
    info += ("31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
             "32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
             "33 25 0:29 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n")
    assert [(str(h.root), h.version, h.controllers) for h in cgroups.detect(info)] == [
        ("/sys/fs/cgroup/memory", 1, ("memory",)), ("/sys/fs/cgroup/cpu,cpuacct", 1, ("cpu",))]


def test_layout_names_the_cgroups():
    node = Layout("nltc").node("worker")
    pod = node.pod("uid-1")
    assert (Layout("nltc").cgroup, node.cgroup, pod.cgroup) == ("netlab/nltc", "netlab/nltc/worker",
                                                                "netlab/nltc/worker/poduid-1")
    assert pod.container_cgroup("web", 2) == "netlab/nltc/worker/poduid-1/web-2"
    assert pod.pause_cgroup == "netlab/nltc/worker/poduid-1/pause"
