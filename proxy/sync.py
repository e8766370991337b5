"""Programming the kernel, as upstream kube-proxy does: the whole desired state rendered, then
handed over in one transaction per table (`iptables-restore --noflush`, `nft -f`). After a full
sync, a partial one rewrites only the chains of services that changed and deletes stale chains;
a periodic full resync repairs anything else. A failed restore changes nothing (each table is one
transaction) and is retried with a full sync."""

from __future__ import annotations

import gc
import logging
import shlex
import subprocess
import time
from dataclasses import dataclass, field

from proxy import iptables, nftables
from proxy.model import ServicePort

log = logging.getLogger("netlab.proxy")


class SyncError(RuntimeError):
    pass


def _settled(kind: str) -> None:
    """After a full sync, what it built lives until the next one: out of the collector's sight
    (gc.freeze), so the next partial sync does not pay for a sweep over millions of objects
    (~0.3 s at 10k Services). They are still freed when no longer referenced."""
    if kind == "full":
        gc.freeze()


def detect_backend() -> str:
    """iptables' legacy or nft backend, as upstream detects it: the one that already holds
    kubelet/kube-proxy rules, else the default `iptables` binary's own."""
    counts = {}
    for backend in ("legacy", "nft"):
        try:
            out = subprocess.run([f"iptables-{backend}-save"], capture_output=True, text=True, timeout=10).stdout
        except (FileNotFoundError, subprocess.TimeoutExpired):
            continue
        counts[backend] = out.count("KUBE-")
    if counts and max(counts.values()) > 0:
        return max(counts, key=counts.get)
    try:
        v = subprocess.run(["iptables", "--version"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return "nft"
    return "nft" if "nf_tables" in v else "legacy"


def run(argv: list[str], stdin: str | None = None) -> str:
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        raise SyncError(f"{' '.join(argv)}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


class Syncer:
    """What the daemon drives in every mode: sync(ports, full) -> "full" or "partial"; work left
    for later (nftables mode's flushed chains) falls due at stale_due() and is done by delete_stale()."""

    def stale_due(self) -> float | None:
        """When the work left for later falls due (time.monotonic); None: there is none."""
        return None

    def delete_stale(self) -> None:
        pass


@dataclass
class IptablesSyncer(Syncer):
    cfg: iptables.Config
    backend: str = "nft"
    applied: iptables.Ruleset | None = None
    memo: dict = field(default_factory=dict)
    last_text: str = ""  # the last restore input (`netlab-proxy render` and the benchmark show it)
    stats: dict = field(default_factory=lambda: {"syncs": 0, "partial": 0, "failures": 0})

    def tool(self, name: str) -> str:
        return f"{name.replace('iptables', f'iptables-{self.backend}', 1)}"

    @staticmethod
    def missing_jumps(saved: dict[str, str]) -> dict[str, list[str]]:
        """Per table, the jumps from the built-in chains (first in them) that `saved` (its
        iptables-save) lacks, as restore lines. (Every iptables call reads a legacy table whole:
        a `-C` per jump, as upstream checks them, cost ~0.3 s each at 10k Services.)"""
        out = {}
        for table, text in saved.items():
            rules = set(text.splitlines())
            out[table] = [f"-I {chain} 1 {rule}" for t, chain, rule in iptables.JUMPS
                          if t == table and f"-A {chain} {rule}" not in rules]
        return out

    def ensure_jumps(self) -> None:
        """The top-level chains and the jumps to them, where missing, read with one iptables-save
        per table and added with one restore (for IPVS mode; iptables mode's full sync does this
        in its own restore)."""
        saved = {t: run([self.tool("iptables-save"), "-t", t]) for t in ("filter", "nat")}
        jumps, lines = self.missing_jumps(saved), []
        for table, chains in (("filter", iptables.FILTER_CHAINS), ("nat", iptables.NAT_CHAINS)):
            have = {ln[1:].split()[0] for ln in saved[table].splitlines() if ln.startswith(":")}
            missing = [f":{c} - [0:0]" for c in chains if c not in have] + jumps[table]
            if missing:
                lines += [f"*{table}", *missing, "COMMIT"]
        if lines:
            run([self.tool("iptables-restore"), "-w", "5", "--noflush"], "\n".join(lines) + "\n")

    def sync(self, ports: list[ServicePort], full: bool = False) -> str:
        """Apply the rules for `ports`; returns "full" or "partial"."""
        kind = "full" if full or self.applied is None else "partial"
        try:
            if kind == "full":
                try:
                    new = self.full_sync(ports, check=self.applied is not None)
                except SyncError as e:
                    if self.applied is None:
                        raise
                    # a jump from a built-in chain went (or the restore failed otherwise): again,
                    # reading the tables first
                    log.info("full sync failed, retrying with the jumps read first: %s", e)
                    new = self.full_sync(ports, check=False)
            else:
                new = iptables.render(ports, self.cfg, self.memo)
                texts = []
                for table in ("filter", "nat"):
                    old_t, new_t = self.applied.tables()[table], new.tables()[table]
                    changed = {c for c, rules in new_t.chains.items()
                               if (was := old_t.chains.get(c)) is not rules and was != rules}
                    stale = set(old_t.chains) - set(new_t.chains)
                    texts.append(iptables.restore_text(new, table, changed, stale))
                self.last_text = "".join(texts)
                run([self.tool("iptables-restore"), "-w", "5", "--noflush", "--counters"], self.last_text)
        except SyncError:
            self.stats["failures"] += 1
            self.applied = None  # the next sync is a full one
            raise
        self.applied = new
        self.stats["syncs"] += 1
        self.stats["partial"] += kind == "partial"
        _settled(kind)
        return kind

    def full_sync(self, ports: list[ServicePort], check: bool) -> iptables.Ruleset:
        """Everything rewritten, in one restore: started first and fed each service port's nat
        chains as soon as they are rendered, so that iptables-restore parses while Python renders
        (the nat table, the large one, goes first; filter's rules are only known at the end).
        The jumps from the built-in chains: with `check` (they were in place after the last sync),
        the restore checks them first (-C) and fails at once if one went; otherwise iptables-save
        reads the tables meanwhile, and the missing jumps are inserted before each COMMIT."""
        saves = {} if check else {
            t: subprocess.Popen([self.tool("iptables-save"), "-t", t], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True) for t in ("filter", "nat")}
        argv = [self.tool("iptables-restore"), "-w", "5", "--noflush", "--counters"]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        chunks: list[str] = []
        written = dict.fromkeys(iptables.NAT_CHAINS, 0)  # rules of the top-level chains sent so far

        def send(text: str) -> None:
            chunks.append(text)
            p.stdin.write(text)

        def emit(own: dict[str, list[str]], nat: iptables.Table) -> None:
            """A service port's chains, then its rules in the top-level chains."""
            lines = [f":{c} - [0:0]\n" for c in own]
            lines += [f"-A {c} {r}\n" for c, rules in own.items() for r in rules]
            for c in iptables.NAT_CHAINS:  # then what jumps to them
                rules = nat.chains[c]
                lines += [f"-A {c} {r}\n" for r in rules[written[c]:]]
                written[c] = len(rules)
            send("".join(lines))

        try:
            try:
                checks = {t: [f"-C {c} {r}\n" for tt, c, r in iptables.JUMPS if tt == t] if check else []
                          for t in ("filter", "nat")}
                send(("*filter\n" + "".join(checks["filter"]) + "COMMIT\n" if check else "")
                     + "*nat\n" + "".join(checks["nat"]) + "".join(f":{c} - [0:0]\n" for c in iptables.NAT_CHAINS))
                new = iptables.render(ports, self.cfg, self.memo, emit)
                emit({}, new.nat)
                if check:
                    jumps = {"filter": [], "nat": []}
                    stale = sorted(set(self.applied.nat.chains) - set(new.nat.chains))
                else:
                    # the tables as they were before this restore (its commits are still to come)
                    saved = {t: save.communicate()[0] for t, save in saves.items()}
                    if any(save.returncode for save in saves.values()):
                        raise SyncError(f"{self.tool('iptables-save')} failed: cannot read the jumps to kube-proxy's "
                                        "chains")
                    jumps = self.missing_jumps(saved)
                    # as upstream: any service or endpoint chain there that is not wanted now goes,
                    # also those a kube-proxy that ran before this one left
                    stale = sorted(c for c in (ln[1:].split()[0] for ln in saved["nat"].splitlines() if ln[:1] == ":")
                                   if c.startswith(iptables.SERVICE_CHAIN_PREFIXES) and c not in new.nat.chains)
                send("".join(f":{c} - [0:0]\n" for c in stale) + "".join(f"-X {c}\n" for c in stale)
                     + "".join(f"{j}\n" for j in jumps["nat"]) + "COMMIT\n"
                     + iptables.restore_text(new, "filter", None, set(), jumps["filter"]))
            except BrokenPipeError:  # the restore stopped at a bad line: its error is below
                pass
            except BaseException:
                p.kill()  # before COMMIT: nothing of this sync is applied
                raise
            _, err = p.communicate()  # (flushes and closes its input)
            self.last_text = "".join(chunks)
            if p.returncode != 0:
                raise SyncError(f"{' '.join(argv)}: {err.strip()}")
        finally:
            for save in saves.values():
                if save.poll() is None:
                    save.kill()
                save.wait()
        return new

    def cleanup(self) -> None:
        """Remove everything kube-proxy made (what `kube-proxy --cleanup` does)."""
        for table, chain, rule in iptables.JUMPS:
            subprocess.run([self.tool("iptables"), "-w", "5", "-t", table, "-D", chain, *shlex.split(rule)],
                           capture_output=True)
        for table in ("filter", "nat"):
            out = run([self.tool("iptables-save"), "-t", table])
            chains = [ln[1:].split()[0] for ln in out.splitlines() if ln.startswith(":KUBE-")]
            if chains:
                text = f"*{table}\n" + "".join(f":{c} - [0:0]\n" for c in chains) + \
                       "".join(f"-X {c}\n" for c in chains) + "COMMIT\n"
                run([self.tool("iptables-restore"), "-w", "5", "--noflush"], text)


@dataclass
class NftablesSyncer(Syncer):
    cfg: iptables.Config
    applied: nftables.Ruleset | None = None
    memo: dict = field(default_factory=dict)
    last_text: str = ""  # the last transaction
    stale: dict[str, float] = field(default_factory=dict)  # flushed chain -> when, to delete after STALE_DELAY
    stats: dict = field(default_factory=lambda: {"syncs": 0, "partial": 0, "failures": 0})

    STALE_DELAY = 1.0  # upstream's: by then even an old kernel has let go of the chain

    def sync(self, ports: list[ServicePort], full: bool = False) -> str:
        new = nftables.render(ports, self.cfg, self.memo)
        kind = "full" if full or self.applied is None else "partial"
        if kind == "partial":
            self.delete_stale()
        tx = nftables.transaction(new, None if kind == "full" else self.applied)
        self.last_text = tx.text
        try:
            run(["nft", "-f", "-"], tx.text)
        except SyncError:
            self.stats["failures"] += 1
            self.applied = None
            raise
        if kind == "full":
            self.stale.clear()  # the table was made anew
        for name in tx.added:
            self.stale.pop(name, None)
        now = time.monotonic()
        self.stale.update((name, now) for name in tx.stale)
        self.applied = new
        self.stats["syncs"] += 1
        self.stats["partial"] += kind == "partial"
        _settled(kind)
        return kind

    def stale_due(self) -> float | None:
        """When the oldest flushed chain may be deleted."""
        return min(self.stale.values()) + self.STALE_DELAY if self.stale else None

    def delete_stale(self) -> None:
        """Delete the chains flushed at least STALE_DELAY ago, in a transaction of their own, as
        upstream does: if it fails (a chain still in use), the sync is not held up, and the next
        full sync, which makes the table anew, removes them."""
        now = time.monotonic()
        due = [name for name, t in self.stale.items() if now - t >= self.STALE_DELAY]
        if not due:
            return
        for name in due:
            del self.stale[name]
        try:
            run(["nft", "-f", "-"], "".join(f"delete chain {nftables.T} {name}\n" for name in due))
        except SyncError as e:
            log.warning("could not delete stale chains: %s", e)

    def cleanup(self) -> None:
        subprocess.run(["nft", "delete", "table", "ip", nftables.TABLE], capture_output=True)


def cleanup_all() -> None:
    """What `kube-proxy --cleanup` does: remove the rules of every mode and iptables backend."""
    from netlab.kit import net

    for backend in ("legacy", "nft"):
        try:
            IptablesSyncer(iptables.Config(), backend).cleanup()
        except (OSError, SyncError):  # that backend's tools are not installed
            pass
    NftablesSyncer(iptables.Config()).cleanup()
    if net.link_exists(None, "kube-ipvs0"):
        net.link_delete(None, "kube-ipvs0")


def conntrack_cleanup(old: list[ServicePort], new: list[ServicePort]) -> list[list[str]]:
    """UDP has no connection to end: when an endpoint goes, its conntrack entries are deleted so
    clients stop sending to it (and entries for a service that just got endpoints, which may hold
    a rejection), as upstream does. Returns the conntrack commands run."""
    def udp(ports):
        return {(p.cluster_ip, p.port, p.node_port): {e.ip for e in p.endpoints if e.ready or e.serving}
                for p in ports if p.protocol == "UDP"}
    before, after = udp(old), udp(new)
    cmds = []
    for (ip, _port, _np), eps in before.items():
        gone = eps - after.get((ip, _port, _np), set())
        for ep in sorted(gone):
            cmds.append(["conntrack", "-D", "-p", "udp", "--orig-dst", ip, "--dst-nat", ep])
    for key, eps in after.items():
        if eps and not before.get(key):
            cmds.append(["conntrack", "-D", "-p", "udp", "--orig-dst", key[0]])
    for c in cmds:
        subprocess.run(c, capture_output=True)  # exit 1 when there was nothing to delete
    return cmds



def node_ips(cfg: iptables.Config) -> list[str]:
    """This node's IPv4 addresses that accept NodePorts: those within --nodeport-addresses, or
    by default the node's primary address (of the interface holding the default route), as
    upstream's nftables mode does with `--nodeport-addresses primary`."""
    import ipaddress

    from netlab.kit import net

    cidrs = [ipaddress.ip_network(c, strict=False) for c in cfg.nodeport_addresses]
    if cidrs:
        addrs = net.addr_list(None)
    else:
        dev = next((r["dev"] for r in net.route_list(None) if r["dst"] == "default"), None)
        addrs = net.addr_list(None, dev) if dev else []
    out = []
    for a in addrs:
        ip = ipaddress.ip_interface(a).ip
        if ip.version == 4 and not ip.is_loopback and (not cidrs or any(ip in c for c in cidrs)):
            out.append(str(ip))
    return out
