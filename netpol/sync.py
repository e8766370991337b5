"""Programming the kernel: the rendered table handed to `nft -f` in one transaction, which deletes
the old table and makes the new one atomically (a packet meets one or the other, never neither).
Conntrack is not part of the table, so connections already established keep their entries and go
on flowing through `ct state established,related accept`; only new ones meet the new rules."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from netpol.render import FAMILY, TABLE


class SyncError(RuntimeError):
    pass


def run(argv: list[str], stdin: str | None = None) -> str:
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        raise SyncError(f"{' '.join(argv)}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


@dataclass
class Syncer:
    applied: str | None = None   # the last text the kernel took

    def sync(self, text: str, force: bool = False) -> bool:
        """Program `text` unless it is what the kernel already has (a rewrite would reset the
        counters a learner reads). Returns whether nft ran."""
        if text == self.applied and not force:
            return False
        try:
            run(["nft", "-f", "-"], text)
        except SyncError:
            self.applied = None
            raise
        self.applied = text
        return True

    @staticmethod
    def present() -> bool:
        """Whether the table is in the kernel (someone may have deleted it: the periodic check
        puts it back)."""
        out = subprocess.run(["nft", "list", "tables", FAMILY], capture_output=True, text=True).stdout
        return f"table {FAMILY} {TABLE}" in out.splitlines()

    def cleanup(self) -> None:
        subprocess.run(["nft", "delete", "table", FAMILY, TABLE], capture_output=True)
        self.applied = None
