"""The pod runtime without a container runtime: a pod is a network namespace, a pause process that
holds the pod's UTS namespace (hostname = pod name), and one process per container that joins
them and gets a mount namespace of its own, where /etc is an overlay carrying the pod's hosts,
resolv.conf and hostname and the container's volumes under /etc (the host's /etc is untouched).
The node's spawner (spawner.py) starts those processes and records how they exit.

Everything about a pod lives in its directory, `<state>/nodes/<node>/pods/<uid>/` (its paths are
netlab.kit.layout's PodLayout): state.json (pids, restart counts, environments, the CNI result),
logs/<container>.log (in the CRI logging format, written by the spawner's log relay),
exits/<container> (its last exit status), the overlays' upper and work dirs, the volumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from netlab.kit import net
from netlab.kit.layout import PodLayout


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
            with contextlib.suppress(OSError, ValueError):
                return int(Path(self.exit_file).read_text())
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


def start_pause(sock: Path, netns: str | None, hostname: str, pod: PodLayout) -> Process:
    """The pod's pause process: a new UTS namespace with the pod's hostname, inside its network
    namespace, sleeping until the pod goes."""
    return spawn(sock, {"netns": netns and net.ns_path(netns), "hostname": hostname, "argv": ["sleep", "infinity"],
                        "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                        "log": str(pod.log("pause"))}, pod.exit_file("pause"))


def etc_files(pod: PodLayout, files: dict[str, str], volumes: dict[str, Path], name: str) -> tuple[Path, Path]:
    """The upper and work dirs of a container's /etc overlay: the pod's files, and volumes that
    mount under /etc copied in (a configMap is read-only data)."""
    upper, work = pod.etc_overlay(name) / "upper", pod.etc_overlay(name) / "work"
    if upper.exists():
        shutil.rmtree(upper.parent)
    upper.mkdir(parents=True)
    work.mkdir(parents=True)
    for rel, text in files.items():
        (upper / rel).write_text(text)
    for rel, src in volumes.items():
        dst = upper / rel
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return upper, work


SERVICE_ACCOUNT = "secrets/kubernetes.io/serviceaccount"  # under /run (/var/run links there)


def service_account(pod: dict, where: PodLayout, token: str, ca: bytes) -> Path | None:
    """The upper dir of a /run overlay holding the pod's service account files (token, ca.crt,
    namespace) at /var/run/secrets/kubernetes.io/serviceaccount, unless the pod opts out with
    automountServiceAccountToken: false. netlab has one identity: the lab's token."""
    if (pod.get("spec") or {}).get("automountServiceAccountToken") is False:
        return None
    upper = where.run_overlay / "upper"
    d = upper / SERVICE_ACCOUNT
    d.mkdir(parents=True, exist_ok=True)
    (where.run_overlay / "work").mkdir(exist_ok=True)
    (d / "token").write_text(token)
    (d / "ca.crt").write_bytes(ca)
    (d / "namespace").write_text(pod["metadata"]["namespace"])
    return upper


def refresh_etc(upper: Path, volumes: dict[str, Path]) -> None:
    """Bring a running container's /etc copies of its volumes up to date, as the kubelet updates
    a configMap volume of a running pod. Files are rewritten in place (the same inode in the
    overlay's upper layer), so the container sees the new content at the same path."""
    for rel, src in volumes.items():
        pairs = [(f, upper / rel / f.relative_to(src)) for f in src.rglob("*") if f.is_file()] if src.is_dir() \
            else [(src, upper / rel)]
        for f, dst in pairs:
            data = f.read_bytes()
            if not dst.exists() or dst.read_bytes() != data:
                dst.parent.mkdir(parents=True, exist_ok=True)
                with open(dst, "r+b" if dst.exists() else "wb") as out:
                    out.write(data)
                    out.truncate()


def start_container(sock: Path, netns: str | None, pause: Process | None, argv: list[str], env: dict[str, str],
                    workdir: str, upper: Path, work: Path, binds: list[tuple[Path, str]], log: Path,
                    exit_file: Path, run_upper: Path | None = None) -> Process:
    """A container process: joins the pod's network and UTS namespaces, takes its own mount
    namespace with the /etc overlay (and a /run overlay for the service account) and
    bind-mounted volumes, then becomes the program."""
    mounts = [["overlay", "/etc", "overlay", f"lowerdir=/etc,upperdir={upper},workdir={work}"]]
    if run_upper is not None:
        mounts.append(["overlay", "/run", "overlay", f"lowerdir=/run,upperdir={run_upper},"
                                                     f"workdir={run_upper.parent / 'work'}"])
    mounts += [[str(src), dst, None, None] for src, dst in binds]
    return spawn(sock, {"netns": netns and net.ns_path(netns), "uts": pause and f"/proc/{pause.pid}/ns/uts",
                        "mounts": mounts, "argv": argv, "env": env, "cwd": workdir or "/", "log": str(log),
                        "logFormat": "cri"}, exit_file)


