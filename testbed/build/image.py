"""Guest root images: Debian packages by mmdebstrap, packed as ext4.

Why ext4 from `mke2fs -d`: it needs neither a mount nor a loop device, the
kernel reads it without a decompressor (squashfs/erofs would spend emulated
CPU on every read under TCG), and QEMU opens it read-only so any number of
VMs share one cached file and none can change it. The guest keeps its root
read-only and puts what it writes in tmpfs (images/rootfs/.../init).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..core import tomlconf
from ..core.cache import CacheEntry, Store, cache_root, file_lock, sha256_bytes, sha256_file, work_root
from ..core.cmd import run
from ..core.errors import ConfigError, ImageBuildError
from ..core.paths import REPO_ROOT
from ..core.progress import CommandFailed, Step, console, print_tail
from . import deadlines, glibc_abi, guest_programs

IMAGES_DIR = REPO_ROOT / "images"
BUILDER_VERSION = 3  # bump when the build changes what an image holds (3: programs built in the guest root)
ROOT_FILE = "root.ext4"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    suite: str
    variant: str
    packages: tuple[str, ...]
    exclude: tuple[str, ...]
    include: tuple[str, ...]
    slack_mib: int
    rootfs: Path
    sources: Path | None = None  # C programs for the guest (images/src/*.c), built with the image
    mirror: str | None = None

    def programs(self) -> list[Path]:
        return sorted(self.sources.glob("*.c")) if self.sources and self.sources.is_dir() else []

    def overlay_files(self) -> list[Path]:
        if not self.rootfs.is_dir():
            return []
        return sorted(p for p in self.rootfs.rglob("*") if p.is_file())

    def tree_key(self) -> str:
        """The mmdebstrap tree depends on these alone: the packages, and the programs compiled into it."""
        material = {
            "builder": BUILDER_VERSION, "suite": self.suite, "variant": self.variant, "mirror": self.mirror,
            "packages": sorted(self.packages), "exclude": list(self.exclude), "include": list(self.include),
            "programs": guest_programs.key_material(self.programs()),
        }
        return f"{self.name}-{sha256_bytes(json.dumps(material, sort_keys=True).encode())[:24]}"

    def key(self) -> str:
        """The image: the tree, our overlay files and the slack."""
        material = {
            "tree": self.tree_key(),
            "slack": self.slack_mib,
            "overlay": [[str(p.relative_to(self.rootfs)), oct(p.stat().st_mode & 0o7777), sha256_file(p)]
                        for p in self.overlay_files()],
        }
        return f"{self.name}-{sha256_bytes(json.dumps(material, sort_keys=True).encode())[:24]}"


_KEYS = {"suite", "variant", "packages", "exclude", "include", "slack-mib", "mirror"}


def load_spec(name: str = "base", images_dir: Path = IMAGES_DIR) -> ImageSpec:
    path = images_dir / f"{name}.toml"
    data = tomlconf.check_keys(tomlconf.read(path, f"image {name}"), _KEYS, str(path))
    packages = data.get("packages")
    if not isinstance(packages, list) or not packages or not all(isinstance(p, str) and p for p in packages):
        raise ConfigError(f"{path}: 'packages' must be a non-empty list of package names")
    slack = data.get("slack-mib", 32)
    if not isinstance(slack, int) or slack < 0:
        raise ConfigError(f"{path}: 'slack-mib' must be a non-negative integer")
    return ImageSpec(
        name=name,
        suite=str(data.get("suite", "bookworm")),
        variant=str(data.get("variant", "essential")),
        packages=tuple(packages),
        exclude=tuple(data.get("exclude", [])),
        include=tuple(data.get("include", [])),
        slack_mib=slack,
        rootfs=images_dir / "rootfs",
        sources=images_dir / "src",
        mirror=data.get("mirror"),
    )


@dataclass(frozen=True)
class GuestImage:
    root: Path
    key: str
    metadata: dict
    cache_hit: bool


def _entry_to_image(entry: CacheEntry, hit: bool) -> GuestImage:
    return GuestImage(entry.file(ROOT_FILE), entry.key, entry.metadata(), hit)


def build_image(spec: ImageSpec, store: Store | None = None) -> GuestImage:
    """The cached image for spec, building it first when the cache lacks it."""
    store = store or Store("images")
    key = spec.key()
    entry = store.lookup(key)
    if entry is not None:
        return _entry_to_image(entry, True)
    with store.locked(key):
        entry = store.lookup(key)
        if entry is not None:
            return _entry_to_image(entry, True)
        _build_into_store(spec, key, store)
        entry = store.lookup(key)
        if entry is None:
            raise ImageBuildError(f"image {key}: the cache entry failed to verify right after the build")
        return _entry_to_image(entry, False)


def mmdebstrap_argv(spec: ImageSpec, target: Path) -> list[str]:
    argv = ["mmdebstrap", f"--variant={spec.variant}", "--mode=root", "--include=" + ",".join(spec.packages)]
    argv += [f"--dpkgopt=path-exclude={p}" for p in spec.exclude]
    argv += [f"--dpkgopt=path-include={p}" for p in spec.include]
    argv += guest_programs.mmdebstrap_options(spec.programs())
    argv += [spec.suite, str(target)]
    if spec.mirror:
        argv.append(spec.mirror)
    return argv


def package_tree(spec: ImageSpec, step: Step, log: Path) -> Path:
    """The root tree mmdebstrap makes from the package list, with the guest's programs compiled in, made once.

    Kept apart from the image so that editing the files under rootfs/ costs
    a copy and an mke2fs, not a new mmdebstrap run.
    """
    root = cache_root() / "package-trees"
    final = root / spec.tree_key()
    with file_lock(root / ".locks" / f"{spec.tree_key()}.lock"):
        if final.is_dir():
            return final
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.tree_key()}.tmp-"))
        try:
            with step.phase("mmdebstrap"):
                step.run(mmdebstrap_argv(spec, tmp / "root"), log, timeout=deadlines.MMDEBSTRAP)
            os.rename(tmp / "root", final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _build_into_store(spec: ImageSpec, key: str, store: Store) -> None:
    if shutil.which("mmdebstrap") is None or shutil.which("mke2fs") is None:
        raise ImageBuildError("image build needs mmdebstrap and mke2fs: run tools/install-host-deps")
    step = Step(f"image {spec.name}")
    log = cache_root() / "logs" / f"image-{key}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    work = Path(tempfile.mkdtemp(dir=work_root(), prefix=f"{key}-"))
    try:
        tree = package_tree(spec, step, log)
        root = work / "root"
        with step.phase("customise"):
            step.run(["cp", "-a", str(tree), str(root)], log, timeout=deadlines.COPY_TREE)
            shutil.copytree(spec.rootfs, root, dirs_exist_ok=True, symlinks=True)
            link_busybox_applets(root)
            packages = installed_packages(root)
            programs = program_requirements(spec, root, packages)
        with store.staging(key) as stage:
            with step.phase("mke2fs"):
                used = _tree_bytes(root)
                size_mib = int(used * 1.15 / (1 << 20)) + spec.slack_mib
                step.run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-L", "prism-root",
                          "-E", "root_owner=0:0", "-d", str(root), str(stage / ROOT_FILE), f"{size_mib}M"], log,
                         timeout=deadlines.MKE2FS)
            (stage / "packages.txt").write_text(packages)
            meta = {
                "key": key, "name": spec.name, "suite": spec.suite, "variant": spec.variant,
                "packages": list(spec.packages), "size_mib": size_mib,
                "installed": len(packages.splitlines()),
                "glibc": str(glibc_abi.guest_glibc(packages)),
                "programs": {r.program: sorted(r.needs) for r in programs},
                "build_seconds": round(step.elapsed(), 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "reproducer": shlex.join(mmdebstrap_argv(spec, Path("ROOT"))),
            }
            (stage / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        console.print(f"image {spec.name}: built {size_mib} MiB in {step.elapsed():.0f}s, cached as {key}")
    except CommandFailed as failure:
        if failure.host_problem:  # one line says it all: not thirty copies of it
            raise ImageBuildError(f"image {spec.name}: {failure.argv[0]} failed: {failure.host_problem} "
                                  f"under {work_root()} or {store.dir}; log: {failure.log}") from None
        print_tail(failure)
        raise ImageBuildError(f"image {spec.name}: {failure}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def installed_packages(root: Path) -> str:
    """dpkg's view of root: `package<TAB>version` lines, as packages.txt keeps them."""
    return run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package}\t${Version}\n"],
               timeout=deadlines.DPKG_QUERY, check=True).stdout


