"""Label and field selectors: the query syntax (`a=b,c in (x,y),!d`) that lists and watches take,
and the LabelSelector objects (matchLabels, matchExpressions) that Deployments and Services hold."""

from __future__ import annotations

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
        return True


def parse_selector(text: str, field_selector: bool = False) -> Selector:
    """Kubernetes label selector syntax (`a=b,c!=d,e in (x,y),f notin (z),g,!h`); field
    selectors accept only =, == and !=. Raises ValueError with the offending term."""
    sel = Selector()
    if not text:
        return sel
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    for raw in terms:
        term = raw.strip()
        if not term:
            raise ValueError(f"invalid selector: {text!r}")
        for op in ("!=", "==", "="):
            if op in term:
                k, v = term.split(op, 1)
                sel.requirements.append((k.strip(), op, (v.strip(),)))
                break
        else:
            if field_selector:
                raise ValueError(f"invalid field selector: {term!r}: expected key=value or key!=value")
            parts = term.split(None, 1)
            if len(parts) == 2 and parts[1].startswith(("in ", "in(", "notin ", "notin(")):
                op, rest = parts[1].split("(", 1) if "(" in parts[1] else (parts[1], "")
                values = tuple(v.strip() for v in rest.rstrip(")").split(",") if v.strip())
                sel.requirements.append((parts[0], op.strip(), values))
            elif term.startswith("!"):
                sel.requirements.append((term[1:].strip(), "!", ()))
            elif " " not in term:
                sel.requirements.append((term, "exists", ()))
            else:
                raise ValueError(f"invalid label selector term: {term!r}")
    return sel


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
