"""iptables mode's syncer: the rules iptables_render renders, programmed with iptables-restore
(one transaction per table) as upstream's iptables proxier does: a full sync rewrites every
kube-proxy chain and checks the jumps from the built-in chains; a partial one rewrites only the
chains of the service ports that changed and deletes the stale ones."""

from __future__ import annotations

import logging
import shlex
import subprocess

from proxy import iptables_render as iptables
from proxy.config import Config
from proxy.model import ServicePort
from proxy.syncer import Process, Runner, Syncer, SyncError

log = logging.getLogger("netlab.proxy")


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


class IptablesSyncer(Syncer):
    def __init__(self, cfg: Config, backend: str = "nft", runner: Runner | None = None):
        super().__init__(runner)
        self.cfg, self.backend = cfg, backend
        self.applied: iptables.Ruleset | None = None
        self.memo: dict = {}
        self.last_text = ""  # the last restore input (`netlab-proxy render` and the benchmark show it)

    def tool(self, name: str) -> str:
        return f"{name.replace('iptables', f'iptables-{self.backend}', 1)}"

    def run(self, argv: list[str], stdin: str | None = None) -> str:
        return self.runner.run(argv, stdin)

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
        saved = {t: self.run([self.tool("iptables-save"), "-t", t]) for t in ("filter", "nat")}
        jumps, lines = self.missing_jumps(saved), []
        for table, chains in (("filter", iptables.FILTER_CHAINS), ("nat", iptables.NAT_CHAINS)):
            have = {ln[1:].split()[0] for ln in saved[table].splitlines() if ln.startswith(":")}
            missing = [f":{c} - [0:0]" for c in chains if c not in have] + jumps[table]
            if missing:
                lines += [f"*{table}", *missing, "COMMIT"]
        if lines:
            self.run([self.tool("iptables-restore"), "-w", "5", "--noflush"], "\n".join(lines) + "\n")

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
                self.run([self.tool("iptables-restore"), "-w", "5", "--noflush", "--counters"], self.last_text)
        except SyncError:
            self.stats.failures += 1
            self.applied = None  # the next sync is a full one
            raise
        self.applied = new
        return self.counted(kind)

    def full_sync(self, ports: list[ServicePort], check: bool) -> iptables.Ruleset:
        """Everything rewritten, in one restore: started first and fed each service port's nat
        chains as soon as they are rendered, so that iptables-restore parses while Python renders
        (the nat table, the large one, goes first; filter's rules are only known at the end).
        The jumps from the built-in chains: with `check` (they were in place after the last sync),
        the restore checks them first (-C) and fails at once if one went; otherwise iptables-save
        reads the tables meanwhile, and the missing jumps are inserted before each COMMIT."""
        saves: dict[str, Process] = {} if check else {
            t: self.runner.start([self.tool("iptables-save"), "-t", t]) for t in ("filter", "nat")}
        argv = [self.tool("iptables-restore"), "-w", "5", "--noflush", "--counters"]
        p = self.runner.start(argv, feed=True)
        chunks: list[str] = []
        written = dict.fromkeys(iptables.NAT_CHAINS, 0)  # rules of the top-level chains sent so far

        def send(text: str) -> None:
            chunks.append(text)
            p.write(text)

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
                    results = {t: save.wait() for t, save in saves.items()}
                    if any(rc for rc, _, _ in results.values()):
                        raise SyncError(f"{self.tool('iptables-save')} failed: cannot read the jumps to kube-proxy's "
                                        "chains")
                    saved = {t: out for t, (_, out, _) in results.items()}
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
            rc, _, err = p.wait()
            self.last_text = "".join(chunks)
            if rc != 0:
                raise SyncError(f"{' '.join(argv)}: {err.strip()}")
        finally:
            for save in saves.values():
                save.kill()
        return new

    def cleanup(self) -> None:
        """Remove everything kube-proxy made (what `kube-proxy --cleanup` does)."""
        for table, chain, rule in iptables.JUMPS:
            self.runner.run([self.tool("iptables"), "-w", "5", "-t", table, "-D", chain, *shlex.split(rule)],
                            check=False)
        for table in ("filter", "nat"):
            out = self.run([self.tool("iptables-save"), "-t", table])
            chains = [ln[1:].split()[0] for ln in out.splitlines() if ln.startswith(":KUBE-")]
            if chains:
                text = f"*{table}\n" + "".join(f":{c} - [0:0]\n" for c in chains) + \
                       "".join(f"-X {c}\n" for c in chains) + "COMMIT\n"
                self.run([self.tool("iptables-restore"), "-w", "5", "--noflush"], text)