def program_requirements(spec: ImageSpec, root: Path, packages: str) -> list[glibc_abi.Requirement]:
    """What each of the guest's programs needs from glibc; an error when root lacks one or its glibc is too old."""
    guest = glibc_abi.guest_glibc(packages)
    binaries = guest_programs.installed_paths(root, spec.programs())
    absent = [name for name, path in binaries.items() if not path.is_file()]
    if absent:
        raise ImageBuildError(f"image {spec.name}: the build left no {', '.join(absent)} in {guest_programs.INSTALL_DIR}")
    requirements = [glibc_abi.requirement(path, guest, name) for name, path in binaries.items()]
    if refused := glibc_abi.refusal(requirements, guest):
        raise ImageBuildError(f"image {spec.name}: {refused}")
    return requirements


def link_busybox_applets(root: Path) -> list[str]:
    """Give each busybox applet that no package provides a /usr/local/bin link.

    The essential variant has no `mount`, `ps` or `vi`; busybox has them.
    Only missing commands are linked, so no Debian tool is shadowed.
    """
    busybox = root / "bin/busybox"
    if not busybox.is_file():
        return []
    applets = run([str(busybox), "--list"], timeout=deadlines.BUSYBOX_LIST, check=True).stdout.split()
    bindirs = [root / d for d in ("usr/local/bin", "usr/bin", "bin", "usr/sbin", "sbin")]
    target = root / "usr/local/bin"
    target.mkdir(parents=True, exist_ok=True)
    linked = []
    for applet in applets:
        if "/" in applet or any(os.path.lexists(d / applet) for d in bindirs):
            continue
        os.symlink("/bin/busybox", target / applet)
        linked.append(applet)
    return linked


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total
