"""The pod runtime, the kubelet's side of it: a pod is a network namespace and a pause process
(PID 1 of the pod's PID namespace, holding its IPC and UTS namespaces, hostname = pod name); each
container is a process in the pod's network, IPC and UTS namespaces, in a PID namespace of its own
(or the pod's, with shareProcessNamespace), a cgroup of its own under the pod's, and a private
root: an overlay of the host's filesystem with a writable layer of its own, where the pod's
/etc/hosts, resolv.conf and hostname, the service account and the volumes are mounted (see
sandbox.py, which the node's spawner, spawner.py, runs in each process it starts).

Everything about a pod lives in its directory, `<state>/nodes/<node>/pods/<uid>/` (its paths are
netlab.kit.layout's PodLayout): state.json (pids, restart counts, environments, the CNI result),
logs/<container>.log (in the CRI logging format, written by the spawner's log relay),
exits/<container> (its last exit status, and OOMKilled), the /etc files, the volumes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from netlab.kit import cgroups, net
from netlab.kit.layout import PodLayout, state_root
from netlab.node.kubelet import volumes
from netlab.node.kubelet.expansion import expand
from netlab.node.kubelet.security import enter_argv as enter_privileges


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and start time (clock ticks since boot, which tells it from a later
    process with its pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def proc_start(pid: int) -> int | None:
    st = _stat(pid)
    return st[1] if st else None


class Process:
    """A pause or container process, started by the node's spawner (which writes its exit status
    to `exit_file` before it reaps it), possibly for an earlier kubelet (then adopted)."""

    def __init__(self, pid: int, started: int | None, exit_file: str | None = None):
        self.pid, self.started, self.exit_file = pid, started, exit_file
        self.pidfd: int | None = None  # while watched: becomes readable when the process exits

    def alive(self) -> bool:
        if self.pidfd is not None and not select.select([self.pidfd], [], [], 0)[0]:
            return True  # watched, and it has not exited
        st = _stat(self.pid)
        return st is not None and st[0] != "Z" and st[1] == self.started and not (
            self.exit_file and os.path.exists(self.exit_file))

    def watch(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        """Call `wake` once the process exits, from the event loop (a pidfd, which is how the
        kubelet learns of a container's end without polling /proc). Idempotent."""
        if self.pidfd is not None or not self.alive():
            return
        try:
            fd = os.pidfd_open(self.pid)
        except OSError:
            return
        if proc_start(self.pid) != self.started:  # the pid was reused before we held it
            os.close(fd)
            return
        self.pidfd = fd

        def exited() -> None:
            loop.remove_reader(fd)  # it stays readable: one wake is enough
            wake()
        loop.add_reader(fd, exited)

    def unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.pidfd is not None:
            loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None

    async def wait_exit_code(self, timeout: float = 0.5) -> int | None:
        """The exit status, waiting briefly for the spawner to write it (it is written as the
        process is reaped, which may be just after its end was seen)."""
        end = time.monotonic() + timeout
        while (code := self.exit_code()) is None and self.exit_file and time.monotonic() < end:
            await asyncio.sleep(0.01)
        return code

    def exit_code(self) -> int | None:
        """The exit status the spawner reported (128 + signal if signalled); None if unknown."""
        if self.exit_file:
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(Path(self.exit_file).read_text().split()[0])
        return None

    def exit_reason(self) -> str | None:
        """What the spawner saw besides the status: "OOMKilled" if the OOM killer killed in its cgroup."""
        if self.exit_file:
            with contextlib.suppress(OSError):
                words = Path(self.exit_file).read_text().split()
                return words[1] if len(words) > 1 else None
        return None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def to_json(self) -> dict:
        return {"pid": self.pid, "started": self.started, "exit": self.exit_file}

    @classmethod
    def from_json(cls, d: dict) -> Process:
        return cls(d["pid"], d["started"], d.get("exit"))


class PodDir:
    def __init__(self, layout: PodLayout):
        self.layout = layout
        self.path = layout.dir
        self.saved: str | None = None

    def state(self) -> dict:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return json.loads(self.layout.state.read_text())
        return {}

    def save(self, state: dict) -> None:
        """Write state.json if it changed (a write and rename is most of a pod worker's time)."""
        text = json.dumps(state)
        if text == self.saved:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.layout.state.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(self.layout.state)
        self.saved = text

    def remove(self) -> None:
        # the overlay dirs may still be mounted in a dying container's mount namespace: that is
        # its own namespace, the host sees plain directories
        shutil.rmtree(self.path, ignore_errors=True)


class Unavailable(RuntimeError):
    """The node's runtime did not answer (as opposed to a start it tried and that failed)."""


def request(path: str, req: dict) -> dict:
    """The kubelet's side of spawner.py: one start, answered with the pid or raised as an error."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        try:
            s.connect(path)
        except OSError as e:
            raise Unavailable(f"the node's runtime is not running at {path}: {e.strerror}") from None
        s.sendall(json.dumps(req).encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not data:
        raise Unavailable("the node's runtime closed the connection")
    reply = json.loads(data)
    if "error" in reply:
        raise RuntimeError(reply["error"])
    return reply


def spawn(socket_path: Path, req: dict, exit_file: Path) -> Process:
    """Have the node's spawner start a process (see spawner.py); its exit status will be written
    to `exit_file`."""
    exit_file.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        exit_file.unlink()
    out = request(str(socket_path), dict(req, exit=str(exit_file)))
    return Process(out["pid"], out["started"], str(exit_file))


def start_pause(sock: Path, netns: str | None, hostname: str, pod: PodLayout, spec: dict | None = None,
                scratch: Path | None = None, tmpfs: list[dict] | None = None) -> Process:
    """The pod's pause process: PID 1 of the pod's PID namespace (unless hostPID), holding its IPC
    (unless hostIPC) and UTS namespaces (hostname = pod name) inside its network namespace, in an
    empty root of its own with the pod's memory-backed emptyDirs, with no capabilities."""
    spec = spec or {}
    req = {"netns": netns and net.ns_path(netns), "pidns": "host" if spec.get("hostPID") else "new",
           "ipc": None if spec.get("hostIPC") else "new", "uts": "new", "hostname": hostname,
           "cgroup": pod.pause_cgroup if pod.cgroup and cgroups.available() else None,
           "security": {"caps": []}, "pause": True, "argv": ["/pause"], "env": {}, "log": str(pod.log("pause"))}
    if scratch is not None:
        req["root"] = {"scratch": str(scratch), "empty": True, "tmpfs": tmpfs or []}
    return spawn(sock, req, pod.exit_file("pause"))


def service_account(pod: dict, where: PodLayout, token: volumes.TokenSource, ca: bytes) -> Path | None:
    """The directory of the pod's service account files (token, ca.crt, namespace), mounted at
    /var/run/secrets/kubernetes.io/serviceaccount, unless the pod opts out with
    automountServiceAccountToken: false. `token` is the pod's token source: a token, or a function of
    (audience, expirationSeconds) giving one; projected serviceAccountToken volumes use the same."""
    return volumes.service_account(pod, where, token, ca)


def pod_files(pod: PodLayout, files: dict[str, str]) -> dict[str, Path]:
    """The pod's /etc/hosts, /etc/resolv.conf and /etc/hostname, written for its containers to mount."""
    out = {}
    for name, text in files.items():
        path = pod.etc_file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        out[f"/etc/{name}"] = path
    return out


def hidden_paths() -> list[str]:
    """What a container's root does not show of the host's: its users' homes, its temporary and
    run-time files (sockets, namespaces), every lab's state (tokens, keys, stores, runtime sockets)."""
    return ["/root", "/home", "/tmp", "/var/tmp", "/run", "/var/lib/netlab", os.path.realpath(state_root())]


def kept_paths(hide: list[str]) -> list[str]:
    """Paths under hidden ones that a container still needs, read-only: the Python (and netlab)
    the built-in programs and the coredns image run on."""
    need = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, Path(__file__).resolve().parents[3])}
    return sorted(p for p in need if any(p == h or p.startswith(h.rstrip("/") + "/") for h in hide))


