"""`prism-testbed cache list|clean`: what the build cache holds, and freeing it."""

from __future__ import annotations

import argparse
import os
import shutil

from rich.table import Table

from ..core import cmd
from ..core.cache import Removal, Store, cache_root, clean_directory, tree_size
from ..core.progress import console
from ..net import fabric

# What each `cache clean` option removes, by directory under the cache root.
CLEAN_SETS = {
    "kernels": ("kernels", "sources"),
    "images": ("images", "package-trees"),
    "all": ("kernels", "sources", "downloads", "images", "package-trees", "bench", "logs", "accel-probe", "hash-memo"),
}


def cmd_cache_list(args: argparse.Namespace) -> int:
    table = Table(title=f"cache: {cache_root()}")
    for column in ("kind", "key", "what", "built"):
        table.add_column(column)
    for kind in ("kernels", "images"):
        for entry in Store(kind).entries():
            try:
                meta = entry.metadata()
            except (OSError, ValueError):
                meta = {}
            what = meta.get("release") or f"{meta.get('size_mib', '?')} MiB"
            table.add_row(kind, entry.key, str(what), str(meta.get("built_at", "?")))
    console.print(table)
    return 0


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def clean_ccache() -> Removal:
    """Empty the shared ccache (ccache itself copes with builds using it meanwhile)."""
    directory = cache_root() / "ccache"
    before = tree_size(directory) if directory.is_dir() else 0
    if before and shutil.which("ccache"):
        cmd.run(["ccache", "--clear"], env={**os.environ, "CCACHE_DIR": str(directory)}, timeout=600)
    return Removal("ccache", before - (tree_size(directory) if directory.is_dir() else 0))


def cmd_cache_clean(args: argparse.Namespace) -> int:
    which = "all" if args.all else ("kernels" if args.kernels and not args.images else
                                    "images" if args.images and not args.kernels else None)
    dirs = CLEAN_SETS[which] if which else CLEAN_SETS["kernels"] + CLEAN_SETS["images"]
    root = cache_root()
    users = fabric.qemu_users()

    def in_use(entry) -> str | None:
        holders = [u for u in users if u.uses(entry)]
        if not holders:
            return None
        return ", ".join(f"run {u.run_id} (QEMU pid {u.pid})" if u.run_id else f"QEMU pid {u.pid}" for u in holders)

    removals = [r for d in dirs for r in clean_directory(root / d, root, in_use)]
    if which == "all":
        removals.append(clean_ccache())
    table = Table(title=f"cache clean: {root}")
    for column in ("entry", "freed", "note"):
        table.add_column(column)
    for r in removals:
        table.add_row(r.what, _mib(r.size) if r.kept is None else "-", r.kept or "removed")
    if removals:
        console.print(table)
    freed = sum(r.size for r in removals if r.kept is None)
    kept = [r for r in removals if r.kept]
    console.print(f"freed {_mib(freed)} ({len(removals) - len(kept)} entries)"
                  + (f"; kept {len(kept)} in use or locked by another process" if kept else ""))
    return 0


def add_parsers(sub) -> None:
    cache = sub.add_parser("cache", help="the build cache").add_subparsers(dest="action", required=True)
    cache.add_parser("list", help="list cached kernels and images").set_defaults(func=cmd_cache_list)
    clean = cache.add_parser("clean", help="remove cache entries no other process holds locked",
                             description="Without options: kernels and images (with their sources and "
                                         "package trees). --all also empties the ccache, downloads and logs.")
    clean.add_argument("--kernels", action="store_true", help="kernels and unpacked kernel sources")
    clean.add_argument("--images", action="store_true", help="guest images and their package trees")
    clean.add_argument("--all", action="store_true", help="everything under the cache root, the ccache too")
    clean.set_defaults(func=cmd_cache_clean)
