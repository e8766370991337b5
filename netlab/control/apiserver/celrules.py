"""CEL validation rules of CRD schemas (`x-kubernetes-validations`), evaluated with cel-python
(`celpy`, a pure-Python CEL) as upstream's apiextensions evaluates them: each rule at the schema node
that holds it, `self` bound to the value there, a false result one error at that path (plus the rule's
fieldPath) saying the rule's message, or `failed rule: <rule>`:

    spec.listeners: Invalid value: "array": Listener name must be unique within the Gateway

What upstream has and this does not: transition rules (those naming `oldSelf`) are skipped, as upstream
skips them on create; messageExpression is not evaluated (the message, or the default, is said); the
Kubernetes CEL libraries are not there but for the strings ext's `split` (what the Gateway API rules
use), so a rule calling another one, or one celpy cannot evaluate, is passed rather than refusing an
object upstream would take; no cost budget. Without celpy the rules are accepted, not evaluated.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from netlab.control.apiserver.validation import FieldError
from netlab.control.apiserver.structural import _child, _key, go_repr

log = logging.getLogger("apiserver.cel")
try:
    import celpy
    from celpy import celtypes
except ImportError:  # pragma: no cover - cel-python is a dependency; without it rules are not evaluated
    celpy = None

RULES = "x-kubernetes-validations"


def _split(s, sep, n=None):
    """The Kubernetes strings extension's split(separator[, limit]), as Go's strings.SplitN."""
    n = -1 if n is None else int(n)
    if n == 0:
        return celtypes.ListType([])
    parts = str(s).split(str(sep)) if n < 0 else str(s).split(str(sep), n - 1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


@functools.lru_cache(maxsize=4096)
def _program(rule: str):
    env = celpy.Environment()
    return env.program(env.compile(rule), functions={"split": _split})


def _type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _check(rule: dict, value: Any, path: str) -> FieldError | None:
    text = rule.get("rule") or ""
    if "oldSelf" in text:
        return None  # a transition rule: there is no old object on create, and updates are not correlated
    try:
        result = _program(text).evaluate({"self": celpy.json_to_cel(value)})
    except Exception as e:  # noqa: BLE001 - a rule celpy cannot compile or evaluate passes (see above)
        log.debug("CEL rule %r at %s not evaluated: %s", text, path, str(e).splitlines()[0][:200])
        return None
    if isinstance(result, celtypes.BoolType) and not bool(result):
        where = path + (rule.get("fieldPath") or "")
        message = rule.get("message") or f"failed rule: {text}"
        reason = rule.get("reason") or "FieldValueInvalid"
        if reason == "FieldValueForbidden":
            return FieldError(where, reason, f"Forbidden: {message}")
        if reason == "FieldValueRequired":
            return FieldError(where, reason, f"Required value: {message}")
        return FieldError(where, "FieldValueInvalid", f"Invalid value: {go_repr(_type(value))}: {message}")
    return None


def errors(x: Any, s: dict | None, path: str = "") -> list[FieldError]:
    """Every rule of schema `s` that `x` breaks, depth first as upstream walks the schema."""
    if s is None or celpy is None or x is None:
        return []
    out: list[FieldError] = []
    for rule in s.get(RULES) or []:
        if (err := _check(rule, x, path)) is not None:
            out.append(err)
    if isinstance(x, dict):
        for k, val in x.items():
            out += errors(val, _child(s, k), _key(path, k))
    elif isinstance(x, list):
        for i, it in enumerate(x):
            out += errors(it, s.get("items"), f"{path}[{i}]")
    return out
