"""One supervisor process per lab: starts the lab's components, restarts a crashed one with
backoff, keeps each one's log, and stops them all when the lab goes down.

It reads the components to run from `<state>/components.json` (written by `up` from
netlab.lab.components), records their state in `<state>/status.json` for `netlab status`, and its
own pid in `<state>/supervisor.pid`. Every process it starts carries NETLAB_LAB=<lab> in its
environment, which is how `down` finds them after a SIGKILL of the supervisor.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from netlab.kit import net
from netlab.kit.cluster import Cluster, state_dir

LAB_ENV = "NETLAB_LAB"
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
HEALTHY_AFTER = 10.0  # a component that ran this long has its backoff reset
STOP_GRACE = 5.0      # SIGTERM, then SIGKILL after this many seconds


@dataclasses.dataclass
class Component:
    name: str
    argv: list[str]
    netns: str | None = None           # the namespace it runs in (None: the host's)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    after: str | None = None           # a file that must exist before its first start (a readiness mark)


@dataclasses.dataclass
class _Running:
    spec: Component
    proc: subprocess.Popen | None = None
    state: str = "starting"
    restarts: int = 0
    started: float = 0.0
    backoff: float = BACKOFF_START
    next_start: float = 0.0
    last_exit: int | None = None


def logs_dir(lab: str) -> Path:
    """Where each component's log is kept (`<component>.log`)."""
    return state_dir(lab) / "logs"


def _paths(lab: str) -> tuple[Path, Path, Path, Path]:
    d = state_dir(lab)
    return d / "components.json", d / "status.json", d / "supervisor.pid", logs_dir(lab)


def write_components(lab: str, components: list[Component]) -> None:
    spec, _, _, _ = _paths(lab)
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps([dataclasses.asdict(c) for c in components], indent=2))


def start(cluster: Cluster, components: list[Component] | None = None) -> int:
    """Start the lab's supervisor as a daemon and return its pid."""
    from netlab.lab.components import components as lab_components

    lab = cluster.name
    write_components(lab, lab_components(cluster) if components is None else components)
    _, _, pidfile, logs = _paths(lab)
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "netlab.lab.supervisor", "--lab", lab],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, LAB_ENV: lab},
        )
    # The supervisor writes its pid file once it has read its components; wait for it so that
    # `up` returns with the supervisor running (or reports why it is not).
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if pidfile.exists():
            return proc.pid
        if proc.poll() is not None:
            raise RuntimeError(f"the lab supervisor exited ({proc.returncode}); see {logs / 'supervisor.log'}")
        time.sleep(0.01)
    raise RuntimeError(f"the lab supervisor did not start; see {logs / 'supervisor.log'}")


def supervisor_pid(lab: str) -> int | None:
    _, _, pidfile, _ = _paths(lab)
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text())
        with open(f"/proc/{pid}/environ", "rb") as f:
            if f"{LAB_ENV}={lab}".encode() in f.read().split(b"\0"):
                return pid
    return None


def stop(lab: str, timeout: float = STOP_GRACE + 2) -> bool:
    """Ask the supervisor to stop its components and exit; True if one was running."""
    pid = supervisor_pid(lab)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end and alive(pid):
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent (PID 1, once `up` has exited) to reap it."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def read_status(lab: str) -> list[dict] | None:
    """The components' last recorded state: name, pid, state, restarts (None: no supervisor)."""
    _, status, _, _ = _paths(lab)
    if supervisor_pid(lab) is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        return json.loads(status.read_text())
    return []


class Supervisor:
    def __init__(self, lab: str):
        self.lab = lab
        spec, self.status_file, self.pidfile, self.logs = _paths(lab)
        self.components = [_Running(Component(**c)) for c in json.loads(spec.read_text())]
        self.stopping = False

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self.pidfile.write_text(str(os.getpid()))
        try:
            while not self.stopping:
                now = time.monotonic()
                changed = False
                for c in self.components:
                    if c.proc is None and now >= c.next_start and (c.spec.after is None or c.restarts
                                                                   or os.path.exists(c.spec.after)):
                        self._start(c)
                        changed = True
                    elif c.proc is not None and c.proc.poll() is not None:
                        self._exited(c, now)
                        changed = True
                    elif c.proc is not None and c.state == "starting" and now - c.started > 1:
                        c.state = "running"
                        changed = True
                if changed:
                    self._write_status()
                time.sleep(0.05)
        finally:
            self._stop_all()
            with contextlib.suppress(FileNotFoundError):
                self.pidfile.unlink()

    def _on_term(self, *_):
        self.stopping = True

    def _start(self, c: _Running) -> None:
        log = open(self.logs / f"{c.spec.name}.log", "ab")
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {' '.join(c.spec.argv)}\n".encode())
        log.flush()
        try:
            c.proc = net.popen(c.spec.netns, c.spec.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                               start_new_session=True, env={**os.environ, **c.spec.env, LAB_ENV: self.lab})
            c.state, c.started = "starting", time.monotonic()
        except (OSError, subprocess.SubprocessError) as e:
            log.write(f"--- cannot start: {e}\n".encode())
            c.proc, c.state, c.last_exit = None, "failed", None
            self._schedule_restart(c, time.monotonic())
        finally:
            log.close()

    def _exited(self, c: _Running, now: float) -> None:
        c.last_exit = c.proc.returncode
        with open(self.logs / f"{c.spec.name}.log", "ab") as log:
            log.write(f"--- exited with {c.last_exit}\n".encode())
        c.proc = None
        if now - c.started >= HEALTHY_AFTER:
            c.backoff = BACKOFF_START
        c.restarts += 1
        c.state = "backoff"
        self._schedule_restart(c, now)

    def _schedule_restart(self, c: _Running, now: float) -> None:
        c.next_start = now + c.backoff
        c.backoff = min(c.backoff * 2, BACKOFF_MAX)

    def _stop_all(self) -> None:
        live = [c for c in self.components if c.proc is not None]
        for c in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.proc.pid, signal.SIGTERM)
        end = time.monotonic() + STOP_GRACE
        while time.monotonic() < end and any(c.proc.poll() is None for c in live):
            time.sleep(0.02)
        for c in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.proc.pid, signal.SIGKILL)
            c.proc.wait()
            c.proc, c.state = None, "stopped"
        self._write_status()

    def _write_status(self) -> None:
        rows = [{"name": c.spec.name, "pid": c.proc.pid if c.proc else None, "state": c.state,
                 "restarts": c.restarts, "lastExit": c.last_exit, "netns": c.spec.netns}
                for c in self.components]
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=2))
        tmp.replace(self.status_file)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m netlab.lab.supervisor")
    p.add_argument("--lab", required=True)
    args = p.parse_args(argv)
    Supervisor(args.lab).run()


if __name__ == "__main__":
    main()
