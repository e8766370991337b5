"""The test VM's tools (scripts/vm/), without booting one: the image's recipe and its hash (what
makes the cache rebuild), and qemu's command line (no network device, the shares, the console).
Booting and running the VM tests is scripts/test-vm's job."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

VM = Path(__file__).resolve().parent.parent / "scripts" / "vm"
sys.path.insert(0, str(VM))
image = pytest.importorskip("image")
machine = pytest.importorskip("machine")


def test_the_image_holds_provisions_packages_and_the_vms_own():
    pkgs = image.debian_packages()
    assert {"linux-image-amd64", "python3-venv", "ipvsadm", "nftables", "iproute2", "tcpdump", "kmod"} <= set(pkgs)
    assert {"etcd-server", "dnsmasq-base", "containernetworking-plugins", "ipset"} <= set(pkgs)  # provision.sh's
    assert "vagrant" not in pkgs and pkgs == sorted(set(pkgs))


def test_the_cache_key_follows_the_recipe(monkeypatch):
    base = image.base_recipe()
    key = image.recipe_key(base)
    assert key == image.recipe_key(image.base_recipe()) and len(key) == 12
    monkeypatch.setattr(image, "debian_packages", lambda repo=None: sorted(base["packages"] + ["strace"]))
    assert image.recipe_key(image.base_recipe()) != key  # another package list: another image
    assert image.recipe()["base"] == image.recipe_key(image.base_recipe())  # the Python layer sits on that base


def test_qemu_has_no_network_device_and_shares_the_checkout_read_only(tmp_path):
    img = image.Image(tmp_path / "image-x")
    argv = machine.qemu_argv(img, tmp_path / "results", accel="tcg")
    line = " ".join(argv)
    assert "-nodefaults" in argv and "-netdev" not in argv and "-nic" not in argv and "-net" not in argv
    assert f"local,path={image.REPO},mount_tag=src,security_model=none,readonly=on" in line
    assert "mount_tag=results" in line and "snapshot=on" in line and "-nographic" in argv
    assert f"file:{tmp_path / 'results' / 'console.log'}" in argv and argv[argv.index("-accel") + 1] == "tcg"
    assert "init=/usr/sbin/netlab-vm-init" in argv[argv.index("-append") + 1]
    private = ["-netdev", "socket,id=n0,listen=127.0.0.1:40000", "-device", "virtio-net-pci,netdev=n0"]
    assert machine.qemu_argv(img, tmp_path, accel="kvm", extra=private)[-4:] == private
