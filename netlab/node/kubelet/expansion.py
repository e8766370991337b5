"""`$(VAR)` references, as the kubelet expands them in env values, command and args (upstream's
third_party/forked/golang/expansion): `$(NAME)` becomes NAME's value if it is defined and stays
as written if not; `$$` is an escaped `$`; a `$` before anything else, or a `$(` never closed,
is kept as it is."""

from __future__ import annotations


def expand(value: str, env: dict[str, str]) -> str:
    out, i, n = [], 0, len(value)
    while i < n:
        ch = value[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = value[i + 1]
        if nxt == "$":  # the escape: one `$`, and what follows is not a reference
            out.append("$")
            i += 2
        elif nxt == "(":
            end = value.find(")", i + 2)
            if end < 0:  # not closed: `$(` as written, the rest read on
                out.append("$(")
                i += 2
                continue
            name = value[i + 2:end]
            out.append(env[name] if name in env else f"$({name})")
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def expand_all(values: list[str] | None, env: dict[str, str]) -> list[str] | None:
    """A container's command or args, each item expanded (None stays None: the image's own)."""
    return None if values is None else [expand(v, env) for v in values]
