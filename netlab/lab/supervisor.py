"""One supervisor process per lab: starts the lab's components, restarts a crashed one with
backoff, keeps each one's log, and stops them all when the lab goes down.

It reads the components to run from the state directory's components.json (written by `up` from
netlab.lab.components), records in status.json how each one is doing and its process (pid and
start time: together they tell it from a later process that got the same pid), and its own in
supervisor.pid, a file it holds a lock on while it runs (so one runs per lab). Every process it
starts carries NETLAB_LAB=<lab> in its environment, which is how `down` finds them after a
SIGKILL of the supervisor.

The supervisor's death is survivable. Components run in sessions of their own and keep serving;
a supervisor started again adopts those still running (by pid and start time, from status.json:
it cannot wait() for processes it did not start, so it watches them through pidfds) and starts
the others. What starts it again is `supervisor-watchdog`, the first of the lab's components
(this module with --watchdog): when the supervisor it watches dies without having stopped the lab
(a clean stop removes the pid file, and `down` writes going-down first), it starts a new one.
The supervisor restarts the watchdog like any component, so either may die alone.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time

from netlab.kit import net, pace
from netlab.kit.cluster import Cluster
from netlab.kit.layout import Layout

LAB_ENV = "NETLAB_LAB"
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
HEALTHY_AFTER = 10.0  # a component that ran this long has its backoff reset
STOP_GRACE = 5.0      # SIGTERM, then SIGKILL after this many seconds
WATCHDOG = "supervisor-watchdog"


@dataclasses.dataclass
class Component:
    name: str
    argv: list[str]
    netns: str | None = None           # the namespace it runs in (None: the host's)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    after: str | None = None           # a file that must exist before its first start (a readiness mark)


def watchdog(lab: str) -> Component:
    """The component that starts a new supervisor when the lab's dies."""
    return Component(WATCHDOG, [sys.executable, "-m", "netlab.lab.supervisor", "--lab", lab, "--watchdog"])


# --- processes, told apart by pid and start time -------------------------------------------------

def proc_start(pid: int) -> int | None:
    """When the process started (clock ticks after boot), or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def same_process(pid: int | None, started: int | None) -> bool:
    """`pid` is still the process that started at `started`."""
    return pid is not None and started is not None and proc_start(pid) == started


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent (PID 1, once `up` has exited) to reap it."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return proc_start(pid) is not None


def _is_lab_process(pid: int, lab: str) -> bool:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/environ", "rb") as f:
        return f"{LAB_ENV}={lab}".encode() in f.read().split(b"\0")
    return False


# --- the supervisor seen from outside ------------------------------------------------------------

def write_components(lab: str, components: list[Component]) -> None:
    path = Layout(lab).components
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([dataclasses.asdict(c) for c in components], indent=2))


def start(cluster: Cluster, components: list[Component]) -> int:
    """Start the lab's supervisor with `components` as a daemon and return its pid."""
    write_components(cluster.name, components)
    return spawn(cluster.name)


def spawn(lab: str, timeout: float = 10) -> int:
    """Start a supervisor for the lab's components.json (adopting what still runs) and return its
    pid once it has taken its pid file, or raise why it did not."""
    layout = Layout(lab)
    layout.logs.mkdir(parents=True, exist_ok=True)
    with open(layout.log("supervisor"), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "netlab.lab.supervisor", "--lab", lab],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, LAB_ENV: lab},
        )
    # the supervisor writes its pid file once it has read its components: wait for that, so that
    # `up` returns with the supervisor running (or says why it is not)
    end = time.monotonic() + pace.scaled(timeout)
    while time.monotonic() < end:
        if supervisor_pid(lab) == proc.pid:
            return proc.pid
        if proc.poll() is not None:
            raise RuntimeError(f"the lab supervisor exited ({proc.returncode}); see {layout.log('supervisor')}")
        time.sleep(0.01)
    raise RuntimeError(f"the lab supervisor did not start; see {layout.log('supervisor')}")


def _pidfile(lab: str) -> tuple[int, int | None] | None:
    """The pid (and start time) the pid file records."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Layout(lab).supervisor_pid.read_text().split()
        return int(fields[0]), int(fields[1]) if len(fields) > 1 else None
    return None


def supervisor_pid(lab: str) -> int | None:
    """The pid of the lab's supervisor, if one runs."""
    recorded = _pidfile(lab)
    if recorded is None:
        return None
    pid, started = recorded
    if (started is None and alive(pid) or same_process(pid, started)) and _is_lab_process(pid, lab):
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


