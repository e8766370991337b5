"""The packet-level test docs/testing.md shows is run as it is written, so the example a user
copies works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def test_the_documented_example_passes(netlab_lab):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)  # noqa: S102 - the documentation's own example
    tests = [fn for name, fn in scope.items() if name.startswith("test_")]
    assert tests
    try:
        for fn in tests:
            fn(netlab_lab)
    finally:
        netlab_lab.kubectl("delete", "-f", str(DOC.parent.parent / "examples" / "web.yaml"), "--ignore-not-found")
