"""What a low-level container runtime (runc, crun) does to a process before it becomes the
container, done in the node spawner's forked child (spawner.py) with plain system calls: join the
container's control group, enter or make the pod's namespaces, put a private root together and
pivot into it, then drop privileges. Doing it in the fork keeps what the zygote gives: a built-in
program starts without an interpreter and shares the spawner's memory (docs/images.md says why
this was chosen over crun).

The root (`root` in a start request, see spawner.py), made inside the container's own mount
namespace, so the host sees none of it:
- an overlay whose lower layer is the host's root filesystem (the "image": the host's tools) and
  whose upper layer is a tmpfs of the container's own (its writable layer, gone with it); the
  paths in `hide` (the host's /root, /home, /tmp, /run, the labs' state) are opaque, empty
  directories in it, and `keep` paths under them come back read-only (the Python the built-in
  programs run on);
- a fresh /proc for the container's PID namespace (with upstream's masked and read-only paths),
  a minimal /dev (null, zero, full, random, urandom, tty, pts, shm, mqueue; read-only, so no
  device node can be made there, and every other mount is nodev), /sys read-only;
- the pod's files and volumes bound at their mountPath, any path (the mount point is made in the
  writable layer); the root read-only with `readOnly` (readOnlyRootFilesystem).
Then: capabilities bounded to `security.caps` (containerd's default set unless the pod asks for
others), the user and groups, no_new_privs if asked.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import signal
import socket
import stat
import struct

from netlab.kit import cgroups

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = \
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "armv7l": 218, "ppc64le": 203, "s390x": 217, "riscv64": 41}
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429  # the same number on every architecture
AT_FDCWD, OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH = -100, 1, os.O_CLOEXEC, 4
OLD_ROOT = "/.oldroot"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# upstream's masked and read-only paths of a non-privileged container (containerd's defaults)
MASKED = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src: str | None, dst: str, fstype: str | None, flags: int = 0, options: str | None = None) -> None:
    _check(_libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), flags,
                       options and options.encode()), f"mounting {src or fstype} at {dst}")


def setns(path: str, kind: int, what: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, kind), f"entering the {what} namespace {path}")
    finally:
        os.close(fd)


def unshare(flags: int, what: str) -> None:
    _check(_libc.unshare(flags), f"making the {what} namespace")


def _pivot_root(new: str, old: str) -> None:
    nr = SYS_PIVOT_ROOT.get(platform.machine())
    if nr is None:
        raise OSError(f"pivot_root: unknown system call number on {platform.machine()}")
    _check(_libc.syscall(nr, new.encode(), old.encode()), f"pivot_root to {new}")


def _bind(src: str, dst: str, read_only: bool, flags: int = MS_NOSUID | MS_NODEV, recursive: bool = True) -> None:
    mount(src, dst, None, MS_BIND | (MS_REC if recursive else 0))
    if read_only or flags:  # a bind takes its flags only when remounted
        mount(None, dst, None, MS_REMOUNT | MS_BIND | flags | (MS_RDONLY if read_only else 0))


def _like(path: str, lower: str) -> None:
    """Give a directory made in the upper layer the mode and owner of the lower one it covers."""
    st = os.stat(lower)
    os.chmod(path, stat.S_IMODE(st.st_mode))
    os.chown(path, st.st_uid, st.st_gid)


def _mount_point(dst: str, is_dir: bool) -> None:
    """Make a mount point in the container's root (after the pivot: paths and their symlinks are
    the container's own); a dangling symlink there becomes the file or directory."""
    if os.path.islink(dst) and not os.path.exists(dst):
        os.unlink(dst)
    if is_dir:
        os.makedirs(dst, exist_ok=True)
    elif not os.path.exists(dst):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _overlay(scratch: str, hide: list[str]) -> str:
    """The container's root: the host's root filesystem under a tmpfs writable layer, `hide` paths
    opaque. Returns where it is mounted."""
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    upper, work, root = f"{scratch}/upper", f"{scratch}/work", f"{scratch}/root"
    for d in (upper, work, root):
        os.mkdir(d)
    done: list[str] = []
    for path in hide:
        if os.path.islink(path) or not os.path.isdir(path) or any(path.startswith(d + "/") for d in done):
            continue  # not there, or already under a hidden one
        done.append(path.rstrip("/"))
        made = upper
        for part in path.strip("/").split("/"):
            made += "/" + part
            if not os.path.isdir(made):
                os.mkdir(made)
                _like(made, made[len(upper):])
        os.setxattr(made, "trusted.overlay.opaque", b"y")
    mount("overlay", root, "overlay", MS_NODEV, f"lowerdir=/,upperdir={upper},workdir={work}")
    return root


