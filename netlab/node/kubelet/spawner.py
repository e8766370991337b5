"""The node's process maker, the part of a container runtime that starts a pod's processes and
reports how they ended (containerd and its shims, on a real node).

    python -m netlab.node.kubelet.spawner --socket <state>/nodes/<node>/runtime.sock

It is one single-threaded process per node that has the built-in programs loaded, and starts
each pause and container process as a fork of itself (a zygote): the fork goes into its PID
namespace (set up here before the fork: a new one, the pod's, or the host's), then makes itself
the container (sandbox.py: cgroup, the pod's namespaces, a private root, its privileges) and either
runs a built-in program in place (no interpreter start, no imports: a fork's pages are shared with
this process until written) or executes the command. Starting a Python interpreter per container
was most of a pod's start-up CPU.

Because the children are its own, it is the one that sees them exit: it writes each exit status
(128 + signal for a signalled process, as runtimes report it, and "OOMKilled" if the OOM killer
killed in its cgroup) to the file the kubelet named, so the kubelet knows how a container ended
even across its own restarts; then it removes the container's cgroup with what is left in it.

A container's stdout and stderr are pipes to a log relay of its own (conmon, or containerd's
shim, on a real node): a fork that writes each line to the container's log in the CRI logging
format (`<RFC3339Nano time> stdout|stderr F|P <line>`, what the kubelet serves with timestamps
and sinceSeconds), holds an flock on the log until the container's last writer is gone (so a
reader knows the log is complete), and outlives a restart of the spawner.

One request per connection, JSON both ways (runtime.start_pause and container_request make them):
    {"netns": path|null, "pidns": "new"|"host"|path, "ipc": "new"|path|null, "uts": "new"|path|null,
     "hostname": name|null, "cgroup": path|null, "resources": {"memory", "cpuQuota", "cpuShares"},
     "root": {"scratch", "hide", "keep", "mounts", "cwd", "readOnly", "privileged"} | {"scratch", "empty", "tmpfs"},
     "security": {"caps", "uid", "gid", "groups", "noNewPrivs"}, "pause": bool,
     "argv": [...], "env": {...}, "cwd": "/", "log": path, "logFormat": "cri"|absent (raw), "exit": path}
    -> {"pid": N, "started": ticks} or {"error": "..."}   (runtime.request is the kubelet's side)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import selectors
import shutil
import signal
import socket
import sys
import time
import traceback

import setproctitle

from netlab.kit import cgroups
from netlab.node.kubelet import sandbox
from netlab.node.kubelet.runtime import proc_start
from netlab.node.workloads import builtin_args, programs  # loaded once here: every container's fork has them

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def _child(req: dict, report: int, outputs: tuple[int, int] | None) -> None:
    """In the forked child (already in its PID namespace): become the pause or container process
    (sandbox.enter), its stdout and stderr the relay's pipes (`outputs`) or the log file itself.
    Never returns."""
    code = 127
    try:
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        null = os.open(os.devnull, os.O_RDONLY)  # opened on the host's side: the root changes below
        if outputs is None:
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            outputs = (log, log)
        sandbox.enter(req)
        os.chdir(req.get("cwd") or "/")
        os.dup2(null, 0)
        os.dup2(outputs[0], 1)
        os.dup2(outputs[1], 2)
        os.closerange(3, report)
        os.closerange(report + 1, 1 << 16)
        if req.get("pause"):
            setproctitle.setproctitle("/pause")
            os.close(report)
            sandbox.pause()
        env, argv = req.get("env") or {}, req["argv"]
        program = builtin_args(argv)
        if program is None:
            exe = shutil.which(argv[0], path=env.get("PATH")) if "/" not in argv[0] else argv[0]
            if exe is None:
                raise OSError(f'exec: "{argv[0]}": executable file not found in $PATH')
            os.execve(exe, argv, env)  # closes `report` (close-on-exec): the start succeeded
        # what `ps` shows: the program and its arguments (set before the environment changes: the
        # title takes the memory they share)
        setproctitle.setproctitle(" ".join(program))
        os.environ.clear()
        os.environ.update(env)
        sys.argv = program
        os.close(report)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        # a PID 1 gets only the signals it handles: SIGTERM ends a built-in program as it ended
        # one before (exit status 143), as a Go program's runtime handles it
        signal.signal(signal.SIGTERM, _terminated)
        code = 0
        try:
            programs.main(program)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - a crashing program: its traceback in its log
            traceback.print_exc()
            code = 2
    except BaseException as e:  # noqa: BLE001 - the start failed: say why to the spawner
        try:
            os.write(report, _why(e).encode())
        except OSError:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _terminated(*_) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(128 + signal.SIGTERM)


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror + (f": {e.filename}" if e.filename else "")
    return str(e)


MAX_LINE = 16 * 1024  # a longer line is logged in parts (P), as containerd does


def _stamp(ns: int) -> bytes:
    """RFC3339Nano in UTC, as Go formats it (trailing zeros of the fraction dropped)."""
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + (f".{frac}" if frac else "")
            + "Z").encode()


def _relay(streams: dict[int, bytes], log: int) -> None:
    """In a forked child: copy the container's output pipes (fd -> stream name) to its log in the
    CRI format until every writer is gone, holding the log's flock (taken by the spawner) all along.
    Never returns."""
    try:
        os.setsid()  # not in the spawner's process group: stopping the runtime leaves it running
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        setproctitle.setproctitle("netlab-log-relay")
        keep = {log, *streams}
        for fd in map(int, os.listdir("/proc/self/fd")):
            if fd > 2 and fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)
        partial = dict.fromkeys(streams, b"")
        sel = selectors.DefaultSelector()
        for fd in streams:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                fd = key.fd
                data = os.read(fd, 65536)
                ts, name = _stamp(time.time_ns()), streams[fd]
                if not data:  # the last writer is gone: what is left is a full line, as containerd logs it
                    sel.unregister(fd)
                    lines, partial[fd] = ([partial[fd]] if partial[fd] else []), b""
                else:
                    lines = (partial[fd] + data).split(b"\n")
                    partial[fd] = lines.pop()
                out = [b"%s %s F %s\n" % (ts, name, line) for line in lines]
                while len(partial[fd]) >= MAX_LINE:
                    out.append(b"%s %s P %s\n" % (ts, name, partial[fd][:MAX_LINE]))
                    partial[fd] = partial[fd][MAX_LINE:]
                buf = memoryview(b"".join(out))
                while buf:
                    buf = buf[os.write(log, buf):]
    finally:
        os._exit(0)


def _lock(fd: int, wait: float = 1.0) -> None:
    """The log's exclusive flock, without blocking the spawner on a reader's brief shared lock or on
    an earlier run's relay still draining into the same file (then the log goes unlocked)."""
    end = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > end:
                return
            time.sleep(0.005)


