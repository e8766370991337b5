"""What a container's securityContext and resources come to, as the kubelet and containerd make
them: the capability set (containerd's default unless privileged or capabilities.add/drop), the
user, groups and no_new_privs, the read-only root, and the cgroup limits. Pure functions of the
pod's spec; sandbox.py applies them in the container's process, `enter_argv` for what exec runs."""

from __future__ import annotations

import re

CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
                "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK",
                "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN",
                "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
                "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND",
                "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")  # by number
# containerd's default set for a non-privileged container
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
                "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")


def _cap(name: str) -> str:
    name = name.upper()
    return name[4:] if name.startswith("CAP_") else name


def capabilities(container: dict, last_cap: int = len(CAPABILITIES) - 1) -> list[str]:
    """The container's capabilities, by name, as containerd computes them: all if privileged;
    else the default set, then add ALL, drop ALL, the other adds, the other drops (unknown names
    are ignored, as runc ignores them)."""
    known = CAPABILITIES[:last_cap + 1]
    sc = container.get("securityContext") or {}
    if sc.get("privileged"):
        return list(known)
    add = [_cap(c) for c in (sc.get("capabilities") or {}).get("add") or []]
    drop = [_cap(c) for c in (sc.get("capabilities") or {}).get("drop") or []]
    caps = set(DEFAULT_CAPS)
    if "ALL" in add:
        caps = set(known)
    if "ALL" in drop:
        caps = set()
    caps |= {c for c in add if c != "ALL"}
    caps -= set(drop)
    return [c for c in known if c in caps]


def _pick(pod: dict, container: dict, field: str):
    """A securityContext field of the container, else of the pod (as upstream merges them)."""
    c = (container.get("securityContext") or {}).get(field)
    return c if c is not None else ((pod.get("spec") or {}).get("securityContext") or {}).get(field)


class ConfigError(Exception):
    """The container's security settings cannot be met (upstream's CreateContainerConfigError)."""


def context(pod: dict, container: dict, last_cap: int = len(CAPABILITIES) - 1) -> dict:
    """The process's security, as the spawner's request carries it: capability numbers, uid, gid,
    supplementary groups, noNewPrivs; the root's readOnly and privileged."""
    sc = container.get("securityContext") or {}
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    uid, gid = _pick(pod, container, "runAsUser"), _pick(pod, container, "runAsGroup")
    if _pick(pod, container, "runAsNonRoot") and not uid:  # every image here runs as root
        meta = pod["metadata"]
        if uid == 0:
            raise ConfigError("container's runAsUser breaks non-root policy (pod: "
                              f'"{meta["name"]}_{meta["namespace"]}({meta["uid"]})", container: {container["name"]})')
        raise ConfigError("container has runAsNonRoot and image will run as root (pod: "
                          f'"{meta["name"]}_{meta["namespace"]}({meta["uid"]})", container: {container["name"]})')
    groups = list(pod_sc.get("supplementalGroups") or [])
    if pod_sc.get("fsGroup") is not None:
        groups.append(pod_sc["fsGroup"])
    names = capabilities(container, last_cap)
    profile = (_pick(pod, container, "seccompProfile") or {}).get("type") or "Unconfined"
    if profile == "Localhost":
        raise ConfigError("seccomp profile type Localhost is not supported by netlab's runtime (RuntimeDefault and "
                          "Unconfined are)")
    return {"caps": [CAPABILITIES.index(c) for c in names], "uid": uid,
            "seccomp": None if sc.get("privileged") or profile != "RuntimeDefault" else "RuntimeDefault",
            "gid": gid if gid is not None else (0 if uid is not None or groups else None),
            "groups": groups if groups or uid is not None or gid is not None else None,
            # allowPrivilegeEscalation: false is what sets no_new_privs (the default lets a process gain)
            "noNewPrivs": sc.get("allowPrivilegeEscalation") is False,
            "privileged": bool(sc.get("privileged")), "readOnly": bool(sc.get("readOnlyRootFilesystem"))}


def enter_argv(sec: dict | None) -> list[str]:
    """setpriv's arguments that give an exec'd command the container's privileges (its capability
    bounding set, user, groups and no_new_privs), run inside the container's namespaces."""
    if not sec or sec.get("privileged"):
        return []
    argv = ["setpriv", "--bounding-set=-all" + "".join(f",+{CAPABILITIES[c].lower()}" for c in sec["caps"]),
            "--inh-caps=-all"]
    if sec.get("gid") is not None:
        argv.append(f"--regid={sec['gid']}")
    if sec.get("groups") is not None:
        argv.append("--groups=" + ",".join(map(str, sec["groups"])) if sec["groups"] else "--clear-groups")
    if sec.get("uid") is not None:
        argv.append(f"--reuid={sec['uid']}")
    if sec.get("noNewPrivs"):
        argv.append("--no-new-privs")
    return [*argv, "--"]


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX = {"": 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def quantity(value: str | int | float) -> float:
    """A resource quantity ("128Mi", "500m", "1.5", "2e3") as a number."""
    if isinstance(value, (int, float)):
        return float(value)
    m = _QUANTITY.match(str(value).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': "
                         f"{value!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


MIN_SHARES, SHARES_PER_CPU, MIN_QUOTA = 2, 1024, 1000


def resources(container: dict) -> dict:
    """The container's cgroup settings, as the kubelet computes them: memory limit in bytes,
    cpu.max quota (µs per 100 ms) from the cpu limit, cpu shares from the cpu request (the limit
    where no request is given, as the API defaults it)."""
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    out: dict = {}
    if "memory" in limits:
        out["memory"] = int(quantity(limits["memory"]))
    if "cpu" in limits:
        out["cpuQuota"] = max(MIN_QUOTA, int(quantity(limits["cpu"]) * 1000) * 100)
    cpu_request = requests.get("cpu", limits.get("cpu"))
    milli = int(quantity(cpu_request) * 1000) if cpu_request is not None else 0
    out["cpuShares"] = max(MIN_SHARES, milli * SHARES_PER_CPU // 1000)
    return out
