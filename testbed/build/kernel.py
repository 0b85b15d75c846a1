"""Build kernels: a cached variant, a user's local tree, or a given bzImage.

A variant build is keyed by `BuildSpec.key`; a hit costs a manifest check
and no build. A local tree (`--kernel-src`) is built in place with the
tree's own incremental make, never cached: the tree is the cache.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..core.cache import Store, cache_root, file_lock, sha256_file, work_root
from ..core.cmd import run
from ..core.errors import ConfigError, KernelBuildError
from ..core.progress import CommandFailed, Step, console, print_tail
from . import deadlines, kconfig
from .kernel_source import fetch_tarball, is_kernel_tree, patched_tree, pristine_tree
from .kernel_spec import BuildSpec, Variant, load_catalog, resolve


@dataclass(frozen=True)
class Kernel:
    """A bootable kernel image and what is known of how it was made."""

    bzimage: Path
    release: str
    variant: str
    metadata: dict = field(default_factory=dict)
    cache_hit: bool = False

    def describe(self) -> str:
        how = "cache hit" if self.cache_hit else "built"
        return f"{self.variant} {self.release} ({how}: {self.bzimage})"


def bzimage_release(path: Path) -> str:
    """The release string stored in a bzImage's setup header."""
    try:
        with open(path, "rb") as f:
            header = f.read(0x4000)
            if len(header) < 0x210 or header[0x202:0x206] != b"HdrS":
                raise ConfigError(f"{path}: not an x86 bzImage (no HdrS setup header)")
            offset = int.from_bytes(header[0x20E:0x210], "little") + 0x200
            f.seek(offset)
            raw = f.read(256)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read kernel image: {exc.strerror}") from None
    return raw.split(b"\0", 1)[0].decode(errors="replace").split(" ", 1)[0]


def jobs() -> int:
    return (os.cpu_count() or 1) + 1


def make_argv(tree: Path, build: Path | None, *targets: str) -> list[str]:
    argv = ["make", "-C", str(tree)]
    if build is not None:
        argv.append(f"O={build}")
    if shutil.which("ccache"):
        argv.append("CC=ccache gcc")
    return [*argv, *targets]


def compiler_env() -> dict[str, str]:
    """ccache settings that let two variants share every unchanged object.

    Trees and build directories live at different paths per build, so paths
    are made relative to the cache root and the working directory is not
    hashed (the kernels carry no debug info that would record it).
    """
    env = dict(os.environ)
    env.update(CCACHE_DIR=str(cache_root() / "ccache"), CCACHE_BASEDIR=str(cache_root()),
               CCACHE_NOHASHDIR="1", CCACHE_MAXSIZE="4G", CCACHE_SLOPPINESS="time_macros")
    return env


def configure(step: Step, tree: Path, build: Path | None, base: str | None,
              fragments: list[tuple[str, Path]], log: Path) -> dict[str, str]:
    """Make a .config from base + fragments and check kconfig kept them all.

    base None means: start from the .config already there (a user's tree).
    Returns the final config; raises naming the first options dropped.
    """
    config = (build or tree) / ".config"
    requested = [(origin, kconfig.parse_config_file(path)) for origin, path in fragments]  # malformed: stop now
    with step.phase("configure"):
        env = compiler_env()
        if base is not None:
            step.run(make_argv(tree, build, base), log, env=env, timeout=deadlines.CONFIGURE)
        step.run([str(tree / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(build or tree), str(config),
                  *[str(p) for _, p in fragments]], log, cwd=tree, env=env,
                 timeout=deadlines.CONFIGURE)
        step.run(make_argv(tree, build, "olddefconfig"), log, env=env, timeout=deadlines.CONFIGURE)
    final = kconfig.parse_config_file(config)
    problems = kconfig.verify(requested, final)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more: {', '.join(p.option for p in problems[1:6])})" if len(problems) > 1 else ""
        raise KernelBuildError(f"{first.describe()}: {kconfig.explain(tree, first.option, final)}{more}")
    return final