def exec_in(container: Process, argv: list[str], timeout: float | None,
            env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command in a running container's namespaces (an exec probe, a lifecycle hook), with
    the container's environment if given."""
    try:
        p = subprocess.run(["nsenter", f"--target={container.pid}", "--net", "--uts", "--mount", "--", *argv],
                           capture_output=True, text=True, timeout=timeout, env=env or None,
                           stdin=subprocess.DEVNULL)
        return p.returncode, (p.stdout + p.stderr).strip()
    except subprocess.TimeoutExpired:
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


def container_env(pod: dict, container: dict, services: list[dict], node_ip: str, pod_ip: str | None,
                  configmaps: dict[str, dict]) -> dict[str, str]:
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
    for src in container.get("envFrom") or []:
        ref = src.get("configMapRef") or {}
        cm = configmaps.get(ref.get("name", ""))
        if cm is None and ref and not ref.get("optional"):
            raise ConfigError(f'configmap "{ref.get("name", "")}" not found')
        for k, v in ((cm or {}).get("data") or {}).items():
            env[src.get("prefix", "") + k] = v
    fields = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"],
              "metadata.uid": pod["metadata"]["uid"], "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
              "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", ""),
              "status.hostIP": node_ip, "status.podIP": pod_ip or ""}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = _expand(e["value"], env)
        elif (e.get("valueFrom") or {}).get("fieldRef"):
            env[e["name"]] = fields.get(e["valueFrom"]["fieldRef"].get("fieldPath", ""), "")
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


def configmaps_named(container: dict) -> set[str]:
    """The ConfigMaps a container's env and envFrom read."""
    names = {(src.get("configMapRef") or {}).get("name") for src in container.get("envFrom") or []}
    names |= {((e.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name") for e in container.get("env") or []}
    return names - {None}


def _expand(value: str, env: dict[str, str]) -> str:
    """$(VAR) references to earlier variables, as Kubernetes expands them ($$ escapes)."""
    out, i = "", 0
    while i < len(value):
        if value.startswith("$$", i):
            out += "$"
            i += 2
        elif value.startswith("$(", i) and ")" in value[i:]:
            j = value.index(")", i)
            name = value[i + 2:j]
            out += env.get(name, value[i:j + 1])
            i = j + 1
        else:
            out += value[i]
            i += 1
    return out


def volume_sources(pod: dict, where: PodLayout, configmaps: dict[str, dict]) -> dict[str, Path]:
    """Each volume's files on the node: configMap data written out, emptyDir a directory,
    hostPath the host's path."""
    out: dict[str, Path] = {}
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if "configMap" in v:
            d = where.volume(v["name"])
            d.mkdir(parents=True, exist_ok=True)
            cm = configmaps.get(v["configMap"]["name"]) or {}
            items = v["configMap"].get("items")
            data = cm.get("data") or {}
            for k, text in data.items():
                if items is None:
                    (d / k).write_text(text)
            for it in items or []:
                if it["key"] in data:
                    (d / it["path"]).parent.mkdir(parents=True, exist_ok=True)
                    (d / it["path"]).write_text(data[it["key"]])
            out[v["name"]] = d
        elif "emptyDir" in v:
            d = where.volume(v["name"])
            d.mkdir(parents=True, exist_ok=True)
            out[v["name"]] = d
        elif "hostPath" in v:
            out[v["name"]] = Path(v["hostPath"]["path"])
    return out


def mounts_for(container: dict, sources: dict[str, Path]) -> tuple[dict[str, Path], list[tuple[Path, str]], list[str]]:
    """Split a container's volumeMounts into files for the /etc overlay and bind mounts at existing
    directories; what cannot be mounted comes back as problems to report."""
    etc: dict[str, Path] = {}
    binds: list[tuple[Path, str]] = []
    problems: list[str] = []
    for m in container.get("volumeMounts") or []:
        src = sources.get(m["name"])
        if src is None:
            problems.append(f"volume {m['name']!r} is not defined or its type is not supported (configMap, emptyDir, "
                            "hostPath)")
            continue
        if m.get("subPath"):
            src = src / m["subPath"]
        path = m["mountPath"].rstrip("/")
        if path == "/etc" or path.startswith("/etc/"):
            etc[path[5:]] = src
        elif os.path.exists(path):
            binds.append((src, path))
        else:
            problems.append(f"mountPath {path} does not exist on this node: netlab mounts volumes under /etc or "
                            "at existing directories")
    return etc, binds, problems
