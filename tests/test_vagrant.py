"""The Vagrant VMs: the Vagrantfile (the single-VM lab and the cluster over VMs) validates, the
netlab commands its provisioning runs are ones netlab's CLI takes (what they do is tested in
test_join.py, with namespaces standing in for the VMs), and the provisioning (the same script
`scripts/setup` and `scripts/test` run) installs what it lists on this machine, idempotently."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

VAGRANT = Path(__file__).resolve().parent.parent / "vagrant"


@pytest.mark.skipif(not shutil.which("vagrant"), reason="vagrant is not installed (scripts/test installs it)")
def test_vagrantfile_validates():
    r = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=VAGRANT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"})
    assert r.returncode == 0 and "validated successfully" in r.stdout, r.stdout + r.stderr
    assert 'path: "provision.sh"' in (VAGRANT / "Vagrantfile").read_text()


def test_the_vms_provisioning_commands_are_netlabs():
    from netlab.tools.cli import parser
    from netlab.kit.cluster import Cluster

    text = (VAGRANT / "Vagrantfile").read_text()
    for machine in ("netlab", "cp", "worker#{i}"):
        assert f'config.vm.define "{machine}"' in text
    values = {"CP_IP": "192.168.56.10", "TOKEN": "abcdef.0123456789abcdef", "i": "1"}
    lines = text.replace("\\\n", " ")  # shell line continuations joined
    commands = [re.sub(r"#\{(\w+)\}", lambda m: values[m.group(1)], cmd).split()
                for cmd in re.findall(r"\|\| (netlab (?:init|join) .*)", lines)]
    assert sorted(c[1] for c in commands) == ["init", "join"]
    for argv in commands:
        args = parser().parse_args(argv[1:])
        if argv[1] == "init":
            cluster = Cluster.load(args.config.replace("/netlab/", f"{VAGRANT.parent}/"))
            assert cluster.store.startswith("etcd://") and cluster.backend == "host-gw"
        else:
            assert args.server == "192.168.56.10:6443" and args.token == values["TOKEN"]


@pytest.mark.lab
def test_provision_installs_its_packages_and_is_idempotent():
    script = (VAGRANT / "provision.sh").read_text()
    packages = re.search(r"packages=\(\n(.*?)\n\)", script, re.S).group(1).split()
    repo = VAGRANT.parent
    stamp = repo / ".venv" / ".netlab-installed"
    before = stamp.stat().st_mtime if stamp.exists() else None
    r = subprocess.run([str(VAGRANT / "provision.sh"), str(repo)], capture_output=True, text=True, timeout=900,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    for p in packages:
        st = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout
        assert st == "install ok installed", p
    assert stamp.exists() and (before is None or stamp.stat().st_mtime == before)  # nothing reinstalled
    r = subprocess.run([str(repo / ".venv" / "bin" / "python"), "-c", "import netlab, cni, coredns, proxy"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
