"""Shared test set-up: lab tests need root; the suite's state lives in a temporary root; and a
session-wide check that the suite leaked nothing (namespaces, host links, lab processes).

Everything a test makes is named with the prefix `nlt`, so the leak check can tell the suite's
objects from anything else on the machine.

Run in parallel (pytest-xdist, as scripts/test does), the modules with lab tests run in order on
one worker, and every other module goes whole to a worker (its module-scoped control plane exists
once): the scheduler below. The leak check runs once, in the controlling process, around them all.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PREFIX = "nlt"
IS_ROOT = os.geteuid() == 0

# Never touch /var/lib/netlab from tests. One root for the whole run: workers inherit it.
_STATE_ROOT = os.environ.get("NLT_SUITE_STATE_ROOT") or tempfile.mkdtemp(prefix="nlt-state-")
os.environ["NLT_SUITE_STATE_ROOT"] = os.environ["NETLAB_STATE_ROOT"] = _STATE_ROOT


def pytest_collection_modifyitems(config, items):
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="lab test: needs root (run the suite with sudo scripts/test)")
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)


@functools.cache
def _has_lab_tests(path: Path) -> bool:
    """A test module that marks lab tests or uses the session lab (read from its text: the
    controlling process collects nothing)."""
    try:
        return bool(re.search(r"mark\.lab\b|netlab_lab", path.read_text()))
    except OSError:
        return False


def pytest_xdist_make_scheduler(config, log):
    """Lab modules one after another on one worker, beside the others (each a unit of its own)."""
    from xdist.scheduler import LoadScopeScheduling

    class LabsInOrder(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "lab" if _has_lab_tests(config.rootpath / path) else path

    return LabsInOrder(config, log)


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


_BEFORE = pytest.StashKey[dict]()


def _controller(config) -> bool:
    return not hasattr(config, "workerinput")  # not an xdist worker


def pytest_sessionstart(session):
    if _controller(session.config):
        session.config.stash[_BEFORE] = snapshot()


def pytest_sessionfinish(session, exitstatus):
    """Fails the run if any test left a namespace, host link, lab process or state behind."""
    if not _controller(session.config):
        return
    before, after = session.config.stash.get(_BEFORE, {}), snapshot()
    leaks = {k: sorted(after[k] - before.get(k, set())) for k in after}
    leaks = {k: v for k, v in leaks.items() if v}
    shutil.rmtree(_STATE_ROOT, ignore_errors=True)
    if leaks:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"the test suite leaked: {leaks}", red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