def _dev(privileged: bool) -> None:
    if privileged:
        _bind(f"{OLD_ROOT}/dev", "/dev", False, MS_NOSUID)
        return
    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        os.mknod(f"/dev/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(f"/dev/{name}", 0o666)
    os.mkdir("/dev/pts")
    mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.symlink("pts/ptmx", "/dev/ptmx")
    os.mkdir("/dev/shm")
    mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    os.mkdir("/dev/mqueue")
    mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")):
        os.symlink(target, f"/dev/{name}")
    mount(None, "/dev", None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_RDONLY)  # no device node made here


def _proc_sys(privileged: bool) -> None:
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | (0 if privileged else MS_RDONLY))
    if cgroups.version() == 2:  # the container's own cgroup as the root (its cgroup namespace)
        mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC |
              (0 if privileged else MS_RDONLY))
    if privileged:
        return
    for path in MASKED:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_RDONLY)
        elif os.path.exists(path):
            mount("/dev/null", path, None, MS_BIND)
    for path in READONLY:
        if os.path.exists(path):
            _bind(path, path, True, MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _pod_tmpfs(pause: int, name: str, sub: str) -> int:
    """A clone of the pause process's tmpfs for volume `name` (a mount cannot be bound from another
    mount namespace, but a detached clone made there can be moved into this one)."""
    own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(f"/proc/{pause}/ns/mnt", CLONE_NEWNS, "pod's mount")
        path = f"/volumes/{name}" + (f"/{sub}" if sub else "")
        os.makedirs(path, exist_ok=True)
        fd = _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
        if fd < 0:
            _check(-1, f"cloning the pod's tmpfs {name}")
        return fd
    finally:
        _check(_libc.setns(own, CLONE_NEWNS), "returning to the runtime's mount namespace")
        os.close(own)


def make_root(root: dict) -> None:
    """In the child, inside a new mount namespace: the container's private root, pivoted into."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here reaches the host
    scratch = root["scratch"]
    os.makedirs(scratch, exist_ok=True)
    if root.get("empty"):  # the pause process needs no files; it holds the pod's memory-backed emptyDirs
        mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
        for v in root.get("tmpfs") or []:
            os.makedirs(f"{scratch}/volumes/{v['name']}")
            mount("tmpfs", f"{scratch}/volumes/{v['name']}", "tmpfs", MS_NOSUID | MS_NODEV, v["options"])
        new = scratch
    else:
        new = _overlay(scratch, root.get("hide") or [])
    os.mkdir(new + OLD_ROOT)
    _pivot_root(new, new + OLD_ROOT)
    os.chdir("/")
    if not root.get("empty"):
        privileged = bool(root.get("privileged"))
        for path in root.get("keep") or []:  # what the hidden paths must not take away
            if os.path.isdir(OLD_ROOT + path):
                _mount_point(path, True)
                _bind(OLD_ROOT + path, path, True)
        _dev(privileged)
        _proc_sys(privileged)
        for m in root.get("mounts") or []:
            dst = m["destination"]
            if "tree" in m:  # a tmpfs of the pause process's, cloned from its namespace
                _mount_point(dst, True)
                _check(_libc.syscall(SYS_MOVE_MOUNT, m["tree"], b"", AT_FDCWD, dst.encode(), MOVE_MOUNT_F_EMPTY_PATH),
                       f"mounting the pod's tmpfs at {dst}")
                os.close(m["tree"])
                mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (MS_RDONLY if m["readOnly"] else 0))
                continue
            src = OLD_ROOT + m["source"]
            _mount_point(dst, os.path.isdir(src))
            _bind(src, dst, bool(m.get("readOnly")), MS_NOSUID | (0 if m.get("devices") else MS_NODEV))
        cwd = root.get("cwd") or "/"
        if not os.path.isdir(cwd):  # a working directory the image lacks is made, as runc makes it
            os.makedirs(cwd, exist_ok=True)
    _check(_libc.umount2(OLD_ROOT.encode(), MNT_DETACH), "detaching the host's root")
    os.rmdir(OLD_ROOT)
    if root.get("readOnly"):
        mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_NODEV | MS_RDONLY)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def _permitted() -> int:
    """This process's permitted capabilities (read once, while /proc is the host's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapPrm:"):
                return int(line.split()[1], 16)
    return (1 << 64) - 1


PERMITTED = _permitted()


# what containerd's default profile (RuntimeDefault) refuses a container without the capabilities
# that would allow them: the kernel's keyring, modules, clocks, mounts and namespaces, tracing
# other processes, kexec, BPF, perf, userfaultfd (a deny list: the profile's allow list less these)
SECCOMP_DENIED = ("acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
                  "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "init_module", "ioperm",
                  "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mount", "mount_setattr",
                  "move_mount", "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open",
                  "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl",
                  "reboot", "request_key", "setns", "settimeofday", "stime", "swapoff", "swapon", "sysfs", "_sysctl",
                  "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old")
SCMP_ACT_ALLOW, SCMP_ACT_ERRNO_EPERM = 0x7FFF0000, 0x00050000 | 1


def seccomp_runtime_default() -> None:
    """Load the RuntimeDefault profile's denials (EPERM, as the profile answers) with libseccomp;
    done while the process still has CAP_SYS_ADMIN, as runc loads a profile without no_new_privs."""
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:
        for name in SECCOMP_DENIED:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr >= 0:  # a system call this architecture has
                lib.seccomp_rule_add(ctx, SCMP_ACT_ERRNO_EPERM, nr, 0)
        if lib.seccomp_load(ctx) != 0:
            raise OSError("loading the seccomp profile failed")
    finally:
        lib.seccomp_release(ctx)


def drop_privileges(sec: dict) -> None:
    """The capability bounding set to `caps` (and as root the effective and permitted sets too; the
    inheritable and ambient sets empty, as containerd leaves them), the user, groups, no_new_privs."""
    keep = set(sec.get("caps") or [])
    if sec.get("seccomp") == "RuntimeDefault":
        seccomp_runtime_default()
    for cap in range(last_cap() + 1):
        if cap not in keep:
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap}")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    uid, gid = sec.get("uid"), sec.get("gid")
    groups = sec.get("groups")
    if groups is not None or gid is not None:
        os.setgroups(list(groups or []))
    if gid is not None:
        os.setresgid(gid, gid, gid)
    if uid is not None:
        os.setresuid(uid, uid, uid)  # from root to another user: the kernel clears the capabilities
    if not uid:  # (what this process has: a privileged container gets every capability there is to give)
        mask = sum(1 << c for c in keep) & PERMITTED
        data = (_CapData * 2)(_CapData(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0),
                              _CapData(mask >> 32, mask >> 32, 0))
        _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data), "setting capabilities")
    if sec.get("noNewPrivs"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")


def enter(req: dict) -> None:
    """In the spawner's forked child, already in its PID namespace: everything else that makes it
    the pod's pause or container process. The caller then executes the program."""
    if req.get("cgroup"):
        cgroups.join(req["cgroup"])
    if req.get("netns"):
        setns(req["netns"], CLONE_NEWNET, "network")
    for key, kind, what in (("ipc", CLONE_NEWIPC, "IPC"), ("uts", CLONE_NEWUTS, "UTS")):
        if req.get(key) == "new":
            unshare(kind, what)
        elif req.get(key):
            setns(req[key], kind, what)
    if req.get("hostname"):
        socket.sethostname(req["hostname"])
    if req.get("root"):
        for m in req["root"].get("mounts") or []:
            if "tmpfs" in m:
                m["tree"] = _pod_tmpfs(m["pause"], m["tmpfs"], m.get("sub") or "")
        unshare(CLONE_NEWNS | (CLONE_NEWCGROUP if req.get("cgroup") else 0), "mount")
        make_root(req["root"])
    if req.get("security") is not None:
        drop_privileges(req["security"])


TIOCSPTLCK, TIOCGPTN = 0x40045431, 0x80045430


def open_pty() -> tuple[int, int]:
    """A terminal from the container's own /dev/pts (so that it is /dev/pts/N in there): master, slave."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
    return master, os.open(f"/dev/pts/{n}", os.O_RDWR | os.O_NOCTTY)


def pause() -> None:
    """The pod's pause process: PID 1 of the pod's PID namespace, reaping what is orphaned there,
    until SIGTERM or SIGINT (then exit 0, as registry.k8s.io/pause). Never returns."""
    sigs = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)  # blocked signals reach even a PID 1 without handlers
    while True:
        if signal.sigwait(sigs) != signal.SIGCHLD:
            os._exit(0)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
