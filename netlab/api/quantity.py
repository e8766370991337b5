"""resource.Quantity as upstream reads and writes it: exact values (Fractions), and the canonical
text of a sum (binary suffixes Ki..Ei when the first term had one, else decimal n/u/m/k/M/G...).
The binder compares capacities with it, the quota controller and admission add usage with it."""

from __future__ import annotations

import re
from fractions import Fraction

QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
DECIMAL = {"n": Fraction(1, 10 ** 9), "u": Fraction(1, 10 ** 6), "m": Fraction(1, 1000), "": 1, "k": 10 ** 3,
           "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18}
MESSAGE = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def parse(text: object) -> Fraction:
    """The exact value of a quantity; raises ValueError with upstream's message."""
    if isinstance(text, bool):
        raise ValueError(MESSAGE)
    if isinstance(text, (int, float)):
        return Fraction(str(text))
    m = QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(MESSAGE)
    number, suffix = Fraction(m.group(1)), m.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return number * Fraction(10) ** int(suffix[1:])
    return number * (BINARY.get(suffix) or DECIMAL[suffix])


def valid(text: object) -> bool:
    try:
        parse(text)
        return True
    except ValueError:
        return False


def is_binary(text: object) -> bool:
    return isinstance(text, str) and text.strip()[-2:] in BINARY


def format(value: Fraction | int, binary: bool = False) -> str:  # noqa: A001 - upstream's Quantity.String
    """The canonical text of `value`: the largest suffix that keeps it whole (upstream rounds
    a fraction of a milli-unit up)."""
    value = Fraction(value)
    if value == 0:
        return "0"
    sign, value = ("-" if value < 0 else ""), abs(value)
    if binary and value.denominator == 1:
        for suffix, scale in reversed(BINARY.items()):
            if value % scale == 0:
                return f"{sign}{value // scale}{suffix}"
        return f"{sign}{value}"
    for suffix in ("E", "P", "T", "G", "M", "k", "", "m", "u", "n"):
        scaled = value / DECIMAL[suffix]
        if scaled.denominator == 1:
            return f"{sign}{scaled.numerator}{suffix}"
    return f"{sign}{-(-value * 10 ** 9 // 1)}n"


def canonical(text: object) -> str:
    """A quantity's text as upstream stores it (`1024Mi` -> `1Gi`, `1000m` -> `1`)."""
    return format(parse(text), is_binary(text))
