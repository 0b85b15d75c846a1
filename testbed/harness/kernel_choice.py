"""The kernels of an experiment as a user names them: `[LABEL=]SPEC`, SPEC a variant, a bzImage or a tree.

`--kernels vanilla prism` is the main job; `--kernels parent=~/linux-parent
mine=~/linux --baseline parent` asks whether a patch changes the tail;
`--kernels vanilla vanilla` is the A/A check: the same kernel twice, as two
conditions (the second labelled vanilla#2), booted in turn. A tree is built
in place with its own incremental make (testbed.build.kernel.build_local_tree),
with the prism variant's fragments when it carries the series
(net/core/prism.c), else vanilla's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..build.kernel import Kernel, build_local_tree, build_variant, prebuilt
from ..build.kernel_source import is_kernel_tree
from ..build.kernel_spec import load_catalog, resolve
from ..core.errors import ConfigError

_LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.#+")


@dataclass(frozen=True)
class KernelChoice:
    """One kernel of an experiment: its label in every table, and where it comes from."""

    label: str
    variant: str | None = None  # a catalog variant, built and cached
    bzimage: Path | None = None  # a prebuilt image
    tree: Path | None = None  # a local tree, built in place
    tree_variant: str = "vanilla"  # whose fragments configure the tree

    def obtain(self, source: str | None = None) -> Kernel:
        """Build (or find in the cache) the kernel this choice names."""
        catalog = load_catalog()
        if self.tree is not None:
            return build_local_tree(self.tree, catalog.variant(self.tree_variant))
        if self.bzimage is not None:
            return prebuilt(self.bzimage)
        return build_variant(resolve(catalog, self.variant, source))

    def describe(self) -> str:
        where = self.variant or self.bzimage or f"tree {self.tree} ({self.tree_variant} fragments)"
        return f"{self.label}: {where}"


def parse_kernels(texts: Sequence[str]) -> list[KernelChoice]:
    """Each `[LABEL=]SPEC`; a label given twice gets #2, #3. ConfigError naming a bad one."""
    if not texts:
        raise ConfigError("experiment: --kernels needs at least one kernel")
    variants = set(load_catalog().variants)
    out: list[KernelChoice] = []
    for text in texts:
        label, _, spec = text.rpartition("=") if "=" in text else ("", "", text)
        choice = _choice(text, spec.strip(), variants)
        label = label.strip() or choice.label
        if not label or not set(label) <= _LABEL_CHARS or "/" in label:
            raise ConfigError(f"--kernels {text!r}: label {label!r} may hold only letters, digits and - _ . + #")
        taken = {c.label for c in out}
        unique, n = label, 1
        while unique in taken:
            n += 1
            unique = f"{label}#{n}"
        out.append(KernelChoice(unique, choice.variant, choice.bzimage, choice.tree, choice.tree_variant))
    return out


def _choice(text: str, spec: str, variants: set[str]) -> KernelChoice:
    if spec in variants:
        return KernelChoice(spec, variant=spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        tree = path.resolve()
        if not is_kernel_tree(tree):
            raise ConfigError(f"--kernels {text!r}: {tree} is a directory but not a kernel tree "
                              "(no Makefile, Kconfig and net/core)")
        return KernelChoice(tree.name, tree=tree,
                            tree_variant="prism" if (tree / "net" / "core" / "prism.c").is_file() else "vanilla")
    if path.is_file():
        return KernelChoice(path.resolve().parent.name if path.name == "bzImage" else path.stem,
                            bzimage=path.resolve())
    raise ConfigError(f"--kernels {text!r}: not a variant ({', '.join(sorted(variants))}), a bzImage file "
                      "or a kernel tree")


def boot_order(labels: Sequence[str], boots: int) -> list[str]:
    """Each label `boots` times, in a balanced order: A B | B A | A B ... for two; rotated for more.

    Round j takes the labels rotated by j, reversed on odd j, so every kernel
    goes first and last equally often and no kernel always follows another
    (drift on the host then hits them alike).
    """
    order: list[str] = []
    k = len(labels)
    for j in range(boots):
        turn = list(labels[j % k:]) + list(labels[:j % k]) if k > 2 else list(labels)
        order += turn if j % 2 == 0 else turn[::-1]
    return order
