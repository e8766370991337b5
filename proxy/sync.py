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


@dataclass
class IptablesSyncer:
    cfg: iptables.Config
    backend: str = "nft"
    applied: iptables.Ruleset | None = None
    memo: dict = field(default_factory=dict)
    last_text: str = ""  # the last restore input (`netlab-proxy render` and the benchmark show it)
    stats: dict = field(default_factory=lambda: {"syncs": 0, "partial": 0, "failures": 0})

    def tool(self, name: str) -> str:
        return f"{name.replace('iptables', f'iptables-{self.backend}', 1)}"

    def ensure_jumps(self) -> None:
        """The top-level chains, and the jumps to them from the built-in chains (first in them),
        where missing: read with one iptables-save per table, added with one restore. (Every
        iptables call reads a legacy table whole: a `-C` per jump cost ~0.3 s each at 10k Services.)"""
        lines = []
        for table, chains in (("filter", iptables.FILTER_CHAINS), ("nat", iptables.NAT_CHAINS)):
            saved = run([self.tool("iptables-save"), "-t", table]).splitlines()
            have, rules = {ln[1:].split()[0] for ln in saved if ln.startswith(":")}, set(saved)
            missing = [f":{c} - [0:0]" for c in chains if c not in have] + [
                f"-I {chain} 1 {rule}" for t, chain, rule in iptables.JUMPS
                if t == table and f"-A {chain} {rule}" not in rules]
            if missing:
                lines += [f"*{table}", *missing, "COMMIT"]
        if lines:
            run([self.tool("iptables-restore"), "-w", "5", "--noflush"], "\n".join(lines) + "\n")

    def sync(self, ports: list[ServicePort], full: bool = False) -> str:
        """Apply the rules for `ports`; returns "full" or "partial"."""
        new = iptables.render(ports, self.cfg, self.memo)
        kind = "full" if full or self.applied is None else "partial"
        texts = []
        for table in ("filter", "nat"):
            if kind == "full":
                stale = set(self.applied.tables()[table].chains) - set(new.tables()[table].chains) \
                    if self.applied else set()
                texts.append(iptables.restore_text(new, table, None, stale))
            else:
                old_t, new_t = self.applied.tables()[table], new.tables()[table]
                changed = {c for c, rules in new_t.chains.items()
                           if (was := old_t.chains.get(c)) is not rules and was != rules}
                stale = set(old_t.chains) - set(new_t.chains)
                texts.append(iptables.restore_text(new, table, changed, stale))
        try:
            if kind == "full":
                # before the restore: on the first sync the tables are still small, and checking
                # a rule in a big legacy table costs as much as reading all of it
                self.ensure_jumps()
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
class NftablesSyncer:
    cfg: iptables.Config
    applied: nftables.Ruleset | None = None
    memo: dict = field(default_factory=dict)
    last_text: str = ""  # the last transaction
    stats: dict = field(default_factory=lambda: {"syncs": 0, "partial": 0, "failures": 0})

    def sync(self, ports: list[ServicePort], full: bool = False) -> str:
        new = nftables.render(ports, self.cfg, self.memo)
        kind = "full" if full or self.applied is None else "partial"
        self.last_text = nftables.transaction(new, None if kind == "full" else self.applied)
        try:
            run(["nft", "-f", "-"], self.last_text)
        except SyncError:
            self.stats["failures"] += 1
            self.applied = None
            raise
        self.applied = new
        self.stats["syncs"] += 1
        self.stats["partial"] += kind == "partial"
        _settled(kind)
        return kind

    def cleanup(self) -> None:
        subprocess.run(["nft", "delete", "table", "ip", nftables.TABLE], capture_output=True)


def cleanup_all() -> None:
    """What `kube-proxy --cleanup` does: remove the rules of every mode and iptables backend."""
    from netlab import net

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

    from netlab import net

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