def read_status(lab: str) -> list[dict] | None:
    """Each component's name, pid, state, restarts, lastExit and netns, as running processes
    show them, not only as last recorded: a pid that is no longer the component's process (it
    exited, or the pid was reused) is none, and without a supervisor no component is starting or
    in backoff. None if the lab never had a supervisor."""
    try:
        rows = json.loads(Layout(lab).status.read_text())
    except (OSError, ValueError):
        return None if supervisor_pid(lab) is None else []
    supervised = supervisor_pid(lab) is not None
    out = []
    for r in rows:
        r = dict(r)
        if r.get("pid") and not same_process(r["pid"], r.get("started")):
            r["pid"], r["state"] = None, "exited"
        elif not supervised:
            r["state"] = "running" if r.get("pid") else "stopped"
        out.append(r)
    return out


# --- the supervisor ------------------------------------------------------------------------------

@dataclasses.dataclass
class _Running:
    spec: Component
    proc: subprocess.Popen | None = None  # a process this supervisor started (and reaps)
    pid: int | None = None                # the running process: started here, or adopted
    started: int | None = None            # its start time
    pidfd: int | None = None              # an adopted process: readable once it has exited
    state: str = "starting"
    restarts: int = 0
    since: float = 0.0                    # when it was started (monotonic)
    backoff: float = BACKOFF_START
    next_start: float = 0.0
    last_exit: int | None = None


