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

A container's stdout and stderr are pipes (with `tty`, a terminal) to a log relay of its own
(relay.py: conmon, or containerd's shim, on a real node), a fork that writes its log and serves
its attach socket, holding its stdin open with `stdin`.

One request per connection, JSON both ways (runtime.start_pause and container_request make them):
    {"netns": path|null, "pidns": "new"|"host"|path, "ipc": "new"|path|null, "uts": "new"|path|null,
     "hostname": name|null, "cgroup": path|null, "resources": {"memory", "cpuQuota", "cpuShares"},
     "root": {"scratch", "hide", "keep", "mounts", "cwd", "readOnly", "privileged"} | {"scratch", "empty", "tmpfs"},
     "security": {"caps", "uid", "gid", "groups", "noNewPrivs"}, "pause": bool,
     "stdin": bool, "stdinOnce": bool, "tty": bool, "attach": socket path (the relay serves attach there),
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
import termios
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import setproctitle

from netlab.kit import cgroups
from netlab.node.kubelet import sandbox
from netlab.node.kubelet.relay import Relay
from netlab.node.kubelet.relay import run as run_relay
from netlab.node.kubelet.runtime import proc_start
from netlab.node.workloads import builtin_args, programs  # loaded once here: every container's fork has them

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def _child(req: dict, report: int, stdio: tuple | None) -> None:
    """In the forked child (already in its PID namespace): become the pause or container process
    (sandbox.enter), its stdin, stdout and stderr the relay's pipes (`stdio`; no stdin: /dev/null),
    a terminal (("pty", socket): its master goes back through the socket) or the log file itself.
    Never returns."""
    code = 127
    try:
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        null = os.open(os.devnull, os.O_RDONLY)  # opened on the host's side: the root changes below
        if stdio is None:
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            stdio = (None, log, log)
        sandbox.enter(req)
        os.chdir(req.get("cwd") or "/")
        if stdio[0] == "pty":  # in the container's own /dev/pts, as the container's user, as runc's console
            master, slave = sandbox.open_pty()
            socket.send_fds(socket.socket(fileno=stdio[1]), [b"pty"], [master])
            os.close(master)
            stdio = (slave, slave, slave)
        os.dup2(null if stdio[0] is None else stdio[0], 0)
        os.dup2(stdio[1], 1)
        os.dup2(stdio[2], 2)
        if req.get("tty"):  # the terminal is the container's controlling terminal
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
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


@dataclass
class Pending:
    """A child forked, its program not yet executed: `report` is readable at its exec (EOF) or once
    it says why it could not start."""
    pid: int
    started: int | None
    report: int
    relay: Relay | None
    mine: list[int]
    pty: socket.socket | None
    answer: Callable[[dict], None] | None = None
    said: bytes = b""


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

    def start(self, req: dict) -> dict | Pending:
        """Fork the child; the answer comes with finish(), once the child has executed its program
        (the child's setup, a cgroup join's wait among it, does not hold the spawner up)."""
        cgroup = req.get("cgroup") or ""
        if cgroup:  # made, with its limits, before the child joins it
            res = req.get("resources") or {}
            cgroups.create(cgroup, memory=res.get("memory"), cpu_quota=res.get("cpuQuota"),
                           cpu_shares=res.get("cpuShares"))
            if req.get("pause"):  # the pod's ancestors (node, lab, netlab): the kubepods weight of a node
                for parent in list(Path(cgroup).parents)[1:-1]:  # this machine's CPUs, as its allocatable
                    cgroups.share_cpu(str(parent), os.cpu_count() or 1)
        cri = req.get("logFormat") == "cri"
        mine: list[int] = []  # the spawner's ends, closed once the relay has them
        theirs: list[int] = []  # the child's ends, closed here once it has them
        stdio = relay = None
        pty_here = None
        if cri:  # the log, locked for the relay before anyone can see the container started
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            _lock(log)
            if req.get("tty"):  # a terminal the child opens in its own /dev/pts, its master sent back here
                pty_here, pty_there = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
                there = pty_there.detach()
                stdio, mine, theirs = ("pty", there, 0), [log], [there]
                relay = Relay({}, log, stdin_once=bool(req.get("stdinOnce")))
            else:
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                in_r = in_w = None
                if req.get("stdin"):  # held open by the relay, written by attach clients
                    in_r, in_w = os.pipe2(os.O_CLOEXEC)
                stdio = (in_r, out_w, err_w)
                mine = [out_r, err_r, log, *([in_w] if in_w is not None else [])]
                theirs = [out_w, err_w, *([in_r] if in_r is not None else [])]
                relay = Relay({out_r: b"stdout", err_r: b"stderr"}, log, stdin=in_w,
                              stdin_once=bool(req.get("stdinOnce")))
            if req.get("attach"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(req["attach"])
                os.makedirs(os.path.dirname(req["attach"]), exist_ok=True)
                relay.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                relay.listener.bind(req["attach"])
                relay.listener.listen(8)
        r, w = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            self._pid_namespace(req.get("pidns"))
            pid = os.fork()
        except OSError as e:
            for fd in (r, w, *mine, *theirs):
                os.close(fd)
            if relay is not None and relay.listener is not None:
                relay.listener.close()
            self._pid_namespace(None)
            return {"error": _why(e)}
        if pid == 0:
            os.close(r)
            _child(req, w, stdio)
        self._pid_namespace(None)  # the log relay and everything after in the spawner's own
        os.close(w)
        for fd in theirs:
            os.close(fd)
        # its status is reported from now on, however soon it ends (a failed start's is not read)
        self.exits[pid] = (req.get("exit") or "", cgroup)
        return Pending(pid, proc_start(pid), r, relay, mine, pty_here if req.get("tty") else None)

    def finish(self, p: Pending, error: str) -> dict:
        """The child has executed its program (or failed to, saying why): its log relay, and the answer."""
        if p.pty is not None:
            p.pty.setblocking(False)
            try:
                _, fds, _, _ = socket.recv_fds(p.pty, 16, 1)
            except OSError:
                fds = []
            p.pty.close()
            if fds:
                p.relay.streams, p.relay.partial, p.relay.tty = {fds[0]: b"stdout"}, {fds[0]: b""}, fds[0]
                p.mine.append(fds[0])
            elif not error:
                error = "the container's terminal did not come back"
        if p.relay is not None:
            if not error:
                child = os.fork()
                if child == 0:
                    run_relay(p.relay, {*p.mine, *([p.relay.listener.fileno()] if p.relay.listener else [])})
                self.exits[child] = ("", "")  # reaped without a report
            for fd in p.mine:
                os.close(fd)
            if p.relay.listener is not None:
                p.relay.listener.close()
        if error:
            if p.pid in self.exits:
                self.exits[p.pid] = ("", self.exits[p.pid][1])  # it never started: no status to report
            return {"error": error}
        return {"pid": p.pid, "started": p.started}

    def run(self, req: dict) -> dict:
        """start and finish, waiting for the child (for callers without an event loop)."""
        p = self.start(req)
        if isinstance(p, dict):
            return p
        with os.fdopen(p.report, "rb") as f:
            error = f.read().decode(errors="replace")
        return self.finish(p, error)

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
                    _answer(spawner, srv, sel)
                elif isinstance(key.data, Pending):
                    p = key.data
                    chunk = os.read(p.report, 65536)
                    if chunk:
                        p.said += chunk
                        continue
                    sel.unregister(p.report)
                    os.close(p.report)
                    p.answer(spawner.finish(p, p.said.decode(errors="replace")))
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


def _answer(spawner: Spawner, srv: socket.socket, sel: selectors.BaseSelector) -> None:
    try:
        conn, _ = srv.accept()
    except OSError:
        return
    conn.settimeout(5)

    def answer(reply: dict) -> None:
        with conn, contextlib.suppress(OSError):
            conn.sendall(json.dumps(reply).encode())
    try:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    except OSError:
        conn.close()
        return
    try:
        out = spawner.start(json.loads(data))
    except (ValueError, KeyError, TypeError, OSError) as e:
        out = {"error": f"bad request: {e}"}
    if isinstance(out, Pending):  # answered once the child has executed its program
        out.answer = answer
        sel.register(out.report, selectors.EVENT_READ, out)
    else:
        answer(out)


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
