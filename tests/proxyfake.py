"""A recorded stand-in for the commands kube-proxy's syncers run, as upstream's proxier tests use
iptablestest's fake: iptables-save and iptables-restore (--noflush) over tables kept in memory,
`iptables -D`, and nft, ipset and conntrack recorded. Every call is kept in `calls`; `fail` makes
chosen commands fail as the real ones would."""

from __future__ import annotations

from collections.abc import Callable

from proxy.syncer import SyncError

BUILTIN = {"filter": ["INPUT", "FORWARD", "OUTPUT"], "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]}


class RestoreError(Exception):
    pass


def _quoted(args: list[str]) -> str:
    """A rule as iptables-save writes it: arguments that hold a space in double quotes."""
    return " ".join(f'"{a}"' if " " in a or not a else a for a in args)


class FakeRunner:
    def __init__(self) -> None:
        self.tables: dict[str, dict[str, list[str]]] = {t: {c: [] for c in cs} for t, cs in BUILTIN.items()}
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail: Callable[[list[str], str | None], str | None] = lambda argv, stdin: None

    # --- the Runner interface ---

    def run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> str:
        self.calls.append((list(argv), stdin))
        rc, out, err = self._exec(argv, stdin)
        if check and rc != 0:
            raise SyncError(f"{' '.join(argv)}: {err}")
        return out

    def start(self, argv: list[str], feed: bool = False) -> _Started:
        return _Started(self, argv)

    # --- what the tests read ---

    def commands(self, name: str) -> list[tuple[list[str], str | None]]:
        """The calls of one tool (`iptables-restore`, `nft`, ...; the backend left out)."""
        return [(a, s) for a, s in self.calls if _tool(a[0]) == name]

    def save(self, table: str | None = None) -> str:
        out = []
        for t in [table] if table else ["filter", "nat"]:
            chains = self.tables[t]
            out.append(f"*{t}")
            out += [f":{c} ACCEPT [0:0]" if c in BUILTIN[t] else f":{c} - [0:0]" for c in chains]
            out += [f"-A {c} {r}" for c, rules in chains.items() for r in rules]
            out.append("COMMIT")
        return "\n".join(out) + "\n"

    # --- the commands ---

    def _exec(self, argv: list[str], stdin: str | None) -> tuple[int, str, str]:
        err = self.fail(argv, stdin)
        if err is not None:
            return 1, "", err
        tool = _tool(argv[0])
        if tool == "iptables-save":
            return 0, self.save(argv[argv.index("-t") + 1] if "-t" in argv else None), ""
        if tool == "iptables-restore":
            try:
                self._restore(stdin or "", noflush="--noflush" in argv)
            except RestoreError as e:
                return 1, "", str(e)
            return 0, "", ""
        if tool == "iptables":
            table = argv[argv.index("-t") + 1]
            i = argv.index("-D")
            chain, rule = argv[i + 1], _quoted(argv[i + 2:])
            rules = self.tables[table].get(chain, [])
            if rule not in rules:
                return 1, "", "iptables: Bad rule (does a matching rule exist in that chain?)."
            rules.remove(rule)
            return 0, "", ""
        return 0, "", ""  # nft, ipset, conntrack: recorded only

    def _restore(self, text: str, noflush: bool) -> None:
        """iptables-restore: each table from `*name` to COMMIT applied at once, or not at all."""
        work: dict[str, list[str]] | None = None
        table = ""
        for n, line in enumerate(text.splitlines(), 1):
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                table = line[1:]
                work = {c: list(r) for c, r in self.tables[table].items()}
                if not noflush:
                    work = {c: [] for c in BUILTIN[table]}
                continue
            if work is None:
                raise RestoreError(f"line {n}: no table")
            if line == "COMMIT":
                self.tables[table], work = work, None
                continue
            if line.startswith(":"):
                work[line[1:].split()[0]] = []  # declared: made, or flushed
                continue
            op, chain, *rest = line.split(" ", 2)
            rule = rest[0] if rest else ""
            if chain not in work:
                raise RestoreError(f"line {n}: chain {chain} does not exist")
            if op == "-A":
                work[chain].append(rule)
            elif op == "-I":
                pos, _, rule = rule.partition(" ")
                work[chain].insert(int(pos) - 1, rule)
            elif op == "-C":
                if rule not in work[chain]:
                    raise RestoreError(f"line {n}: Bad rule (does a matching rule exist in that chain?)")
            elif op == "-X":
                if any(f"-j {chain} " in r + " " or f"-g {chain} " in r + " " for rs in work.values() for r in rs):
                    raise RestoreError(f"line {n}: CHAIN_DEL failed (Device or resource busy): chain {chain}")
                del work[chain]
            else:
                raise RestoreError(f"line {n}: unknown command {op}")
        if work is not None:
            raise RestoreError("COMMIT expected at the end")


class _Started:
    """A command started with its input fed as it comes (iptables-restore in a full sync)."""

    def __init__(self, runner: FakeRunner, argv: list[str]):
        self.runner, self.argv, self.chunks = runner, list(argv), []
        self.killed = False

    def write(self, text: str) -> None:
        self.chunks.append(text)

    def wait(self) -> tuple[int, str, str]:
        stdin = "".join(self.chunks)
        self.runner.calls.append((self.argv, stdin))
        return self.runner._exec(self.argv, stdin)

    def kill(self) -> None:
        self.killed = True


def _tool(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    for backend in ("-legacy", "-nft"):
        name = name.replace(f"iptables{backend}", "iptables")
    return name


def rules_of(saved: str) -> dict[str, list[str]]:
    """chain -> rules of one iptables-save table."""
    out: dict[str, list[str]] = {}
    for ln in saved.splitlines():
        if ln.startswith(":"):
            out.setdefault(ln[1:].split()[0], [])
        elif ln.startswith("-A "):
            chain, _, rule = ln[3:].partition(" ")
            out.setdefault(chain, []).append(rule)
    return out

