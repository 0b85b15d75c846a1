"""Each patch of a series on its own, as netdev's CI takes one: it applies, it builds, checkpatch passes.

A series is bisectable only if every prefix of it builds: a helper used one
patch before it is defined, or a fix left on top of the patch it fixes,
breaks a `git bisect` that lands in between. Each prefix is built in two
configurations: the variant's own (SMP, so RPS) and a uniprocessor
tinyconfig with just what CONFIG_PRISM needs (no RPS), the one a series
tried only on SMP gets wrong. Both configurations are made once, on the
whole series (its options exist only once its Kconfig patch is in), and
each prefix builds the directories the series has touched so far, in one
O= directory per configuration, so a patch recompiles only what it changed.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.cache import cache_root, file_lock, work_root
from ..core.cmd import run
from ..core.errors import CommandFailed, KernelBuildError, StepTimeout
from ..core.progress import Step
from . import deadlines
from .kernel import compiler_env, configure, jobs, make_argv
from .kernel_source import apply_patch, fetch_tarball, patched_tree, pristine_tree
from .kernel_spec import KernelSource, Variant

# What CONFIG_PRISM needs on tinyconfig: no CONFIG_SMP, so no CONFIG_RPS.
UP_FRAGMENT = "CONFIG_NET=y\nCONFIG_INET=y\nCONFIG_SYSCTL=y\nCONFIG_PROC_FS=y\n"
UP_CONFIG = "uniprocessor"


@dataclass(frozen=True)
class PatchCheck:
    """What one patch did to the series: its checkpatch findings and the configurations it broke."""

    patch: str
    checkpatch: tuple[str, ...]
    broken: tuple[tuple[str, str], ...]  # (configuration, the compiler's first error)

    @property
    def ok(self) -> bool:
        return not self.checkpatch and not self.broken


def touched_dirs(patch: Path) -> list[str]:
    """Directories of the C files a patch changes or adds, as make targets (`net/core/`)."""
    dirs = []
    for line in patch.read_text(errors="replace").splitlines():
        if (m := re.match(r"\+\+\+ b/(\S+\.c)$", line)) and (d := str(Path(m[1]).parent) + "/") not in dirs:
            dirs.append(d)
    return dirs


def checkpatch(tree: Path, patch: Path) -> tuple[str, ...]:
    """checkpatch.pl's ERROR/WARNING/CHECK lines for one patch, with the location line after each."""
    done = run([str(tree / "scripts/checkpatch.pl"), "--no-tree", "-q", str(patch)], timeout=deadlines.CHECKPATCH)
    lines = [*done.stdout.splitlines(), ""]
    return tuple(f"{line} ({lines[i + 1].strip()})" if lines[i + 1].startswith("#") else line
                 for i, line in enumerate(lines) if re.match(r"(ERROR|WARNING|CHECK):", line))


def first_error(failure: CommandFailed) -> str:
    if isinstance(failure, StepTimeout):
        return str(failure)
    errors = [line.strip() for line in failure.tail if "error:" in line or "Error " in line]
    return errors[0] if errors else (failure.tail[-1].strip() if failure.tail else "make failed")


class SeriesCheck:
    """The scratch trees and build directories of one check; `run` walks the series."""

    def __init__(self, variant: Variant, source: KernelSource, root: Path, log: Path):
        self.variant, self.source, self.root, self.log = variant, source, root, log
        self.step = Step(f"series {variant.name}")

    def configs(self, pristine: Path) -> dict[str, str]:
        """The .config of each configuration, made on the whole series."""
        tree = patched_tree(pristine, self.variant.patches(), self.root / "whole", self.step)
        up = self.root / "up.config"
        up.write_text(UP_FRAGMENT + "CONFIG_PRISM=y\n")
        wanted = {self.variant.name: (self.variant.base, [(f"kernel-config/{p.name}", p)
                                                          for p in self.variant.fragments]),
                  UP_CONFIG: ("tinyconfig", [("the uniprocessor fragment", up)])}
        texts = {}
        for name, (base, fragments) in wanted.items():
            build = self.root / f"config-{name}"
            build.mkdir()
            configure(self.step, tree, build, base, fragments, self.log)
            texts[name] = (build / ".config").read_text()
        shutil.rmtree(tree)
        return texts

    def build(self, tree: Path, name: str, config: str, dirs: list[str]) -> str | None:
        """Build dirs of tree in configuration name; None when it built, else the first error."""
        build = self.root / f"build-{name}"
        build.mkdir(exist_ok=True)
        (build / ".config").write_text(config)
        env = compiler_env()
        try:
            self.step.run(make_argv(tree, build, "olddefconfig"), self.log, env=env, timeout=deadlines.CONFIGURE)
            self.step.run([*make_argv(tree, build, f"-j{jobs()}", *dirs)], self.log, env=env,
                          timeout=deadlines.KERNEL_COMPILE)
        except CommandFailed as failure:
            return first_error(failure)
        return None

    def run(self) -> list[PatchCheck]:
        pristine = pristine_tree(fetch_tarball(self.source, self.step), self.source.identity(), self.step)
        configs = self.configs(pristine)
        tree = patched_tree(pristine, [], self.root / "src", self.step)
        checks, dirs = [], []
        for patch in self.variant.patches():
            with self.step.phase(f"{patch.name}"):
                apply_patch(tree, patch)
                dirs += [d for d in touched_dirs(patch) if d not in dirs]
                broken = tuple((name, error) for name, config in configs.items()
                               if (error := self.build(tree, name, config, dirs)) is not None)
            checks.append(PatchCheck(patch.name, checkpatch(tree, patch), broken))
        return checks


def check_series(variant: Variant, source: KernelSource) -> tuple[list[PatchCheck], Path]:
    """Every patch of variant's series, in order; and the log of the builds."""
    if not variant.patches():
        raise KernelBuildError(f"variant {variant.name} has no patch series to check")
    log = cache_root() / "logs" / f"series-{variant.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    root = work_root() / "series-check"  # a fixed path: ccache hits from one check to the next
    with file_lock(work_root() / ".series-check.lock"):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        try:
            return SeriesCheck(variant, source, root, log).run(), log
        finally:
            shutil.rmtree(root, ignore_errors=True)
