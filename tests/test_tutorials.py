"""Every tutorial in docs/tutorials runs, unchanged, printing its explanations in Korean and in
English, as the suite's own check that none goes stale: the ones that use a running lab on the
session lab, the ones that make their own labs under names and subnets of the suite's."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import subprocess

pytestmark = pytest.mark.lab
TUTORIALS = sorted((Path(__file__).resolve().parent.parent / "docs" / "tutorials").glob("[0-9]*.sh"))
OWN_LABS = {"07-nftables-mode.sh": ("nlt07", "172.30.7", "10.207"),
            "08-host-gw-vs-vxlan.sh": ("nlt08", "172.30.8", "10.208")}


@pytest.mark.parametrize("script", TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_runs(netlab_lab, script):
    # ko,en: every explanation in Korean, then in English, from one run of the commands
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", NETLAB_NAME=netlab_lab.name,
               NETLAB_LANG="ko,en")
    if script.name in OWN_LABS:
        prefix, net, pods = OWN_LABS[script.name]
        env.update(TUTORIAL_LAB_PREFIX=prefix, TUTORIAL_NET=net, TUTORIAL_PODS=pods)
    r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"{script.name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    lines = r.stdout.splitlines()
    steps = [(line, lines[i + 1]) for i, line in enumerate(lines[:-1]) if line.startswith("\033[1m== ")]
    assert steps, "it explained no step"
    hangul = re.compile("[\uac00-\ud7a3]")
    for korean, english in steps:
        assert hangul.search(korean) and english.startswith("   ") and not hangul.search(english), (korean, english)

