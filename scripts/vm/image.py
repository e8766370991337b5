#!/usr/bin/env python3
"""The test VM's image: Debian's own kernel, and a root filesystem that mmdebstrap makes from
Debian's packages only, with a virtualenv at /opt/netlab/venv holding the project's Python
dependencies (wheels downloaded on the host, installed with no index) and the project installed
editable from /src, where every boot puts a fresh copy of the checkout.

Cached in the cache directory (NETLAB_VM_CACHE, default /var/cache/netlab-vm) as image-<hash>/, the
hash taken over the recipe: the package lists (scripts/vm/packages.txt and vagrant/provision.sh's),
the suite, the VM's init and pyproject.toml. So it is built once (about 2 minutes) and again only
when one of those changes; a build of another recipe replaces it.

    python3 scripts/vm/image.py [--cache DIR] [--rebuild]   # builds if needed, prints the image's directory
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_CACHE = Path(os.environ.get("NETLAB_VM_CACHE", "/var/cache/netlab-vm"))
SUITE = os.environ.get("NETLAB_VM_SUITE", "bookworm")
SIZE = "4G"  # sparse; about 1 GiB of it is used
VENV = "/opt/netlab/venv"
# Bumped when the build procedure changes in a way the recipe's other parts do not show.
PROCEDURE = 1
# The modules the initrd loads to find the root filesystem (no udev in the initrd, so they are listed).
INITRD_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
# What the checkout's copy leaves out (the host's virtualenv, git, caches).
EXCLUDES = ("./.venv", "./.git", "./.cache", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info")


class ImageError(Exception):
    pass


class Image:
    """A built image's files: rootfs.img (ext4, used with snapshot=on so it never changes), the
    kernel and the initrd that boot it."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.rootfs = directory / "rootfs.img"
        self.kernel = directory / "vmlinuz"
        self.initrd = directory / "initrd.img"
        self.vmlinux = directory / "vmlinux"

    @property
    def boot_kernel(self) -> Path:
        """The uncompressed kernel where there is one: qemu boots it by its PVH entry, skipping the
        firmware and the decompression (some 15 s under TCG); else the kernel as Debian ships it."""
        return self.vmlinux if self.vmlinux.exists() else self.kernel

    @property
    def ready(self) -> bool:
        return (self.dir / "recipe.json").exists() and all(p.exists() for p in (self.rootfs, self.kernel, self.initrd))


def debian_packages(repo: Path = REPO) -> list[str]:
    """scripts/vm/packages.txt and the packages vagrant/provision.sh installs for netlab and its tests."""
    own = [line.split("#")[0].strip() for line in (HERE / "packages.txt").read_text().splitlines()]
    m = re.search(r"^packages=\(([^)]*)\)", (repo / "vagrant" / "provision.sh").read_text(), re.M)
    if not m:
        raise ImageError("vagrant/provision.sh: no packages=( ... ) list to read")
    return sorted({p for p in own + m.group(1).split() if p})


def recipe(repo: Path = REPO) -> dict:
    return {
        "procedure": PROCEDURE,
        "suite": SUITE,
        "size": SIZE,
        "packages": debian_packages(repo),
        "initrd_modules": list(INITRD_MODULES),
        "init": hashlib.sha256((HERE / "init").read_bytes()).hexdigest(),
        "pyproject": hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest(),
    }


def recipe_key(r: dict) -> str:
    return hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:12]


def build(repo: Path = REPO, cache: Path = DEFAULT_CACHE, rebuild: bool = False, log=print) -> Image:
    """The image for this checkout's recipe, built first if the cache lacks it. Builds are serialised
    by a lock in the cache, so two runs at once build it once."""
    for tool in ("mmdebstrap", "mkfs.ext4"):
        if not shutil.which(tool):
            raise ImageError(f"{tool} is not installed (apt-get install mmdebstrap e2fsprogs)")
    cache.mkdir(parents=True, exist_ok=True)
    r = recipe(repo)
    key = recipe_key(r)
    image = Image(cache / f"image-{key}")
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.ready and not rebuild:
            if not image.vmlinux.exists():
                _uncompress_kernel(image.kernel, image.vmlinux)
            return image
        started = time.monotonic()
        log(f"netlab-vm: building the image {image.dir.name} ({len(r['packages'])} Debian packages, {SUITE})")
        _build(repo, r, image, cache / f"build-{key}")
        for old in cache.glob("image-*"):
            if old != image.dir:
                shutil.rmtree(old, ignore_errors=True)
        log(f"netlab-vm: image built in {time.monotonic() - started:.0f}s: {image.dir}")
    return image


