"""The Corefile: server blocks (`ZONE[:PORT] ... { plugin args { options } }`) for the subset of
CoreDNS that kubeadm installs and netlab serves. An unknown plugin or a malformed file is one
error naming the line."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

PLUGINS = {"errors", "health", "ready", "kubernetes", "prometheus", "forward", "cache", "loop", "reload",
           "loadbalance", "log", "hosts", "timeouts"}


class CorefileError(ValueError):
    pass


@dataclass
class Directive:
    name: str
    args: list[str]
    line: int
    block: list[Directive] = field(default_factory=list)

    def option(self, name: str) -> Directive | None:
        return next((d for d in self.block if d.name == name), None)


@dataclass
class ServerBlock:
    zones: list[str]
    port: int
    plugins: list[Directive]

    def plugin(self, name: str) -> Directive | None:
        return next((p for p in self.plugins if p.name == name), None)


def _tokens(text: str) -> list[tuple[int, list[str]]]:
    """(line number, words) per line; braces become their own words; comments dropped."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            words = shlex.split(line.replace("{", " { ").replace("}", " } "))
        except ValueError as e:
            raise CorefileError(f"Corefile line {n}: {e}") from None
        out.append((n, words))
    return out


def parse(text: str) -> list[ServerBlock]:
    lines = _tokens(text)
    blocks: list[ServerBlock] = []
    i = 0

    def parse_body(i: int, opened: int) -> tuple[list[Directive], int]:
        items: list[Directive] = []
        while i < len(lines):
            n, words = lines[i]
            if words == ["}"]:
                return items, i + 1
            if "}" in words[:-1] or (words[-1] == "}" and len(words) > 1):
                raise CorefileError(f"Corefile line {n}: put the closing '}}' on a line of its own")
            opens = words[-1] == "{"
            name, args = words[0], words[1:-1] if opens else words[1:]
            if "{" in args:
                raise CorefileError(f"Corefile line {n}: unexpected '{{'")
            d = Directive(name, args, n)
            i += 1
            if opens:
                d.block, i = parse_body(i, n)
            items.append(d)
        raise CorefileError(f"Corefile line {opened}: the '{{' opened here is never closed")

    while i < len(lines):
        n, words = lines[i]
        if words[-1] != "{":
            raise CorefileError(f"Corefile line {n}: expected a server block such as '.:53 {{'")
        keys = words[:-1]
        if not keys:
            raise CorefileError(f"Corefile line {n}: a server block needs a zone, e.g. '.:53 {{'")
        zones, port = [], 53
        for k in keys:
            k = k.removeprefix("dns://")
            zone, _, p = k.rpartition(":") if ":" in k else (k, "", "")
            if p:
                if not p.isdigit() or not 0 < int(p) < 65536:
                    raise CorefileError(f"Corefile line {n}: {k!r}: the port must be a number between 1 and 65535")
                port = int(p)
            zones.append(_fqdn(zone or "."))
        plugins, i = parse_body(i + 1, n)
        for p in plugins:
            if p.name not in PLUGINS:
                raise CorefileError(f"Corefile line {p.line}: unknown plugin {p.name!r}; netlab serves "
                                    f"{', '.join(sorted(PLUGINS))}")
        blocks.append(ServerBlock(zones, port, plugins))
    if not blocks:
        raise CorefileError("Corefile: no server block")
    return blocks


def _fqdn(z: str) -> str:
    z = z.lower()
    return z if z.endswith(".") else z + "."

