"""Label and field selectors: the query syntax (`a=b,c in (x,y),!d`) that lists and watches take,
and the LabelSelector objects (matchLabels, matchExpressions) that Deployments and Services hold."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Selector:
    """A parsed label or field selector: (key, op, values) requirements, all of which must hold."""
    requirements: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)

    def matches(self, get) -> bool:
        for key, op, values in self.requirements:
            have = get(key)
            if op in ("=", "==", "in"):
                if have is None or have not in values:
                    return False
            elif op in ("!=", "notin"):
                if have is not None and have in values:
                    return False
            elif op == "exists":
                if have is None:
                    return False
            elif op == "!":
                if have is not None:
                    return False
            elif op in ("gt", "lt"):
                if have is None or not _INTEGER.fullmatch(have) or not (
                        int(have) > int(values[0]) if op == "gt" else int(have) < int(values[0])):
                    return False
        return True


def parse_selector(text: str, field_selector: bool = False) -> Selector:
    """A label selector (`a=b,c!=d,e in (x,y),f notin (z),g,!h,n>1`) or a field selector
    (`k=v,k==v,k!=v`); raises ValueError with upstream's message."""
    return parse_fields(text) if field_selector else parse_labels(text)


# --- label selectors, as upstream's labels.Parse lexes and parses them ----------------------

_SYMBOLS = ("!=", "==", "=", "!", "(", ")", ",", ">", "<")
_SPECIAL = set("=!(),><")
_KEYWORDS = {"in", "notin"}
_BINARY = "in, notin, =, ==, !=, gt, lt"
_INTEGER = re.compile(r"[+-]?[0-9]+")
_END = ("end", "")


def _lex(text: str) -> list[tuple[str, str]]:
    """(token, literal) pairs: a symbol, `in`/`notin`, `id`, then `end`."""
    out, i = [], 0
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i == len(text):
            out.append(_END)
            return out
        if text[i] in _SPECIAL:
            sym = next(s for s in _SYMBOLS if text.startswith(s, i))
            out.append((sym, sym))
            i += len(sym)
            continue
        j = i
        while j < len(text) and text[j] not in _SPECIAL and text[j] not in " \t\r\n":
            j += 1
        word = text[i:j]
        out.append((word if word in _KEYWORDS else "id", word))
        i = j


class _Parser:
    def __init__(self, text: str):
        self.tokens, self.pos = _lex(text), 0

    def peek(self, values: bool = True) -> tuple[str, str]:
        tok, lit = self.tokens[min(self.pos, len(self.tokens) - 1)]
        return ("id", lit) if values and tok in _KEYWORDS else (tok, lit)

    def take(self, values: bool = True) -> tuple[str, str]:
        out = self.peek(values)
        self.pos += 1
        return out

    def parse(self) -> Selector:
        sel = Selector()
        while True:
            tok, lit = self.peek()
            if tok == "end":
                return sel
            if tok not in ("id", "!"):
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                sel.requirements.append(self.requirement())
            except ValueError as e:
                raise ValueError(f"unable to parse requirement: {e}") from None
            tok, lit = self.take()
            if tok == "end":
                return sel
            if tok != ",":
                raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self.peek()
            if tok not in ("id", "!"):
                raise ValueError(f"found '{lit}', expected: identifier after ','")

    def requirement(self) -> tuple[str, str, tuple[str, ...]]:
        tok, key = self.take()
        negated = tok == "!"
        if negated:
            tok, key = self.take()
        if tok != "id":
            raise ValueError(f"found '{key}', expected: identifier")
        if negated:
            return key, "!", ()
        if self.peek()[0] in ("end", ","):
            return key, "exists", ()
        tok, lit = self.take(values=False)
        op = {"in": "in", "notin": "notin", "=": "=", "==": "==", "!=": "!=", ">": "gt", "<": "lt"}.get(tok)
        if op is None:
            raise ValueError(f"found '{lit}', expected: {_BINARY}")
        values = self.values() if op in ("in", "notin") else self.exact_value()
        if op in ("gt", "lt") and not _INTEGER.fullmatch(values[0]):
            raise ValueError(f"values[0]: Invalid value: \"{values[0]}\": for 'Gt', 'Lt' operators, the value must "
                             "be an integer")
        return key, op, values

    def exact_value(self) -> tuple[str, ...]:
        if self.peek()[0] in ("end", ","):
            return ("",)
        tok, lit = self.take()
        if tok != "id":
            raise ValueError(f"found '{lit}', expected: identifier")
        return (lit,)

    def values(self) -> tuple[str, ...]:
        tok, lit = self.take()
        if tok != "(":
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.peek()
        if tok == ")":
            self.take()
            return ("",)
        if tok not in ("id", ","):
            raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
        out: list[str] = []
        while True:  # a list of identifiers, some possibly empty: (a,,b)
            tok, lit = self.take()
            if tok == "id":
                out.append(lit)
                tok2, lit2 = self.peek()
                if tok2 == ")":
                    break
                if tok2 != ",":
                    raise ValueError(f"found '{lit2}', expected: ',' or ')'")
            elif tok == ",":
                if not out:
                    out.append("")
                tok2, _ = self.peek()
                if tok2 == ")":
                    out.append("")
                    break
                if tok2 == ",":
                    out.append("")
            else:
                raise ValueError(f"found '{lit}', expected: ',' or identifier")
        tok, _ = self.take()
        if tok != ")":
            raise ValueError(f"found '{lit}', expected: ')'")
        return tuple(sorted(set(out)))


def parse_labels(text: str) -> Selector:
    return _Parser(text).parse()


# --- field selectors, as upstream's fields.ParseSelector reads them --------------------------

def parse_fields(text: str) -> Selector:
    sel = Selector()
    for part in sorted(_split_unescaped(text, ",")):
        if not part:
            continue
        for i in range(len(part)):
            op = next((o for o in ("!=", "==", "=") if part.startswith(o, i)), None)
            if op:
                key, value = part[:i], part[i + len(op):]
                break
        else:
            raise ValueError(f"invalid selector: '{text}'; can't understand '{part}'")
        sel.requirements.append((key, op, (_unescape(value),)))
    return sel


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, escaped = [], "", False
    for ch in text:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\":
            cur += ch
            escaped = True
        elif ch == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def field_value(obj: dict, path: str) -> str | None:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None if path not in ("spec.nodeName", "status.phase") else ""
        cur = cur[part]
    return cur if isinstance(cur, str) else (None if cur is None else str(cur).lower() if isinstance(cur, bool)
                                            else str(cur))


def selector_matches(selector: dict, labels: dict) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