def _build(repo: Path, r: dict, image: Image, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(image.dir, ignore_errors=True)
    work.mkdir(parents=True)
    root, wheels = work / "root", work / "wheels"
    modules = "\\n".join(INITRD_MODULES)
    cmd = [
        "mmdebstrap", "--mode=root", "--variant=minbase", "--quiet",
        "--include=" + ",".join(r["packages"]),
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        # No udev in the initrd: its coldplug is most of a TCG boot, and the listed modules need none.
        "--dpkgopt=path-exclude=/usr/share/initramfs-tools/hooks/udev",
        "--dpkgopt=path-exclude=/usr/share/initramfs-tools/scripts/init-top/udev",
        "--dpkgopt=path-exclude=/usr/share/initramfs-tools/scripts/init-bottom/udev",
        # Before the kernel is installed: an initrd of the listed modules only (small, quick to boot).
        "--essential-hook=mkdir -p \"$1/etc/initramfs-tools/conf.d\" \"$1/usr/share/initramfs-tools/modules.d\""
        " && echo MODULES=list > \"$1/etc/initramfs-tools/conf.d/netlab-vm.conf\""
        f" && printf '{modules}\\n' > \"$1/usr/share/initramfs-tools/modules.d/netlab-vm\"",
        f"--customize-hook=install -m 0755 {HERE / 'init'} \"$1/usr/sbin/netlab-vm-init\"",
        f"--customize-hook={sys.executable} {Path(__file__).resolve()} venv \"$1\" --repo {repo} --wheels {wheels}",
        "--customize-hook=echo netlab-vm > \"$1/etc/hostname\"; printf '127.0.0.1 localhost\\n::1 localhost\\n'"
        " > \"$1/etc/hosts\"; : > \"$1/etc/resolv.conf\"",
        r["suite"], str(root),
    ]
    _run(cmd, "mmdebstrap")
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise ImageError(f"the image has no kernel or initrd in /boot: {os.listdir(root / 'boot')}")
    tmp = image.dir.with_name(image.dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    shutil.copy(kernels[-1], tmp / "vmlinuz")
    shutil.copy(initrds[-1], tmp / "initrd.img")
    _uncompress_kernel(tmp / "vmlinuz", tmp / "vmlinux")
    _run(["mkfs.ext4", "-q", "-F", "-L", "netlab-root", "-d", str(root), str(tmp / "rootfs.img"), SIZE], "mkfs.ext4")
    (tmp / "recipe.json").write_text(json.dumps({**r, "kernel": kernels[-1].name}, indent=1) + "\n")
    tmp.rename(image.dir)
    shutil.rmtree(work, ignore_errors=True)


def _uncompress_kernel(bzimage: Path, vmlinux: Path) -> None:
    """The ELF kernel inside a bzImage (xz or gzip payload, Debian's are xz); nothing if neither is
    found, and then the VM boots the bzImage."""
    data = bzimage.read_bytes()
    for magic, decompressor in ((b"\xfd7zXZ\x00", lzma.LZMADecompressor), (b"\x1f\x8b\x08", lambda: zlib.decompressobj(31))):
        at = data.find(magic)
        if at < 0:
            continue
        try:
            elf = decompressor().decompress(data[at:])
        except (lzma.LZMAError, zlib.error):
            continue
        if elf.startswith(b"\x7fELF"):
            tmp = vmlinux.with_suffix(".tmp")
            tmp.write_bytes(elf)
            tmp.rename(vmlinux)
            return


def venv(root: Path, repo: Path, wheels: Path) -> None:
    """mmdebstrap's customize hook: in the finished tree at `root`, a virtualenv with the project
    (editable, from /src) and its test extras, from wheels downloaded here on the host for the
    image's Python and C library. Nothing in the tree ever reaches an index."""
    info = _chroot(root, "python3", "-c",
                   "import platform, sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}', platform.libc_ver()[1])")
    pyver, libc = info.split()
    glibc_minor = int(libc.split(".")[1])
    src = root / "src"
    _copy_checkout(repo, src)
    reqs = _chroot(root, "python3", "-c", _REQUIREMENTS).split("\n")
    platforms = [f"manylinux_2_{m}_x86_64" for m in range(5, glibc_minor + 1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    wheels.mkdir(parents=True, exist_ok=True)
    _run([*_host_pip(repo), "download", "-q", "--disable-pip-version-check", "-d", str(wheels), "--only-binary=:all:",
          "--python-version", pyver, "--implementation", "cp", *[a for p in platforms for a in ("--platform", p)],
          *[q for q in reqs if q]], "pip download (on the host)")
    shutil.copytree(wheels, root / "tmp" / "wheels")
    _chroot(root, "python3", "-m", "venv", VENV)
    _chroot(root, f"{VENV}/bin/pip", "install", "-q", "--disable-pip-version-check", "--no-index",
            "--find-links", "/tmp/wheels", "-e", "/src[test]")
    shutil.rmtree(root / "tmp" / "wheels")
    shutil.rmtree(src)  # every boot copies the checkout here afresh
    src.mkdir()


# Run by the image's python3: the project's requirements (dependencies, test extras, build system).
_REQUIREMENTS = """
import tomllib
p = tomllib.load(open('/src/pyproject.toml', 'rb'))
print('\\n'.join(p['project']['dependencies'] + p['project']['optional-dependencies']['test']
                + p['build-system']['requires']))
"""


def _copy_checkout(repo: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    excludes = [f"--exclude={e}" for e in EXCLUDES]
    pack = subprocess.Popen(["tar", "-C", str(repo), *excludes, "-cf", "-", "."], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-C", str(dest), "-xf", "-"], stdin=pack.stdout, check=True)
    if pack.wait():
        raise ImageError(f"tar of {repo} failed")


def _host_pip(repo: Path) -> list[str]:
    for py in (sys.executable, str(repo / ".venv" / "bin" / "python"), "python3"):
        if subprocess.run([py, "-m", "pip", "--version"], capture_output=True).returncode == 0:
            return [py, "-m", "pip"]
    raise ImageError("no pip on the host to download the project's wheels with (apt-get install python3-pip)")


def _chroot(root: Path, *argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    r = subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, env=env)
    if r.returncode:
        raise ImageError(f"in the image: {' '.join(argv)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout.strip()


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise ImageError(f"{what} failed (exit {r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd")
    hook = sub.add_parser("venv", help="(mmdebstrap's customize hook)")
    hook.add_argument("root", type=Path)
    hook.add_argument("--repo", type=Path, required=True)
    hook.add_argument("--wheels", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--rebuild", action="store_true", help="build even if the cache has this recipe's image")
    a = p.parse_args(argv)
    try:
        if a.cmd == "venv":
            venv(a.root, a.repo, a.wheels)
            return 0
        print(build(REPO, a.cache, a.rebuild, log=lambda m: print(m, file=sys.stderr)).dir)
        return 0
    except ImageError as e:
        print(f"netlab-vm: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