def compile_kernel(step: Step, tree: Path, build: Path | None, log: Path,
                   localversion: str | None = None) -> tuple[Path, str]:
    """Build the bzImage; localversion goes to make, not .config (see below)."""
    # Given as make's LOCALVERSION it reaches only utsrelease.h, so two variants
    # with the same options share one autoconf.h and every ccache entry.
    extra = [f"LOCALVERSION={localversion}"] if localversion else []
    with step.phase("compile"):
        step.run([*make_argv(tree, build, f"-j{jobs()}", *extra, "bzImage")], log, env=compiler_env(),
                 timeout=deadlines.KERNEL_COMPILE)
    out = build or tree
    release = run(make_argv(tree, build, "-s", *extra, "kernelrelease"), timeout=deadlines.KERNELRELEASE,
                  check=True).stdout.strip()
    return out / "arch/x86/boot/bzImage", release


@contextmanager
def _make_failures(what: str) -> Iterator[None]:
    """A failed build command: its tail on the terminal, then one line naming what was built and the log."""
    try:
        yield
    except CommandFailed as failure:
        print_tail(failure)
        raise KernelBuildError(f"{what}: {failure.argv[-1]} {failure.outcome}; log: {failure.log}") from None


def build_variant(spec: BuildSpec, store: Store | None = None) -> Kernel:
    """The cached kernel for spec, building it first when the cache lacks it."""
    store = store or Store("kernels")
    entry = store.lookup(spec.key)
    if entry is None:
        with store.locked(spec.key):
            entry = store.lookup(spec.key)
            if entry is None:
                _build_into_store(spec, store)
                entry = store.lookup(spec.key)
                if entry is None:
                    raise KernelBuildError(f"kernel {spec.key}: the cache entry failed to verify right after the build")
                meta = entry.metadata()
                return Kernel(entry.file("bzImage"), meta["release"], spec.variant.name, meta, cache_hit=False)
    meta = entry.metadata()
    return Kernel(entry.file("bzImage"), meta["release"], spec.variant.name, meta, cache_hit=True)


