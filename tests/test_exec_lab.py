"""`netlab exec POD` enters the container as kubectl exec does, its PID namespace too: `kill 1`
there reaches the container's first process, never the host's init."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_kubelet_volumes import running

pytestmark = pytest.mark.lab

POD = """
apiVersion: v1
kind: Pod
metadata: {name: nlt-pidns}
spec:
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
"""


def test_netlab_exec_is_in_the_pods_pid_namespace(netlab_lab):
    lab = netlab_lab
    lab.apply(POD)
    try:
        running(lab, "nlt-pidns")
        netlab = Path(sys.executable).with_name("netlab")
        env = dict(os.environ, NETLAB_NAME=lab.name)
        out = subprocess.run([str(netlab), "exec", "nlt-pidns", "--", "cat", "/proc/1/cmdline"], env=env,
                             capture_output=True, timeout=30).stdout
        assert out.split(b"\0")[:2] == [b"sleep", b"3600"], out  # the container's first process, not init
        r = lab.exec("nlt-pidns", ["cat", "/proc/1/cmdline"])
        assert r.stdout.split("\0")[:2] == ["sleep", "3600"], r.stdout
    finally:
        lab.kubectl("delete", "pod", "nlt-pidns", "--grace-period=0", "--force", check=False)
