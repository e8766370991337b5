"""nftables mode's syncer: the table nftables_render renders, programmed with `nft -f` in one
transaction, as upstream's nftables proxier does: a full sync replaces the table; a partial one
changes only what changed, and the chains it flushed are deleted a second later, in a
transaction of their own."""

from __future__ import annotations

import logging
import time

from proxy import nftables_render as nftables
from proxy.config import Config
from proxy.model import ServicePort
from proxy.syncer import Runner, Syncer, SyncError

log = logging.getLogger("netlab.proxy")


class NftablesSyncer(Syncer):
    STALE_DELAY = 1.0  # upstream's: by then even an old kernel has let go of the chain

    def __init__(self, cfg: Config, runner: Runner | None = None):
        super().__init__(runner)
        self.cfg = cfg
        self.applied: nftables.Ruleset | None = None
        self.memo: dict = {}
        self.last_text = ""  # the last transaction
        self.stale: dict[str, float] = {}  # flushed chain -> when, to delete after STALE_DELAY

    def sync(self, ports: list[ServicePort], full: bool = False) -> str:
        new = nftables.render(ports, self.cfg, self.memo)
        kind = "full" if full or self.applied is None else "partial"
        if kind == "partial":
            self.delete_stale()
        tx = nftables.transaction(new, None if kind == "full" else self.applied)
        self.last_text = tx.text
        try:
            self.runner.run(["nft", "-f", "-"], tx.text)
        except SyncError:
            self.stats.failures += 1
            self.applied = None
            raise
        if kind == "full":
            self.stale.clear()  # the table was made anew
        for name in tx.added:
            self.stale.pop(name, None)
        now = time.monotonic()
        self.stale.update((name, now) for name in tx.stale)
        self.applied = new
        return self.counted(kind)

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
            self.runner.run(["nft", "-f", "-"], "".join(f"delete chain {nftables.T} {name}\n" for name in due))
        except SyncError as e:
            log.warning("could not delete stale chains: %s", e)

    def cleanup(self) -> None:
        self.runner.run(["nft", "delete", "table", "ip", nftables.TABLE], check=False)