def _build_into_store(spec: BuildSpec, store: Store) -> None:
    step = Step(f"kernel {spec.variant.name}")
    logs = cache_root() / "logs"
    log = logs / f"kernel-{spec.key}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    # One build slot at a fixed path, built in-tree as a user's tree
    # (--kernel-src) is: every build then sees the same relative source and
    # object paths, which is what lets ccache reuse objects across variants
    # and between a variant and a local tree with the same options (an O=
    # build's preprocessed output names other paths, so it shares nothing
    # with an in-tree one).
    slot = work_root() / "kernel-slot"
    with file_lock(work_root() / ".kernel-slot.lock"):
        shutil.rmtree(slot, ignore_errors=True)
        slot.mkdir()
        try:
            with _make_failures(f"kernel {spec.variant.name}"):
                tarball = fetch_tarball(spec.source, step)
                pristine = pristine_tree(tarball, spec.source_sha256, step)
                tree = patched_tree(pristine, spec.variant.patches(), slot / "src", step)
                no_auto = slot / "localversion.config"
                no_auto.write_text(spec.variant.localversion_fragment())
                fragments = [(f"kernel-config/{p.name}", p) for p in spec.variant.fragments]
                fragments.append(("the testbed's localversion settings", no_auto))
                configure(step, tree, None, spec.variant.base, fragments, log)
                bzimage, release = compile_kernel(step, tree, None, log, spec.variant.localversion)
                if not release.endswith(spec.variant.localversion):
                    raise KernelBuildError(f"kernel {spec.variant.name}: release {release} lacks {spec.variant.localversion}")
                with store.staging(spec.key) as stage:
                    shutil.copy2(bzimage, stage / "bzImage")
                    shutil.copy2(tree / ".config", stage / "config")
                    shutil.copy2(tree / "System.map", stage / "System.map")
                    shutil.copy2(log, stage / "build.log")
                    meta = _metadata(spec, release, stage / "config", step.elapsed())
                    (stage / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
                console.print(f"kernel {spec.variant.name}: built {release} in {step.elapsed():.0f}s, cached as {spec.key}")
        finally:
            shutil.rmtree(slot, ignore_errors=True)


def _metadata(spec: BuildSpec, release: str, config: Path, seconds: float) -> dict:
    source = {"name": spec.source.name, "sha256": spec.source_sha256}
    source.update({"tarball": str(spec.source.tarball)} if spec.source.tarball else {"url": spec.source.url})
    return {
        "key": spec.key,
        "variant": spec.variant.name,
        "release": release,
        "source": source,
        "base": spec.variant.base,
        "fragments": [{"name": n, "sha256": h} for n, h in spec.fragments],
        "patches": [{"name": n, "sha256": h} for n, h in spec.patches],
        "config_sha256": sha256_file(config),
        "toolchain": spec.toolchain,
        "build_seconds": round(seconds, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "reproducer": f"prism-testbed kernel build {shlex.quote(spec.variant.name)} --source {shlex.quote(spec.source.name)}",
    }


@dataclass(frozen=True)
class LocalTreeConfig:
    """What merging a variant's fragments into a user's tree did: the step and log the build goes on with."""

    tree: Path
    fragments: list[str]
    changes: dict[str, list[str]]  # option -> [before, after]; empty when the tree had no .config
    step: Step
    log: Path


def configure_local_tree(tree: Path, variant: Variant) -> LocalTreeConfig:
    """Merge the variant's fragments into a user's tree's .config, keeping the rest; say what changed.

    A tree without a .config starts from the variant's base, as a variant does.
    """
    tree = tree.expanduser().resolve()
    if not is_kernel_tree(tree):
        raise ConfigError(f"--kernel-src {tree}: not a Linux source tree (no Makefile, Kconfig and net/core)")
    step = Step(f"kernel tree {tree.name}")
    # one log per build (pid and nanoseconds: two builds in a second must not share one)
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.time_ns() % 10**9:09d}"
    log = cache_root() / "logs" / f"tree-{tree.name}-{stamp}.log"
    config = tree / ".config"
    before = kconfig.parse_config_file(config) if config.is_file() else {}
    fragments = [(f"kernel-config/{p.name}", p) for p in variant.fragments]
    with _make_failures(f"--kernel-src {tree}"):
        final = configure(step, tree, None, None if before else variant.base, fragments, log)
    changed = sorted(k for k in set(before) | set(final) if before.get(k, "n") != final.get(k, "n"))
    if before and changed:
        console.print(f"kernel tree {tree.name}: the fragments changed {len(changed)} options: "
                      + ", ".join(f"{k}={final.get(k, 'n')}" for k in changed[:12])
                      + (" …" if len(changed) > 12 else ""))
    changes = {k: [before.get(k, "n"), final.get(k, "n")] for k in changed} if before else {}
    return LocalTreeConfig(tree, [n for n, _ in fragments], changes, step, log)


def build_local_tree(tree: Path, variant: Variant) -> Kernel:
    """Build a user's tree in place, incrementally, with the variant's fragments.

    No patches are applied: the tree is the user's.
    """
    configured = configure_local_tree(tree, variant)
    with _make_failures(f"--kernel-src {configured.tree}"):
        bzimage, release = compile_kernel(configured.step, configured.tree, None, configured.log)
    meta = {"variant": "local", "tree": str(configured.tree), "release": release, "fragments": configured.fragments,
            "config_changes": configured.changes, "build_seconds": round(configured.step.elapsed(), 1),
            "log": str(configured.log)}
    return Kernel(bzimage, release, "local", meta, cache_hit=False)


def prebuilt(path: Path) -> Kernel:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"--kernel {path}: no such file, and not a kernel variant")
    release = bzimage_release(path)
    return Kernel(path, release, "prebuilt", {"variant": "prebuilt", "bzimage": str(path), "release": release})


def obtain(selector: str, kernel_src: Path | None = None, source: str | None = None) -> Kernel:
    """A kernel named as a user names it: a variant, a bzImage path, or a tree."""
    catalog = load_catalog()
    if kernel_src is not None:
        return build_local_tree(kernel_src, catalog.variant(selector if selector in catalog.variants else "vanilla"))
    if selector in catalog.variants:
        return build_variant(resolve(catalog, selector, source))
    if "/" in selector or selector.endswith("bzImage") or Path(selector).is_file():
        return prebuilt(Path(selector))
    raise ConfigError(f"--kernel {selector}: not a variant ({', '.join(sorted(catalog.variants))}) nor a bzImage file")
