"""Control groups, the one place that reads and writes them: a lab's processes in a tree of its own
(`netlab/<lab>/<node>/pod<uid>/<container>`, names from layout.py), each pod's limits, and a kill of
a whole subtree (what `netlab down` and a pod's teardown do, so nothing a pod forked outlives it).

Both kinds of hierarchy, as the kubelet supports both: cgroup v2 (one hierarchy, `memory.max`,
`cpu.max`, `cgroup.kill`) where its memory controller is there, else cgroup v1 (one hierarchy per
controller: memory, cpu, pids, freezer). Paths are relative to each hierarchy's root, where the
kubelet's cgroupfs driver puts its `kubepods` too. Where no hierarchy can be written (a machine without
cgroups, a container that cannot make them), everything here is a no-op and `available()` says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
V2_CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD = 100_000  # µs, the kubelet's CFS period


@dataclass(frozen=True)
class Hierarchy:
    root: Path
    version: int
    controllers: tuple[str, ...]


def _mounts(mountinfo: str) -> list[tuple[str, str, list[str]]]:
    """(mount point, fs type, super options) of each cgroup mount in a mountinfo text."""
    out = []
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        fields, rest = pre.split(), post.split()
        if len(fields) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
            out.append((fields[4].replace("\\040", " "), rest[0], rest[2].split(",")))
    return out


def detect(mountinfo: str) -> list[Hierarchy]:
    """The hierarchies to use: cgroup v2 alone if it has the memory controller, else the v1 ones."""
    mounts = _mounts(mountinfo)
    for point, fstype, _ in mounts:
        if fstype == "cgroup2":
            with contextlib.suppress(OSError):
                have = (Path(point) / "cgroup.controllers").read_text().split()
                if "memory" in have:
                    return [Hierarchy(Path(point), 2, tuple(c for c in V2_CONTROLLERS if c in have))]
    out: dict[str, Hierarchy] = {}
    for point, fstype, opts in mounts:
        mine = tuple(c for c in V1_CONTROLLERS if c in opts)
        if fstype == "cgroup" and mine and point not in out:
            out[point] = Hierarchy(Path(point), 1, mine)
    return list(out.values())


@cache
def hierarchies() -> tuple[Hierarchy, ...]:
    try:
        return tuple(detect(Path("/proc/self/mountinfo").read_text()))
    except OSError:
        return ()


def available() -> bool:
    return bool(hierarchies())


def version() -> int | None:
    h = hierarchies()
    return h[0].version if h else None


def _write(path: Path, value: str) -> bool:
    try:
        with open(path, "w") as f:
            f.write(value)
        return True
    except OSError:
        return False


def create(path: str, memory: int | None = None, cpu_quota: int | None = None, cpu_shares: int | None = None) -> None:
    """Make the cgroup (and its parents) in every hierarchy, with its limits: `memory` in bytes (the
    container is OOM-killed past it), `cpu_quota` in µs per 100 ms period (cpu.max), `cpu_shares`
    (cpu.weight on v2, converted as runc converts it)."""
    for h in hierarchies():
        d = h.root / path
        if h.version == 2:  # the controllers reach a cgroup through each ancestor's subtree_control
            enable = " ".join(f"+{c}" for c in h.controllers)
            parts = Path(path).parts
            for i in range(len(parts)):
                parent = h.root.joinpath(*parts[:i])
                (parent / parts[i]).mkdir(exist_ok=True)
                _write(parent / "cgroup.subtree_control", enable)
        else:
            d.mkdir(parents=True, exist_ok=True)
        if memory is not None and "memory" in h.controllers:
            if h.version == 2:
                _write(d / "memory.max", str(memory))
                _write(d / "memory.swap.max", "0")
                _write(d / "memory.oom.group", "1")  # the kubelet's v2 setting: an OOM kills the container
            else:
                _write(d / "memory.limit_in_bytes", str(memory))
        if "cpu" in h.controllers:
            if cpu_quota is not None:
                if h.version == 2:
                    _write(d / "cpu.max", f"{cpu_quota} {CPU_PERIOD}")
                else:
                    _write(d / "cpu.cfs_period_us", str(CPU_PERIOD))
                    _write(d / "cpu.cfs_quota_us", str(cpu_quota))
            if cpu_shares is not None:
                if h.version == 2:
                    _write(d / "cpu.weight", str(1 + ((max(cpu_shares, 2) - 2) * 9999) // 262142))
                else:
                    _write(d / "cpu.shares", str(max(cpu_shares, 2)))


def share_cpu(path: str, cpus: float) -> None:
    """Give an existing cgroup the CPU weight of `cpus` CPUs (cpu.shares 1024 per CPU; cpu.weight
    converted as runc converts shares), as the kubelet gives its `kubepods` cgroup the node's
    allocatable CPU: without it a whole tree of pods weighs as much as one process of its parent."""
    shares = max(2, int(cpus * 1024))
    for h in hierarchies():
        if "cpu" in h.controllers and (h.root / path).is_dir():
            if h.version == 2:
                _write(h.root / path / "cpu.weight", str(1 + ((shares - 2) * 9999) // 262142))
            else:
                _write(h.root / path / "cpu.shares", str(shares))


def join(path: str, pid: int = 0) -> None:
    """Move a process (0: the caller) into the cgroup in every hierarchy (it must exist)."""
    for h in hierarchies():
        _write(h.root / path / "cgroup.procs", str(pid))


def procs(path: str) -> set[int]:
    """Every process in the cgroup and its descendants."""
    out: set[int] = set()
    for h in hierarchies():
        base = h.root / path
        if not base.is_dir():
            continue
        for d, _, _ in os.walk(base):
            with contextlib.suppress(OSError, ValueError):
                out.update(int(p) for p in Path(d, "cgroup.procs").read_text().split())
    return out


def kill(path: str, timeout: float = 5.0) -> None:
    """SIGKILL everything in the cgroup's subtree, and wait until it is empty: cgroup.kill on v2;
    on v1 the subtree frozen first (so nothing forks between the scan and the kill)."""
    v2 = next((h for h in hierarchies() if h.version == 2), None)
    if v2 is None or not _write(v2.root / path / "cgroup.kill", "1"):
        freezer = next((h for h in hierarchies() if "freezer" in h.controllers), None)
        frozen = freezer is not None and (freezer.root / path).is_dir() and \
            _write(freezer.root / path / "freezer.state", "FROZEN")
        for pid in procs(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if frozen:
            _write(freezer.root / path / "freezer.state", "THAWED")  # a frozen process cannot die
    end = time.monotonic() + timeout
    while (left := procs(path)) and time.monotonic() < end:
        for pid in left:  # what a v1 freezer missed, or a process that came in meanwhile
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def remove(path: str, timeout: float = 5.0) -> None:
    """Kill the subtree's processes, then remove its cgroups, deepest first."""
    if not any((h.root / path).is_dir() for h in hierarchies()):
        return
    kill(path, timeout)
    end = time.monotonic() + timeout
    for h in hierarchies():
        base = h.root / path
        if not base.is_dir():
            continue
        for d, _, _ in sorted(os.walk(base), key=lambda w: -len(w[0])):
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY: a killed process not yet reaped
                    if time.monotonic() > end:
                        break
                    time.sleep(0.01)


def oom_kills(path: str) -> int:
    """How many processes the OOM killer killed in the cgroup (memory.events or memory.oom_control)."""
    for h in hierarchies():
        if "memory" in h.controllers:
            name = "memory.events" if h.version == 2 else "memory.oom_control"
            with contextlib.suppress(OSError, ValueError):
                for line in (h.root / path / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
    return 0


def exists(path: str) -> bool:
    return any((h.root / path).is_dir() for h in hierarchies())
