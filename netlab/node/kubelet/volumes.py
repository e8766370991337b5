"""A pod's volumes as the kubelet sets them up, and each container's mounts of them.

- configMap, secret, downwardAPI, projected (serviceAccountToken, configMap, secret, downwardAPI
  sources) and the service account's files are written as upstream's atomic writer writes them:
  the files in a timestamped directory `..<time>`, `..data` a symlink to it, and each top-level
  name a symlink through `..data`; an update writes a new directory and swaps `..data` in one
  rename, so a running container sees all the new files at once (a subPath mount keeps the file it
  was given, as upstream). `items`, `defaultMode`, `mode`, `optional` as upstream.
- emptyDir: a directory of the pod's; `medium: Memory` a tmpfs (of `sizeLimit`, else the pod's
  memory limit if every container has one) held by the pod's pause process, shared by its containers.
- hostPath: the host's path, checked or made per its `type`.
- persistentVolumeClaim: the bound PersistentVolume's directory (a hostPath or local volume, as the
  local provisioner makes them), bound into the container's root like a hostPath.
Any mountPath works: the runtime makes the mount point in the container's own root.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netlab.kit.layout import PodLayout
from netlab.node.kubelet.security import quantity

SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_MODE = 0o644
# a token source: the token itself, or a function of (audience, expirationSeconds) -> token
TokenSource = str | Callable[[str | None, int], str]


class VolumeError(Exception):
    """A volume cannot be set up yet (a ConfigMap or Secret not there, a hostPath of the wrong type):
    upstream's FailedMount, the pod waits in ContainerCreating and it is tried again."""


@dataclass(frozen=True)
class Source:
    """A volume on the node: a path to bind (`path`), or a tmpfs the pause process holds (`tmpfs`)."""
    path: Path | None = None
    tmpfs: str | None = None
    read_only: bool = False  # configMap, secret, downwardAPI, projected: always mounted read-only
    devices: bool = False  # a hostPath CharDevice or BlockDevice


# --- the atomic writer ------------------------------------------------------------------------