class Supervisor:
    def __init__(self, lab: str):
        self.lab = lab
        self.layout = Layout(lab)
        self.components = [_Running(Component(**c)) for c in json.loads(self.layout.components.read_text())]
        self.stopping = False
        self.lock: int | None = None

    def run(self) -> None:
        if self.layout.going_down.exists():
            return  # `down` is under way: nothing to supervise
        self.lock = os.open(self.layout.supervisor_pid, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another supervisor runs for lab {self.lab} (pid {supervisor_pid(self.lab)})", flush=True)
            return
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self._adopt()
        me = os.getpid()
        line = f"{me} {proc_start(me)}\n".encode()
        os.pwrite(self.lock, line, 0)  # then cut what is left of an older line: never an empty file
        os.ftruncate(self.lock, len(line))
        try:
            while not self.stopping:
                self._turn(time.monotonic())
                time.sleep(0.05)
        finally:
            self._stop_all()
            with contextlib.suppress(FileNotFoundError):
                self.layout.supervisor_pid.unlink()  # a clean stop: the watchdog starts no other

    def _turn(self, now: float) -> None:
        changed = False
        adopted = [c for c in self.components if c.pidfd is not None]
        ended = set(select.select([c.pidfd for c in adopted], [], [], 0)[0]) if adopted else set()
        for c in self.components:
            if c.pid is None:
                if now >= c.next_start and (c.spec.after is None or c.restarts or os.path.exists(c.spec.after)):
                    self._start(c)
                    changed = True
            elif (c.proc is not None and c.proc.poll() is not None) or (c.pidfd is not None and c.pidfd in ended):
                self._exited(c, now)
                changed = True
            elif c.state == "starting" and now - c.since > 1:
                c.state = "running"
                changed = True
        if changed:
            self._write_status()

    def _adopt(self) -> None:
        """Take over the components an earlier supervisor started that still run."""
        with contextlib.suppress(OSError, ValueError):
            rows = {r["name"]: r for r in json.loads(self.layout.status.read_text())}
            now = time.monotonic()
            for c in self.components:
                r = rows.get(c.spec.name)
                if r is None:
                    continue
                c.restarts, c.last_exit = r.get("restarts", 0), r.get("lastExit")
                pid, started = r.get("pid"), r.get("started")
                if not same_process(pid, started):
                    if pid:  # it ended while no supervisor watched: a restart like any other
                        c.restarts += 1
                        self._log(c, "--- exited while no supervisor ran")
                    continue
                try:
                    fd = os.pidfd_open(pid)
                except OSError:
                    continue
                if not same_process(pid, started):  # ended (and the pid was reused) meanwhile
                    os.close(fd)
                    continue
                c.pid, c.started, c.pidfd, c.state, c.since = pid, started, fd, "running", now - HEALTHY_AFTER
                self._log(c, f"--- adopted pid {pid} (a new supervisor)")
        self._write_status()

    def _on_term(self, *_):
        self.stopping = True

    def _log(self, c: _Running, line: str) -> None:
        with contextlib.suppress(OSError), open(self.layout.log(c.spec.name), "ab") as log:
            log.write(f"{line}\n".encode())

    def _start(self, c: _Running) -> None:
        log = open(self.layout.log(c.spec.name), "ab")
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {' '.join(c.spec.argv)}\n".encode())
        log.flush()
        try:
            c.proc = net.popen(c.spec.netns, c.spec.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                               start_new_session=True, env={**os.environ, **c.spec.env, LAB_ENV: self.lab})
            c.pid, c.started = c.proc.pid, proc_start(c.proc.pid)
            c.state, c.since = "starting", time.monotonic()
        except (OSError, subprocess.SubprocessError) as e:
            log.write(f"--- cannot start: {e}\n".encode())
            c.proc, c.pid, c.state, c.last_exit = None, None, "failed", None
            self._schedule_restart(c, time.monotonic())
        finally:
            log.close()

    def _exited(self, c: _Running, now: float) -> None:
        if c.proc is not None:
            c.last_exit = c.proc.returncode
            self._log(c, f"--- exited with {c.last_exit}")
        else:  # adopted: not our child, so its exit status went to whoever reaped it
            c.last_exit = None
            os.close(c.pidfd)
            self._log(c, "--- exited")
        c.proc, c.pid, c.started, c.pidfd = None, None, None, None
        if now - c.since >= HEALTHY_AFTER:
            c.backoff = BACKOFF_START
        c.restarts += 1
        c.state = "backoff"
        self._schedule_restart(c, now)

    def _schedule_restart(self, c: _Running, now: float) -> None:
        c.next_start = now + c.backoff
        c.backoff = min(c.backoff * 2, BACKOFF_MAX)

    def _running(self, c: _Running) -> bool:
        return c.proc.poll() is None if c.proc is not None else same_process(c.pid, c.started)

    def _stop_all(self) -> None:
        live = [c for c in self.components if c.pid is not None and self._running(c)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for c in live:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.pid, sig)  # its own session: the component and what it forked
            end = time.monotonic() + (STOP_GRACE if sig == signal.SIGTERM else 2)
            while time.monotonic() < end and any(self._running(c) for c in live):
                time.sleep(0.02)
            live = [c for c in live if self._running(c)]
        for c in self.components:
            if c.pidfd is not None:
                os.close(c.pidfd)
            c.proc, c.pid, c.started, c.pidfd, c.state = None, None, None, None, "stopped"
        self._write_status()

    def _write_status(self) -> None:
        rows = [{"name": c.spec.name, "pid": c.pid, "started": c.started, "state": c.state,
                 "restarts": c.restarts, "lastExit": c.last_exit, "netns": c.spec.netns}
                for c in self.components]
        tmp = self.layout.status.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=2))
        tmp.replace(self.layout.status)


# --- the watchdog --------------------------------------------------------------------------------

def watch(lab: str) -> None:
    """Until the lab stops: whenever its supervisor dies without having stopped it, start a new
    one (which adopts the running components, this watchdog among them)."""
    layout = Layout(lab)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    delay = BACKOFF_START
    while True:
        recorded = _pidfile(lab)
        if recorded is None or layout.going_down.exists():
            return  # stopped cleanly (no pid file), or going down
        pid, started = recorded
        if same_process(pid, started):
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                if same_process(pid, started):
                    select.select([fd], [], [])  # until it exits
            finally:
                os.close(fd)
            alive(pid)  # reaps it if it was ours (one this watchdog started)
            time.sleep(0.05)  # a clean stop removes the pid file just after the components stopped
            continue
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} the supervisor (pid {pid}) is gone: starting a new one",
              flush=True)
        try:
            spawn(lab)
            delay = BACKOFF_START
        except RuntimeError as e:
            print(e, flush=True)
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m netlab.lab.supervisor")
    p.add_argument("--lab", required=True)
    p.add_argument("--watchdog", action="store_true", help="start a new supervisor whenever the lab's dies")
    args = p.parse_args(argv)
    if args.watchdog:
        watch(args.lab)
    else:
        Supervisor(args.lab).run()


if __name__ == "__main__":
    main()
