"""The suite's own leak check fails a run that leaves something of the suite's behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="makes a network namespace: needs root")


@pytest.mark.parametrize("parallel", [[], ["--numprocesses", "2"]], ids=["serial", "xdist"])
def test_a_leaked_namespace_fails_the_run(tmp_path, parallel):
    tests = Path(__file__).resolve().parent
    (tmp_path / "conftest.py").write_text((tests / "conftest.py").read_text())
    (tmp_path / "test_leaky.py").write_text(
        "import subprocess\n\ndef test_leaves_a_namespace():\n"
        "    subprocess.run(['ip', 'netns', 'add', 'nltleakprobe'], check=True)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NLT_SUITE_STATE_ROOT", "NETLAB_STATE_ROOT")}
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *parallel, str(tmp_path)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["ip", "netns", "del", "nltleakprobe"], capture_output=True)
    # (the lab tests running beside this one may show up too: only the probe is certain)
    leaked = re.search(r"the test suite leaked: (.*)", r.stdout)
    assert r.returncode == 1 and leaked and "'nltleakprobe'" in leaked.group(1), r.stdout