def container_request(*, netns: str | None, pause: Process | None, spec: dict, argv: list[str], env: dict[str, str],
                      workdir: str, mounts: list[dict], log: Path, cgroup: str | None, security: dict,
                      resources: dict, scratch: Path, container: dict | None = None, attach: Path | None = None,
                      pidns: str | None = None) -> dict:
    """What the spawner is asked to start for a container: the pod's namespaces (its own PID
    namespace unless shareProcessNamespace or hostPID), its cgroup and limits, a private root with
    `mounts` (pod files, volumes), its privileges."""
    pid_of = pause.pid if pause is not None else None
    container = container or {}
    if pidns:  # an ephemeral container's target's
        pass
    elif spec.get("hostPID"):
        pidns = "host"
    elif spec.get("shareProcessNamespace") and pid_of:
        pidns = f"/proc/{pid_of}/ns/pid"
    else:
        pidns = "new"
    ipc = None if spec.get("hostIPC") or not pid_of else f"/proc/{pid_of}/ns/ipc"
    hide = hidden_paths()
    root = {"scratch": str(scratch), "hide": hide, "keep": kept_paths(hide), "mounts": mounts, "cwd": workdir or "/",
            "readOnly": security.get("readOnly", False), "privileged": security.get("privileged", False)}
    return {"netns": netns and net.ns_path(netns), "pidns": pidns, "ipc": ipc,
            "uts": pid_of and f"/proc/{pid_of}/ns/uts", "cgroup": cgroup if cgroup and cgroups.available() else None,
            "resources": resources, "root": root,
            "security": {k: security.get(k) for k in ("caps", "uid", "gid", "groups", "noNewPrivs", "seccomp")},
            "argv": argv, "env": env, "cwd": workdir or "/", "log": str(log), "logFormat": "cri",
            "stdin": bool(container.get("stdin")), "stdinOnce": bool(container.get("stdinOnce")),
            "tty": bool(container.get("tty")), "attach": attach and str(attach)}