class Spawner:
    def __init__(self):
        self.exits: dict[int, tuple[str, str]] = {}  # child pid -> (the file its exit status goes to, its cgroup)
        self.pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)  # where its own children go

    def _pid_namespace(self, how: str | None) -> None:
        """Where the next fork goes: a new PID namespace ("new": the child is its PID 1), the one at a
        path (the pod's, held by its pause process), or the spawner's own ("host", None)."""
        _check(_libc.setns(self.pidns, sandbox.CLONE_NEWPID), "resetting the PID namespace")
        if how == "new":
            _check(_libc.unshare(sandbox.CLONE_NEWPID), "making a PID namespace")
        elif how and how != "host":
            sandbox.setns(how, sandbox.CLONE_NEWPID, "PID")

    def start(self, req: dict) -> dict:
        cgroup = req.get("cgroup") or ""
        if cgroup:  # made, with its limits, before the child joins it
            res = req.get("resources") or {}
            cgroups.create(cgroup, memory=res.get("memory"), cpu_quota=res.get("cpuQuota"),
                           cpu_shares=res.get("cpuShares"))
        cri = req.get("logFormat") == "cri"
        if cri:  # the log, locked for the relay before anyone can see the container started
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            _lock(log)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
        r, w = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            self._pid_namespace(req.get("pidns"))
            pid = os.fork()
        except OSError as e:
            for fd in (r, w, *((out_r, out_w, err_r, err_w, log) if cri else ())):
                os.close(fd)
            self._pid_namespace(None)
            return {"error": _why(e)}
        if pid == 0:
            os.close(r)
            _child(req, w, (out_w, err_w) if cri else None)
        self._pid_namespace(None)  # the log relay and everything after in the spawner's own
        os.close(w)
        if cri:
            os.close(out_w)
            os.close(err_w)
        started = proc_start(pid)
        with os.fdopen(r, "rb") as f:
            error = f.read().decode(errors="replace")
        if cri:
            if not error:
                relay = os.fork()
                if relay == 0:
                    _relay({out_r: b"stdout", err_r: b"stderr"}, log)
                self.exits[relay] = ("", "")  # reaped without a report
            for fd in (out_r, err_r, log):
                os.close(fd)
        if error:
            self.exits[pid] = ("", cgroup)  # reaped without a report: it never started
            return {"error": error}
        self.exits[pid] = (req.get("exit") or "", cgroup)
        return {"pid": pid, "started": started}

    def reap(self) -> None:
        """Write each ended child's exit status, then reap it: the kubelet sees a process gone only
        once its status is there to read (a zombie is still running to it)."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            path, cgroup = self.exits.pop(info.si_pid, ("", ""))
            if path:
                code = info.si_status if info.si_code == os.CLD_EXITED else 128 + info.si_status
                # OOMKilled, as containerd reports it: the OOM killer killed in the container's cgroup
                reason = " OOMKilled" if cgroup and cgroups.oom_kills(cgroup) else ""
                try:
                    with open(f"{path}.tmp", "w") as f:
                        f.write(f"{code}{reason}\n")
                    os.replace(f"{path}.tmp", path)
                except OSError:  # the pod's directory went with it
                    pass
            os.waitpid(info.si_pid, 0)
            if cgroup:  # the container is gone: so is what it left in its cgroup (a shared PID namespace)
                cgroups.remove(cgroup, timeout=0.5)


def serve(path: str) -> None:
    spawner = Spawner()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: a container's own orphans come back here
    if os.path.exists(path):
        os.unlink(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    srv.bind(path)
    srv.listen(256)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in sel.select():
                if key.fileobj is srv:
                    _answer(spawner, srv)
                else:
                    while True:
                        try:
                            if not os.read(wake_r, 512):
                                break
                        except BlockingIOError:
                            break
            spawner.reap()
    finally:
        os.unlink(path)


def _answer(spawner: Spawner, srv: socket.socket) -> None:
    try:
        conn, _ = srv.accept()
    except OSError:
        return
    with conn:
        conn.settimeout(5)
        try:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            try:
                reply = spawner.start(json.loads(data))
            except (ValueError, KeyError, TypeError, OSError) as e:
                reply = {"error": f"bad request: {e}"}
            conn.sendall(json.dumps(reply).encode())
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m netlab.node.kubelet.spawner", description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", required=True, help="unix socket the kubelet sends start requests to")
    args = p.parse_args(argv)
    try:
        serve(args.socket)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
