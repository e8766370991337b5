#!/usr/bin/env python3
"""The test VM's image: Debian's own kernel, and a root filesystem that mmdebstrap makes from
Debian's packages only, with a virtualenv at /opt/netlab/venv holding the project's Python
dependencies (wheels downloaded on the host, installed with no index) and the project installed
editable from /src, where every boot puts a fresh copy of the checkout.

Cached in the cache directory (NETLAB_VM_CACHE, default /var/cache/netlab-vm) in two layers, each
named by a hash of what goes into it:
  base-<hash>/   the Debian tree, kernel and initrd: the package lists (scripts/vm/packages.txt and
                 vagrant/provision.sh's), the suite and the VM's init. About 2-5 minutes to build.
  image-<hash>/  rootfs.img: the base plus the Python layer (pyproject.toml). Some 30 seconds.
A build of another recipe replaces the older one.

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
SIZE = "4G"  # sparse; about 1.2 GiB of it is used
VENV = "/opt/netlab/venv"
# Bumped when the build procedure changes in a way the recipe's other parts do not show.
PROCEDURE = 2
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


def base_recipe(repo: Path = REPO) -> dict:
    return {
        "procedure": PROCEDURE,
        "suite": SUITE,
        "packages": debian_packages(repo),
        "initrd_modules": list(INITRD_MODULES),
        "init": _sha((HERE / "init").read_bytes()),
    }


def recipe(repo: Path = REPO) -> dict:
    return {"base": recipe_key(base_recipe(repo)), "size": SIZE, "pyproject": _sha((repo / "pyproject.toml").read_bytes())}


def recipe_key(r: dict) -> str:
    return _sha(json.dumps(r, sort_keys=True).encode())[:12]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(repo: Path = REPO, cache: Path = DEFAULT_CACHE, rebuild: bool = False, log=print) -> Image:
    """The image for this checkout's recipe, built first if the cache lacks it. Builds are serialised
    by a lock in the cache, so two runs at once build it once."""
    for tool in ("mmdebstrap", "mkfs.ext4", "unshare"):
        if not shutil.which(tool):
            raise ImageError(f"{tool} is not installed (apt-get install mmdebstrap e2fsprogs util-linux)")
    cache.mkdir(parents=True, exist_ok=True)
    br, r = base_recipe(repo), recipe(repo)
    base, image = Image(cache / f"base-{recipe_key(br)}"), Image(cache / f"image-{recipe_key(r)}")
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.ready and not rebuild:
            return image
        started = time.monotonic()
        if not (base.dir / "recipe.json").exists() or rebuild:
            log(f"netlab-vm: building the base {base.dir.name} ({len(br['packages'])} Debian packages, {SUITE})")
            _build_base(br, base)
            _prune(cache, "base-*", base.dir)
        log(f"netlab-vm: building the image {image.dir.name} (the base and the project's Python packages)")
        _build_image(repo, r, base, image, cache / "wheels")
        _prune(cache, "image-*", image.dir)
        log(f"netlab-vm: image built in {time.monotonic() - started:.0f}s: {image.dir}")
    return image


def _prune(cache: Path, pattern: str, keep: Path) -> None:
    for old in cache.glob(pattern):
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def _build_base(r: dict, base: Image) -> None:
    tmp = base.dir.with_name(base.dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(base.dir, ignore_errors=True)
    tmp.mkdir(parents=True)
    root = tmp / "root"
    modules = "\\n".join(INITRD_MODULES)
    _run([
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
        "--customize-hook=echo netlab-vm > \"$1/etc/hostname\"; printf '127.0.0.1 localhost\\n::1 localhost\\n'"
        " > \"$1/etc/hosts\"; : > \"$1/etc/resolv.conf\"; mkdir -p \"$1/src\"",
        r["suite"], str(root),
    ], "mmdebstrap")
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise ImageError(f"the image has no kernel or initrd in /boot: {os.listdir(root / 'boot')}")
    shutil.copy(kernels[-1], tmp / "vmlinuz")
    shutil.copy(initrds[-1], tmp / "initrd.img")
    _uncompress_kernel(tmp / "vmlinuz", tmp / "vmlinux")
    (tmp / "recipe.json").write_text(json.dumps({**r, "kernel": kernels[-1].name}, indent=1) + "\n")
    tmp.rename(base.dir)


def _build_image(repo: Path, r: dict, base: Image, image: Image, wheels: Path) -> None:
    tmp = image.dir.with_name(image.dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(image.dir, ignore_errors=True)
    tmp.mkdir(parents=True)
    root = base.dir / "root"
    try:
        _python_layer(root, repo, wheels)
        _run(["mkfs.ext4", "-q", "-F", "-L", "netlab-root", "-d", str(root), str(tmp / "rootfs.img"), SIZE], "mkfs.ext4")
    finally:
        _clean_tree(root)  # the base tree stays as mmdebstrap made it
    for name in ("vmlinuz", "vmlinux", "initrd.img"):
        if (base.dir / name).exists():
            os.link(base.dir / name, tmp / name)
    (tmp / "recipe.json").write_text(json.dumps(r, indent=1) + "\n")
    tmp.rename(image.dir)


def _clean_tree(root: Path) -> None:
    for d in (root / "opt" / "netlab", root / "src", root / "tmp"):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "opt" / "netlab").rmdir()


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
            vmlinux.write_bytes(elf)
            return


def _python_layer(root: Path, repo: Path, wheels: Path) -> None:
    """In the base tree at `root`, a virtualenv with the project (editable, from /src) and its test
    extras, from wheels downloaded here on the host for the tree's Python and C library. Nothing in
    the tree ever reaches an index."""
    _clean_tree(root)
    info = _chroot(root, "python3", "-c",
                   "import platform, sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}', platform.libc_ver()[1])")
    pyver, libc = info.split()
    glibc_minor = int(libc.split(".")[1])
    _copy_checkout(repo, root / "src")
    reqs = [q for q in _chroot(root, "python3", "-c", _REQUIREMENTS).split("\n") if q]
    platforms = [f"manylinux_2_{m}_x86_64" for m in range(5, glibc_minor + 1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    wheels.mkdir(parents=True, exist_ok=True)  # kept between builds: pip downloads only what is new
    _run([*_host_pip(repo), "download", "-q", "--disable-pip-version-check", "-d", str(wheels), "--only-binary=:all:",
          "--python-version", pyver, "--implementation", "cp", *[a for p in platforms for a in ("--platform", p)],
          *reqs], "pip download (on the host)")
    shutil.copytree(wheels, root / "tmp" / "wheels")
    _chroot(root, "python3", "-m", "venv", VENV)
    _chroot(root, f"{VENV}/bin/pip", "install", "-q", "--disable-pip-version-check", "--no-index",
            "--find-links", "/tmp/wheels", "-e", "/src[test]")
    # every boot copies the checkout to /src afresh; the wheels are not needed any more
    for d in (root / "src", root / "tmp"):
        shutil.rmtree(d)
        d.mkdir()
    (root / "tmp").chmod(0o1777)


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
    """`argv` run in the tree, with /dev and /proc there for it, in a mount namespace of its own (so
    nothing stays mounted in the tree whatever happens)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    script = 'mount --rbind /dev "$0/dev" && mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root), *argv],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        raise ImageError(f"in the image: {' '.join(argv)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout.strip()


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise ImageError(f"{what} failed (exit {r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--rebuild", action="store_true", help="build both layers even if the cache has them")
    a = p.parse_args(argv)
    try:
        print(build(REPO, a.cache, a.rebuild, log=lambda m: print(m, file=sys.stderr)).dir)
        return 0
    except ImageError as e:
        print(f"netlab-vm: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
