"""Shared test set-up: lab tests need root; the suite's state lives in a temporary root; and a
session-wide check that the suite leaked nothing (namespaces, host links, lab processes).

Everything a test makes is named with the prefix `nlt`, so the leak check can tell the suite's
objects from anything else on the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PREFIX = "nlt"
IS_ROOT = os.geteuid() == 0

# Never touch /var/lib/netlab from tests.
_STATE_ROOT = tempfile.mkdtemp(prefix="nlt-state-")
os.environ["NETLAB_STATE_ROOT"] = _STATE_ROOT


def pytest_collection_modifyitems(config, items):
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="lab test: needs root (run the suite with sudo scripts/test)")
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)


def _netns() -> set[str]:
    try:
        return {n for n in os.listdir("/run/netns") if n.startswith(PREFIX)}
    except FileNotFoundError:
        return set()


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}


def _lab_processes() -> set[str]:
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(e.startswith(b"NETLAB_LAB=" + PREFIX.encode()) for e in env):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            found.add(f"{pid} {cmd}")
    return found


def snapshot() -> dict[str, set[str]]:
    if not IS_ROOT:
        return {}
    return {"network namespaces": _netns(), "host links": _root_links(), "lab processes": _lab_processes(),
            "lab state directories": set(os.listdir(_STATE_ROOT))}


@pytest.fixture(scope="session", autouse=True)
def nothing_leaks():
    """Fails the session if any test left a namespace, host link, lab process or state behind."""
    before = snapshot()
    yield
    after = snapshot()
    leaks = {k: sorted(after[k] - before.get(k, set())) for k in after}
    leaks = {k: v for k, v in leaks.items() if v}
    shutil.rmtree(_STATE_ROOT, ignore_errors=True)
    assert not leaks, f"the test suite leaked: {leaks}"
