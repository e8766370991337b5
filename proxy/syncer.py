"""What every mode's syncer shares: the daemon drives them alike through `sync(ports, full)`, they
count their syncs and failures the same way (the metrics read `stats`), and they program the
kernel only through a Runner, so that a test can hand them a recorded fake instead of the real
iptables-restore and nft, as upstream's proxier tests hand theirs iptablestest's and knftables' fakes.

Programming the kernel, as upstream kube-proxy does: the whole desired state rendered, then handed
over in one transaction per table (`iptables-restore --noflush`, `nft -f`). After a full sync, a
partial one rewrites only the chains of services that changed and deletes stale chains; a
periodic full resync repairs anything else. A failed restore changes nothing (each table is one
transaction) and is retried with a full sync."""

from __future__ import annotations

import gc
import subprocess
from dataclasses import dataclass
from typing import Protocol

from proxy.model import ServicePort


class SyncError(RuntimeError):
    pass


class Process(Protocol):
    """A command started with its input still to write (iptables-restore fed as rules are rendered)."""

    def write(self, text: str) -> None: ...   # raises BrokenPipeError once the command stopped reading

    def wait(self) -> tuple[int, str, str]: ...  # closes the input; (exit status, stdout, stderr)

    def kill(self) -> None: ...


class Runner:
    """Runs the commands a syncer programs the kernel with; the real one, on subprocess."""

    def run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> str:
        """The command's stdout; with `check`, a SyncError naming it when it fails."""
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True)
        if check and p.returncode != 0:
            raise SyncError(f"{' '.join(argv)}: {p.stderr.strip() or p.stdout.strip()}")
        return p.stdout

    def start(self, argv: list[str], feed: bool = False) -> Process:
        """Start a command; with `feed`, its input is written through the returned Process."""
        return _Popen(argv, feed)


class _Popen:
    def __init__(self, argv: list[str], feed: bool):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE if feed else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.done = False

    def write(self, text: str) -> None:
        self.p.stdin.write(text)

    def wait(self) -> tuple[int, str, str]:
        self.done = True
        try:
            out, err = self.p.communicate()  # (flushes and closes its input)
        except BrokenPipeError:
            out, err = self.p.stdout.read(), self.p.stderr.read()
            self.p.wait()
        return self.p.returncode, out, err

    def kill(self) -> None:
        if self.done:
            return
        self.done = True
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()


def settled(kind: str) -> None:
    """After a full sync, what it built lives until the next one: out of the collector's sight
    (gc.freeze), so the next partial sync does not pay for a sweep over millions of objects
    (~0.3 s at 10k Services). They are still freed when no longer referenced."""
    if kind == "full":
        gc.freeze()


@dataclass
class Stats:
    syncs: int = 0
    partial: int = 0
    failures: int = 0   # upstream's kubeproxy_sync_proxy_rules_iptables_restore_failures_total

    def __getitem__(self, key: str) -> int:  # stats["failures"], as the daemon and benchmarks read them
        return getattr(self, key)


class Syncer:
    """What the daemon drives in every mode: sync(ports, full) -> "full" or "partial"; work left
    for later (nftables mode's flushed chains) falls due at stale_due() and is done by
    delete_stale(); cleanup() removes what the mode programmed (kube-proxy --cleanup)."""

    def __init__(self, runner: Runner | None = None):
        self.runner = runner or Runner()
        self.stats = Stats()

    def sync(self, ports: list[ServicePort], full: bool = False) -> str:
        raise NotImplementedError

    def counted(self, kind: str) -> str:
        """Count a sync that went through (and settle what a full one built)."""
        self.stats.syncs += 1
        self.stats.partial += kind == "partial"
        settled(kind)
        return kind

    def stale_due(self) -> float | None:
        """When the work left for later falls due (time.monotonic); None: there is none."""
        return None

    def delete_stale(self) -> None:
        pass

    def cleanup(self) -> None:
        pass
