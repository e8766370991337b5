#!/usr/bin/env python3
"""Boots the test VM (scripts/vm/image.py's image) with qemu and runs one job in it as root.

The checkout is shared into the VM read-only (9p, tag `src`) and a results directory writable (tag
`results`); the job is a bash script the runner leaves there, run in a fresh copy of the checkout at
/src, its output streamed from the serial console, its exit code handed back. The VM has no network
device unless the caller passes one, and powers off when the job ends; a hard timeout kills it.
KVM when this machine's /dev/kvm can run Debian's kernel (probed once and remembered in the cache),
TCG otherwise.

    python3 scripts/vm/machine.py [--timeout S] [--results DIR] [--accel auto|kvm|tcg] -- COMMAND...
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
import image as vmimage  # noqa: E402  (a sibling script, not a package)

QEMU = "qemu-system-x86_64"
# A test VM runs no untrusted code: no speculation mitigations nor crypto self-tests (both slow under TCG).
CMDLINE = ("console=ttyS0 root=/dev/vda rw init=/usr/sbin/netlab-vm-init quiet loglevel=4 panic=-1 fsck.mode=skip"
           " mitigations=off cryptomgr.notests")
STARTED = "netlab-vm: job starting"
# Terminal control sequences (the firmware clears the screen) are left out of the streamed console.
CONTROL = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[@-~])")
# How much slower the lab runs under TCG than on a machine (netlab.kit.pace stretches its waits by it).
TCG_SLOWDOWN = 10
# The guest's own timeout is this much shorter than the hard one, so the job's end is still reported.
MARGIN = 30


@dataclasses.dataclass
class Result:
    rc: int
    output: str  # the job's output (stdout and stderr)
    seconds: float  # from qemu's start to its exit
    boot_seconds: float | None  # from qemu's start to the job's start
    accel: str
    results: Path  # the results directory: output.log, console.log, rc, and whatever the job wrote

    @property
    def summary(self) -> str:
        boot = f", booted in {self.boot_seconds:.0f}s" if self.boot_seconds is not None else ""
        return f"netlab-vm: job exited {self.rc} after {self.seconds:.0f}s ({self.accel}{boot})"


def qemu_missing() -> str | None:
    """Why a VM cannot be booted here, or None."""
    if not shutil.which(QEMU):
        return f"{QEMU} is not installed (apt-get install qemu-system-x86)"
    return None


def run(image: vmimage.Image, job: str, results: Path, *, timeout: float = 1800, accel: str = "tcg",
        memory: str = "3G", cpus: int = 2, extra: list[str] | None = None, repo: Path = vmimage.REPO,
        stream: TextIO | None = sys.stdout, nice: int = 10, name: str = "netlab-vm",
        env: dict[str, str] | None = None) -> Result:
    """Boot, run `job` (bash) as root in the VM, power off. `extra` is more qemu arguments (a
    private network device, say); `env` more environment for the job. Returns when the VM is gone,
    after at most `timeout` seconds."""
    results.mkdir(parents=True, exist_ok=True)
    for stale in ("rc", "output.log", "console.log", "qemu.log"):
        (results / stale).unlink(missing_ok=True)
    shutil.rmtree(results / "state", ignore_errors=True)
    (results / "job.sh").write_text(job if job.endswith("\n") else job + "\n")
    (results / "timeout").write_text(f"{max(int(timeout) - MARGIN, 10)}\n")
    env = {"NETLAB_VM_ACCEL": accel, "NETLAB_SLOWDOWN": "1" if accel == "kvm" else str(TCG_SLOWDOWN), **(env or {})}
    (results / "env").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    console = results / "console.log"
    console.touch()
    argv = ["nice", "-n", str(nice), *qemu_argv(image, results, accel=accel, memory=memory, cpus=cpus, repo=repo,
                                                  extra=extra, name=name)]
    started = time.monotonic()
    boot: list[float] = []
    with open(results / "qemu.log", "w") as qlog:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qlog, stderr=subprocess.STDOUT)
        done = threading.Event()
        tail = threading.Thread(target=_tail, args=(console, stream, done, lambda: boot.append(time.monotonic())))
        tail.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            proc.wait()
        finally:
            done.set()
            tail.join()
    seconds = time.monotonic() - started
    rc_file = results / "rc"
    output = (results / "output.log").read_text(errors="replace") if (results / "output.log").exists() else ""
    if rc_file.exists() and rc_file.read_text().strip().lstrip("-").isdigit():
        rc = int(rc_file.read_text())
    elif timed_out:
        rc, output = 124, output + f"\nnetlab-vm: killed the VM after its hard timeout of {timeout:.0f}s\n"
    else:
        qemu_said = (results / "qemu.log").read_text(errors="replace").strip()
        rc = 125
        output += (f"\nnetlab-vm: the VM stopped without the job's exit code (qemu exit {proc.returncode}"
                   f"{': ' + qemu_said if qemu_said else ''}; its console is in {console})\n")
    return Result(rc, output, seconds, boot[0] - started if boot else None, accel, results)


def qemu_argv(image: vmimage.Image, results: Path, *, accel: str, memory: str = "3G", cpus: int = 2,
              repo: Path = vmimage.REPO, extra: list[str] | None = None, name: str = "netlab-vm") -> list[str]:
    """qemu's command line: no network device (-nodefaults) unless `extra` adds one, the serial
    console to results/console.log, the root filesystem copy-on-write (snapshot=on: the image never
    changes), the checkout read-only and the results directory writable over 9p."""
    return [QEMU, "-name", name, "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-monitor", "none",
            "-serial", f"file:{results / 'console.log'}",
            "-accel", accel, "-cpu", "host" if accel == "kvm" else "max", "-smp", str(cpus), "-m", memory,
            "-kernel", str(image.boot_kernel), "-initrd", str(image.initrd), "-append", CMDLINE,
            "-drive", f"file={image.rootfs},if=virtio,format=raw,snapshot=on,cache=unsafe",
            "-virtfs", f"local,path={repo},mount_tag=src,security_model=none,readonly=on,id=src",
            "-virtfs", f"local,path={results},mount_tag=results,security_model=none,id=results",
            "-device", "virtio-rng-pci", *(extra or [])]


def _tail(path: Path, stream: TextIO | None, done: threading.Event, on_start) -> None:
    """Copies the serial console to `stream` as it grows, and notes when the job starts."""
    with open(path, errors="replace") as f:
        pending = ""
        while True:
            chunk = f.read()
            if chunk:
                pending += CONTROL.sub("", chunk).replace("\r", "")
                *lines, pending = pending.split("\n")
                for line in lines:
                    if STARTED in line:
                        on_start()
                    if stream:
                        stream.write(line + "\n")
                if stream:
                    stream.flush()
            elif done.is_set():
                if pending and stream:
                    stream.write(pending + "\n")
                return
            else:
                time.sleep(0.2)


def accelerator(image: vmimage.Image, cache: Path, choice: str = "auto") -> str:
    """kvm or tcg. /dev/kvm may be there and still not run a stock kernel (nested virtualisation
    without the CPU features it needs): so KVM is probed by booting the image once with it, and the
    answer remembered for this host kernel, qemu and image kernel."""
    if choice != "auto":
        return choice
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    version = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    kernel = hashlib.sha256(image.kernel.read_bytes()).hexdigest()
    key = hashlib.sha256(f"{os.uname().release} {version} {kernel}".encode()).hexdigest()[:12]
    memo = cache / f"accel-{key}"
    if memo.exists():
        return memo.read_text().strip()
    with tempfile.TemporaryDirectory(prefix="netlab-vm-kvm-") as d:
        r = run(image, "true", Path(d), timeout=60, accel="kvm", memory="512M", cpus=1, stream=None)
    answer = "kvm" if r.rc == 0 else "tcg"
    memo.write_text(answer + "\n")
    return answer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timeout", type=float, default=1800, help="hard timeout in seconds (default 1800)")
    p.add_argument("--results", type=Path, help="the results directory (default: a new one under /tmp)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=os.environ.get("NETLAB_VM_ACCEL", "auto"))
    p.add_argument("--memory", default="3G")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--cache", type=Path, default=vmimage.DEFAULT_CACHE)
    p.add_argument("--quiet", action="store_true", help="do not stream the console")
    p.add_argument("command", nargs="+", help="run in the VM by bash, in /src, as root")
    a = p.parse_args(argv)
    missing = qemu_missing()
    if missing:
        print(f"netlab-vm: {missing}", file=sys.stderr)
        return 1
    try:
        img = vmimage.build(vmimage.REPO, a.cache, log=lambda m: print(m, file=sys.stderr))
    except vmimage.ImageError as e:
        print(f"netlab-vm: {e}", file=sys.stderr)
        return 1
    accel = accelerator(img, a.cache, a.accel)
    results = a.results or Path(tempfile.mkdtemp(prefix="netlab-vm-"))
    job = a.command[0] if len(a.command) == 1 else shlex.join(a.command)
    r = run(img, job, results, timeout=a.timeout, accel=accel, memory=a.memory, cpus=a.cpus,
            stream=None if a.quiet else sys.stdout)
    if a.quiet:
        sys.stdout.write(r.output)
    print(f"{r.summary}; results in {r.results}", file=sys.stderr)
    return r.rc


if __name__ == "__main__":
    sys.exit(main())
