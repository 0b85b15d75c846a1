"""Kernel source trees: unpack a tarball once, fetch a pinned URL once, patch.

A pristine tree is unpacked into the cache, keyed by the tarball's sha256,
and never written to again: kernel builds run out of tree (O=...). A
patched tree is a hard-link copy of the pristine one with the series applied
by GNU patch, which writes each patched file anew and so never changes the
pristine copy through a shared link.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import urllib.request
from pathlib import Path

from ..core.cache import cache_root, file_lock, sha256_file
from ..core.cmd import run
from ..core.errors import CommandError, KernelBuildError
from ..core.progress import Step
from . import deadlines
from .kernel_spec import KernelSource


def fetch_tarball(source: KernelSource, step: Step) -> Path:
    """The tarball of a source on local disk, downloading a pinned URL once."""
    if source.tarball is not None:
        return source.tarball
    assert source.url and source.sha256
    target = cache_root() / "downloads" / f"{source.sha256}{_suffix(source.url)}"
    with file_lock(target.with_suffix(".lock")):
        if target.is_file() and sha256_file(target) == source.sha256:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".download-")
        try:
            with step.phase("download"), os.fdopen(fd, "wb") as out, urllib.request.urlopen(source.url, timeout=60) as resp:
                shutil.copyfileobj(resp, out, 1 << 20)
            got = sha256_file(Path(tmp))
            if got != source.sha256:
                raise KernelBuildError(f"kernel source {source.name}: {source.url} has sha256 {got}, pinned {source.sha256}")
            os.replace(tmp, target)
        except OSError as exc:
            raise KernelBuildError(f"kernel source {source.name}: cannot fetch {source.url}: {exc}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return target


def _suffix(url: str) -> str:
    m = re.search(r"(\.tar(\.[a-z0-9]+)?)$", url)
    return m.group(1) if m else ".tar"


def pristine_tree(tarball: Path, sha256: str, step: Step) -> Path:
    """The unpacked tree of tarball (its top directory), unpacked once."""
    root = cache_root() / "sources"
    final = root / sha256
    with file_lock(root / ".locks" / f"{sha256}.lock"):
        if not final.is_dir():
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{sha256[:12]}.tmp-"))
            try:
                with step.phase("unpack source"):
                    run(["tar", "-xf", str(tarball), "-C", str(tmp)], timeout=deadlines.TAR_EXTRACT, check=True)
                os.rename(tmp, final)
            except CommandError as exc:
                raise KernelBuildError(f"{tarball}: cannot unpack: {exc}") from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return _top_dir(final, tarball)


def _top_dir(unpacked: Path, tarball: Path) -> Path:
    entries = [p for p in unpacked.iterdir() if p.is_dir()]
    if len(entries) == 1 and (entries[0] / "Makefile").is_file():
        return entries[0]
    if (unpacked / "Makefile").is_file():
        return unpacked
    raise KernelBuildError(f"{tarball}: not a kernel source tarball (no top-level Makefile)")


def patched_tree(pristine: Path, patches: list[Path], tree: Path, step: Step) -> Path:
    """A hard-link copy of pristine at `tree`, with patches applied.

    Always a copy, even with no patches, so every build compiles from the
    same path and ccache can share objects between variants.
    """
    with step.phase(f"copy tree, apply {len(patches)} patches"):
        run(["cp", "-al", str(pristine), str(tree)], timeout=deadlines.COPY_TREE, check=True)
        for patch in patches:
            apply_patch(tree, patch)
    return tree


def apply_patch(tree: Path, patch: Path) -> None:
    """Apply one patch, or fail naming it and the first file it cannot patch.

    A dry run first, so a failing patch leaves the tree as it was.
    """
    base = ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-d", str(tree), "-i", str(patch)]
    dry = run([*base, "--dry-run"], timeout=deadlines.PATCH)
    if not dry.ok:
        raise KernelBuildError(f"patch {patch.name} does not apply: {_failing_file(dry.stdout + dry.stderr)}")
    run(base, timeout=deadlines.PATCH, check=True)


def _failing_file(output: str) -> str:
    current = "?"
    for line in output.splitlines():
        if m := re.match(r"(?:checking|patching) file (.+)", line):
            current = m.group(1).strip()
        elif "FAILED" in line or "Reversed (or previously applied)" in line:
            return f"{current}: {line.strip()}"
        elif "can't find file to patch" in line:
            return f"{current}: file not found in the tree"
        elif "malformed patch" in line or "Only garbage" in line:
            return line.strip()
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "patch exited non-zero"


def is_kernel_tree(path: Path) -> bool:
    return (path / "Makefile").is_file() and (path / "Kconfig").is_file() and (path / "net" / "core").is_dir()