def write_payload(target: Path, files: dict[str, tuple[bytes, int]], gid: int | None = None) -> bool:
    """Make `target` hold exactly `files` (relative path -> (content, mode)) the atomic writer's
    way. Returns whether anything changed."""
    target.mkdir(parents=True, exist_ok=True)
    data = target / "..data"
    current = data.resolve() if data.is_symlink() else None
    if current is not None and _same(current, files):
        return False
    new = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns() % 1_000_000_000:09d}"
    new.mkdir()
    os.chmod(new, 0o755)
    for rel, (content, mode) in files.items():
        f = new / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content)
        os.chmod(f, mode)
        if gid is not None:
            os.chown(f, -1, gid)
    tmp = target / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(new.name)
    tmp.replace(data)  # the one rename that switches every file at once
    tops = {rel.split("/")[0] for rel in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
        elif entry.name.startswith("..") and entry.name not in ("..data", new.name) and entry.is_dir() \
                and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
    return True


def _same(current: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    have = {str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()}
    if have != set(files):
        return False
    for rel, (content, mode) in files.items():
        p = current / rel
        if stat.S_IMODE(p.stat().st_mode) != mode or p.read_bytes() != content:
            return False
    return True


# --- payloads --------------------------------------------------------------------------------

def _keyed(kind: str, obj: dict | None, ref: dict, name: str, default_mode: int, ns: str) -> dict[str, tuple[bytes, int]]:
    """The files of a configMap or secret volume (or projected source), with items and modes."""
    optional = bool(ref.get("optional"))
    if obj is None:
        if optional:
            return {}
        raise VolumeError(f'{kind} "{name}" not found')
    if kind == "secret":
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    else:
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    items = ref.get("items")
    if items is None:
        return {k: (v, default_mode) for k, v in data.items()}
    out = {}
    for it in items:
        if it["key"] not in data:
            if optional:
                continue
            raise VolumeError(f"{kind} references non-existent config key: {it['key']}" if kind == "configmap"
                              else f"references non-existent secret key: {it['key']}")
        out[it["path"]] = (data[it["key"]], it.get("mode", default_mode))
    return out


def _labels(d: dict) -> str:
    return "\n".join(f'{k}="{v}"' for k, v in sorted((d or {}).items()))


def field_value(pod: dict, path: str) -> str:
    """A downward API fieldRef's value as a volume file holds it."""
    meta = pod["metadata"]
    if path == "metadata.labels":
        return _labels(meta.get("labels") or {})
    if path == "metadata.annotations":
        return _labels(meta.get("annotations") or {})
    for prefix, d in (("metadata.labels['", meta.get("labels")), ("metadata.annotations['", meta.get("annotations"))):
        if path.startswith(prefix) and path.endswith("']"):
            return (d or {}).get(path[len(prefix):-2], "")
    simple = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
              "metadata.uid": meta.get("uid", ""), "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
              "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "")}
    if path in simple:
        return simple[path]
    raise VolumeError(f"unsupported fieldPath: {path}")


def node_allocatable() -> dict[str, float]:
    """What a resourceFieldRef of a limit not set reads (upstream: the node's allocatable)."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"cpu": float(os.cpu_count() or 1), "memory": float(pages), "ephemeral-storage": float(
        shutil.disk_usage("/").total)}


def resource_value(pod: dict, ref: dict, default_container: str | None = None) -> str:
    """A resourceFieldRef's value: the container's request or limit over the divisor, rounded up
    (a cpu of 250m with divisor 1 is "1", as upstream)."""
    name = ref.get("containerName") or default_container
    containers = (pod.get("spec") or {}).get("containers") or []
    c = next((c for c in containers if c["name"] == name), None)
    if c is None:
        raise VolumeError(f"container {name!r} not found for resourceFieldRef")
    which, _, resource = ref["resource"].partition(".")
    res = (c.get("resources") or {}).get(which) or {}
    if resource in res:
        value = quantity(res[resource])
    elif which == "requests" and resource in ((c.get("resources") or {}).get("limits") or {}):
        value = quantity(c["resources"]["limits"][resource])
    elif which == "limits":
        value = node_allocatable().get(resource, 0.0)
    else:
        value = 0.0
    divisor = quantity(ref.get("divisor") or "1")
    return str(math.ceil(round(value / divisor, 9)))


def _downward(pod: dict, items: list[dict], default_mode: int, container: str | None = None
              ) -> dict[str, tuple[bytes, int]]:
    out = {}
    for it in items or []:
        if it.get("fieldRef"):
            value = field_value(pod, it["fieldRef"]["fieldPath"])
        elif it.get("resourceFieldRef"):
            value = resource_value(pod, it["resourceFieldRef"], container)
        else:
            continue
        out[it["path"]] = (value.encode(), it.get("mode", default_mode))
    return out


def _token(source: TokenSource, audience: str | None, expiration: int) -> str:
    return source(audience, expiration) if callable(source) else source


def payload(pod: dict, volume: dict, configmaps: dict[str, dict], secrets: dict[str, dict],
            token: TokenSource, ca: bytes) -> dict[str, tuple[bytes, int]] | None:
    """The files of a volume the atomic writer writes; None for other kinds."""
    ns = pod["metadata"]["namespace"]
    if "configMap" in volume:
        ref = volume["configMap"]
        return _keyed("configmap", configmaps.get(ref.get("name", "")), ref, ref.get("name", ""),
                      ref.get("defaultMode", DEFAULT_MODE), ns)
    if "secret" in volume:
        ref = volume["secret"]
        return _keyed("secret", secrets.get(ref.get("secretName", "")), ref, ref.get("secretName", ""),
                      ref.get("defaultMode", DEFAULT_MODE), ns)
    if "downwardAPI" in volume:
        d = volume["downwardAPI"]
        return _downward(pod, d.get("items") or [], d.get("defaultMode", DEFAULT_MODE))
    if "projected" in volume:
        proj = volume["projected"]
        mode = proj.get("defaultMode", DEFAULT_MODE)
        out: dict[str, tuple[bytes, int]] = {}
        for src in proj.get("sources") or []:
            if "serviceAccountToken" in src:
                t = src["serviceAccountToken"]
                out[t["path"]] = (_token(token, t.get("audience"), int(t.get("expirationSeconds", 3600))).encode(),
                                  0o600 if proj.get("defaultMode") is None else mode)
            elif "configMap" in src:
                ref = src["configMap"]
                out.update(_keyed("configmap", configmaps.get(ref.get("name", "")), ref, ref.get("name", ""), mode, ns))
            elif "secret" in src:
                ref = src["secret"]
                out.update(_keyed("secret", secrets.get(ref.get("name", "")), ref, ref.get("name", ""), mode, ns))
            elif "downwardAPI" in src:
                out.update(_downward(pod, src["downwardAPI"].get("items") or [], mode))
            elif "clusterTrustBundle" in src:
                raise VolumeError("clusterTrustBundle projections are not supported")
        return out
    return None


def service_account(pod: dict, where: PodLayout, token: TokenSource, ca: bytes) -> Path | None:
    """The pod's service account files (token, ca.crt, namespace), unless it opts out with
    automountServiceAccountToken: false; mounted at /var/run/secrets/kubernetes.io/serviceaccount as
    upstream's kube-api-access projected volume is."""
    if (pod.get("spec") or {}).get("automountServiceAccountToken") is False:
        return None
    files = {"token": (_token(token, None, 3607).encode(), DEFAULT_MODE), "ca.crt": (ca, DEFAULT_MODE),
             "namespace": (pod["metadata"]["namespace"].encode(), DEFAULT_MODE)}
    write_payload(where.service_account, files)
    return where.service_account


# --- hostPath ----------------------------------------------------------------------------------

def host_path(spec: dict) -> Source:
    """A hostPath volume, checked (or made) per its type, with upstream's messages."""
    path, kind = spec["path"], spec.get("type") or ""
    p = Path(path)
    if kind == "DirectoryOrCreate" and not p.exists():
        p.mkdir(mode=0o755, parents=True)
    elif kind == "FileOrCreate" and not p.exists():
        if not p.parent.is_dir():
            raise VolumeError(f"hostPath type check failed: {path} is not a file: its directory does not exist")
        p.touch(mode=0o644)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    checks = {"Directory": (stat.S_ISDIR, "is not a directory"), "DirectoryOrCreate": (stat.S_ISDIR, "is not a directory"),
              "File": (stat.S_ISREG, "is not a file"), "FileOrCreate": (stat.S_ISREG, "is not a file"),
              "Socket": (stat.S_ISSOCK, "is not a socket file"),
              "CharDevice": (stat.S_ISCHR, "is not a character device"),
              "BlockDevice": (stat.S_ISBLK, "is not a block device")}
    if kind and kind not in checks:
        raise VolumeError(f"hostPath type check failed: unknown type {kind!r}")
    if kind and not checks[kind][0](mode):
        raise VolumeError(f"hostPath type check failed: {path} {checks[kind][1]}")
    return Source(path=p, devices=kind in ("CharDevice", "BlockDevice"))


# --- the pod's volumes and a container's mounts --------------------------------------------------

def memory_limit(pod: dict) -> int | None:
    """The pod's memory limit: the sum of its containers' limits, if every one has one."""
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        lim = ((c.get("resources") or {}).get("limits") or {}).get("memory")
        if lim is None:
            return None
        total += int(quantity(lim))
    return total or None


def tmpfs_volumes(pod: dict) -> list[dict]:
    """The pod's memory-backed emptyDirs, each {name, options} for the pause process to hold."""
    out = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        e = v.get("emptyDir")
        if e is not None and e.get("medium") == "Memory":
            size = int(quantity(e["sizeLimit"])) if e.get("sizeLimit") else memory_limit(pod)
            out.append({"name": v["name"], "options": "mode=1777" + (f",size={size}" if size else "")})
    return out


def claim_source(volume: dict, claim: dict | str | None, name: str) -> Source:
    """A persistentVolumeClaim volume: `claim` is the bound PersistentVolume's spec, or why there
    is none (the kubelet's words)."""
    if claim is None:
        raise VolumeError(f'persistentvolumeclaim "{name}" not found')
    if isinstance(claim, str):
        raise VolumeError(claim)
    read_only = bool((volume.get("persistentVolumeClaim") or {}).get("readOnly"))
    if claim.get("hostPath"):
        return Source(path=host_path(claim["hostPath"]).path, read_only=read_only)
    if claim.get("local"):
        path = Path(claim["local"]["path"])
        if not path.is_dir():
            raise VolumeError(f"path {path} does not exist")
        return Source(path=path, read_only=read_only)
    raise VolumeError("the PersistentVolume's type is not supported on this node (hostPath, local)")


def prepare(pod: dict, where: PodLayout, configmaps: dict[str, dict], secrets: dict[str, dict],
            token: TokenSource, ca: bytes, fs_group: int | None = None,
            claims: dict[str, dict | str] | None = None) -> dict[str, Source]:
    """Set up (or bring up to date) each of the pod's volumes on the node; raises VolumeError with
    upstream's `MountVolume.SetUp failed for volume "v" : ...` message for the first that cannot be."""
    out: dict[str, Source] = {}
    for v in (pod.get("spec") or {}).get("volumes") or []:
        name = v["name"]
        try:
            files = payload(pod, v, configmaps, secrets, token, ca)
            if files is not None:
                write_payload(where.volume(name), files, fs_group)
                out[name] = Source(path=where.volume(name), read_only=True)
            elif "emptyDir" in v:
                if (v["emptyDir"] or {}).get("medium") == "Memory":
                    out[name] = Source(tmpfs=name)
                else:
                    d = where.volume(name)
                    d.mkdir(parents=True, exist_ok=True)
                    os.chmod(d, 0o777)  # as upstream makes an emptyDir: any user of the pod writes there
                    if fs_group is not None:
                        os.chown(d, -1, fs_group)
                    out[name] = Source(path=d)
            elif "hostPath" in v:
                out[name] = host_path(v["hostPath"])
            elif "persistentVolumeClaim" in v:
                claim = (v["persistentVolumeClaim"] or {}).get("claimName", "")
                out[name] = claim_source(v, (claims or {}).get(claim), claim)
        except VolumeError as e:
            raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {e}') from None
    return out


def expand(value: str, env: dict[str, str]) -> str:
    """$(VAR) in a subPathExpr, from the container's environment."""
    out, i = "", 0
    while i < len(value):
        if value.startswith("$(", i) and ")" in value[i:]:
            j = value.index(")", i)
            out += env.get(value[i + 2:j], "")
            i = j + 1
        else:
            out += value[i]
            i += 1
    return out


def container_mounts(container: dict, sources: dict[str, Source], env: dict[str, str],
                     pause_pid: int | None) -> tuple[list[dict], list[str]]:
    """The container's volumeMounts as the runtime's mounts ({source, destination, readOnly,
    devices} or a pod tmpfs {tmpfs, destination}); what cannot be mounted comes back as problems."""
    mounts: list[dict] = []
    problems: list[str] = []
    for m in container.get("volumeMounts") or []:
        src = sources.get(m["name"])
        dst = "/" + m["mountPath"].strip("/")
        if src is None:
            problems.append(f"volume {m['name']!r} is not defined or its type is not supported (configMap, secret, "
                            "projected, downwardAPI, emptyDir, hostPath, persistentVolumeClaim)")
            continue
        sub = m.get("subPath") or (expand(m["subPathExpr"], env) if m.get("subPathExpr") else "")
        if sub and (sub.startswith("/") or ".." in Path(sub).parts):
            problems.append(f"subPath {sub!r} must be a relative path without '..'")
            continue
        read_only = bool(m.get("readOnly")) or src.read_only
        if src.tmpfs is not None:
            if pause_pid is None:
                problems.append(f"volume {m['name']!r}: the pod's sandbox is not running")
                continue
            mounts.append({"tmpfs": src.tmpfs, "sub": sub, "destination": dst, "readOnly": read_only,
                           "pause": pause_pid})
            continue
        path = src.path / sub if sub else src.path
        if sub and not path.exists() and not src.read_only:  # upstream makes a missing subPath directory
            path.mkdir(parents=True, exist_ok=True)
        mounts.append({"source": str(path), "destination": dst, "readOnly": read_only, "devices": src.devices})
    return mounts, problems