def start_container(sock: Path, req: dict, exit_file: Path) -> Process:
    """A container process, as container_request describes it."""
    return spawn(sock, req, exit_file)


def enter_argv(container: Process, security: dict | None) -> list[str]:
    """The argv prefix that runs a command in a running container, as runc exec does: in all of its
    namespaces (its root among them), with its privileges."""
    return ["nsenter", f"--target={container.pid}", "--net", "--uts", "--ipc", "--pid", "--mount", "--cgroup",
            f"--wd=/proc/{container.pid}/cwd", "--", *enter_privileges(security)]


def joiner(cgroup: str | None) -> Callable[[], None] | None:
    """A preexec function putting an exec'd command into the container's cgroup (its limits, and
    its end with the container's)."""
    if not cgroup or not cgroups.available():
        return None
    return lambda: cgroups.join(cgroup)


def exec_in(container: Process, argv: list[str], timeout: float | None,
            env: dict[str, str] | None = None, security: dict | None = None, cgroup: str | None = None
            ) -> tuple[int, str]:
    """Run a command in a running container (an exec probe, a lifecycle hook), with the
    container's environment if given."""
    p = subprocess.Popen([*enter_argv(container, security), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env or None, stdin=subprocess.DEVNULL, preexec_fn=joiner(cgroup),
                         start_new_session=True)  # its own process group: a timeout ends nsenter's child too
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, (out + err).strip()
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return -1, f"command timed out after {timeout}s"


def stop(procs: list[Process], grace: float) -> None:
    """SIGTERM, up to `grace` seconds, then SIGKILL: what a runtime does to stop containers."""
    for p in procs:
        p.signal(signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and any(p.alive() for p in procs):
        time.sleep(0.05)
    for p in procs:
        if p.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.signal(signal.SIGKILL)
    end = time.monotonic() + 2  # until the spawner has reaped them and written their status
    while time.monotonic() < end and any(p.alive() for p in procs):
        time.sleep(0.01)


def hosts_file(pod: dict, ip: str | None, cluster_domain: str, node_hosts: str = "/etc/hosts") -> str:
    """/etc/hosts as the kubelet writes it: localhost lines and the pod's own entry, or for a
    hostNetwork pod the node's own file; then the pod's hostAliases."""
    spec, meta = pod.get("spec") or {}, pod["metadata"]
    if spec.get("hostNetwork"):
        try:
            lines = [Path(node_hosts).read_text().rstrip("\n")]
        except OSError:
            lines = []
    else:
        lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 "fe00::0\tip6-localnet", "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes",
                 "fe00::2\tip6-allrouters"]
        if ip:
            hostname = spec.get("hostname") or meta["name"]
            if spec.get("subdomain"):
                fqdn = f"{hostname}.{spec['subdomain']}.{meta['namespace']}.svc.{cluster_domain}"
                lines.append(f"{ip}\t{fqdn}\t{hostname}")
            else:
                lines.append(f"{ip}\t{hostname}")
    if spec.get("hostAliases"):
        lines.append("\n# Entries added by HostAliases.")
        lines += [f"{a['ip']}\t" + "\t".join(a.get("hostnames") or []) for a in spec["hostAliases"]]
    return "\n".join(lines) + "\n"


def pod_hostname(pod: dict) -> str:
    """A pod's hostname: its name (or spec.hostname); a hostNetwork pod has its node's."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork") and spec.get("nodeName"):
        return spec["nodeName"]
    return spec.get("hostname") or pod["metadata"]["name"][:63].rstrip("-.")  # a hostname has 63 characters at most


def resolv_conf(pod: dict, dns_ip: str, cluster_domain: str, host_resolv: str = "/etc/resolv.conf") -> str:
    """resolv.conf per dnsPolicy: ClusterFirst (default), ClusterFirstWithHostNet, Default (the
    node's), None (dnsConfig only); dnsConfig is merged as upstream merges it."""
    spec, ns = pod.get("spec") or {}, pod["metadata"]["namespace"]
    policy = spec.get("dnsPolicy", "ClusterFirst")
    host_net = spec.get("hostNetwork", False)
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy == "Default" or (policy == "ClusterFirst" and host_net):
        with contextlib.suppress(OSError):
            for line in Path(host_resolv).read_text().splitlines():
                parts = line.split()
                if parts[:1] == ["nameserver"]:
                    servers += parts[1:2]
                elif parts[:1] in (["search"], ["domain"]):
                    searches += parts[1:]
                elif parts[:1] == ["options"]:
                    options += parts[1:]
    elif policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        servers = [dns_ip]
        searches = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
        options = ["ndots:5"]
    cfg = spec.get("dnsConfig") or {}
    servers += [s for s in cfg.get("nameservers") or [] if s not in servers]
    searches += [s for s in cfg.get("searches") or [] if s not in searches]
    for o in cfg.get("options") or []:
        opt = o["name"] + (f":{o['value']}" if o.get("value") is not None else "")
        options = [x for x in options if x.split(":")[0] != o["name"]] + [opt]
    out = []
    if searches:
        out.append("search " + " ".join(searches))
    out += [f"nameserver {s}" for s in servers[:3]]
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out) + "\n"


def container_env(pod: dict, container: dict, services: list[dict], node_ip: str, pod_ip: str | list[str] | None,
                  configmaps: dict[str, dict], secrets: dict[str, dict] | None = None) -> dict[str, str]:
    """The container's environment: PATH and HOSTNAME, service links (enableServiceLinks, as the
    kubelet makes them), then the container's own env and envFrom with downward API fields."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": pod_hostname(pod)}
    links = (pod.get("spec") or {}).get("enableServiceLinks", True)
    for svc in services:
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or not spec.get("ports"):
            continue
        if not links and not (svc["metadata"]["name"] == "kubernetes" and svc["metadata"]["namespace"] == "default"):
            continue
        name = svc["metadata"]["name"].upper().replace("-", "_")
        first = spec["ports"][0]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(first["port"])
        for p in spec["ports"]:
            proto = p.get("protocol", "TCP")
            if p.get("name"):
                env[f"{name}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
            base = f"{name}_PORT_{p['port']}_{proto}"
            env[base] = f"{proto.lower()}://{ip}:{p['port']}"
            env[f"{base}_PROTO"], env[f"{base}_PORT"], env[f"{base}_ADDR"] = proto.lower(), str(p["port"]), ip
        env[f"{name}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
    ns = pod["metadata"]["namespace"]
    secrets = secrets or {}
    for src in container.get("envFrom") or []:
        if "secretRef" in src:
            ref = src["secretRef"] or {}
            sec = secrets.get(ref.get("name", ""))
            if sec is None and not ref.get("optional"):
                raise ConfigError(f'secret "{ref.get("name", "")}" not found')
            for k, v in ((sec or {}).get("data") or {}).items():
                env[src.get("prefix", "") + k] = base64.b64decode(v).decode(errors="replace")
            continue
        ref = src.get("configMapRef") or {}
        cm = configmaps.get(ref.get("name", ""))
        if cm is None and ref and not ref.get("optional"):
            raise ConfigError(f'configmap "{ref.get("name", "")}" not found')
        for k, v in ((cm or {}).get("data") or {}).items():
            env[src.get("prefix", "") + k] = v
    # status.podIPs and status.hostIPs: every address, comma-separated (a dual-stack pod's two)
    pod_ips = [pod_ip] if isinstance(pod_ip, str) else list(pod_ip or [])
    fields = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"],
              "metadata.uid": pod["metadata"]["uid"], "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
              "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", ""),
              "status.hostIP": node_ip, "status.podIP": pod_ips[0] if pod_ips else "", "status.hostIPs": node_ip,
              "status.podIPs": ",".join(pod_ips)}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
        elif (e.get("valueFrom") or {}).get("fieldRef"):
            path = e["valueFrom"]["fieldRef"].get("fieldPath", "")
            try:
                env[e["name"]] = fields[path] if path in fields else volumes.field_value(pod, path)
            except volumes.VolumeError:
                env[e["name"]] = ""
        elif (e.get("valueFrom") or {}).get("resourceFieldRef"):
            env[e["name"]] = volumes.resource_value(pod, e["valueFrom"]["resourceFieldRef"], container["name"])
        elif (e.get("valueFrom") or {}).get("secretKeyRef"):
            ref = e["valueFrom"]["secretKeyRef"]
            sec = secrets.get(ref["name"])
            data = (sec or {}).get("data") or {}
            if ref.get("optional") and ref["key"] not in data:
                continue
            if sec is None:
                raise ConfigError(f'secret "{ref["name"]}" not found')
            if ref["key"] not in data:
                raise ConfigError(f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}")
            env[e["name"]] = base64.b64decode(data[ref["key"]]).decode(errors="replace")
        elif (e.get("valueFrom") or {}).get("configMapKeyRef"):
            ref = e["valueFrom"]["configMapKeyRef"]
            cm = configmaps.get(ref["name"])
            data = (cm or {}).get("data") or {}
            if ref.get("optional") and ref["key"] not in data:
                continue
            if cm is None:
                raise ConfigError(f'configmap "{ref["name"]}" not found')
            if ref["key"] not in data:
                raise ConfigError(f"couldn't find key {ref['key']} in ConfigMap {ns}/{ref['name']}")
            env[e["name"]] = data[ref["key"]]
    return env


class ConfigError(Exception):
    """A container's configuration names what is not there (a ConfigMap, a key): upstream's
    CreateContainerConfigError, tried again until it is."""


def configmaps_named(container: dict, ref: str = "configMap") -> set[str]:
    """The ConfigMaps (or with ref="secret", the Secrets) a container's env and envFrom read."""
    names = {(src.get(f"{ref}Ref") or {}).get("name") for src in container.get("envFrom") or []}
    names |= {((e.get("valueFrom") or {}).get(f"{ref}KeyRef") or {}).get("name") for e in container.get("env") or []}
    return names - {None}
