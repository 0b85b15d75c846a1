"""A local kernel tree (`--kernel-src`): the user's .config is kept, the
testbed says what its fragments changed, and a rebuild after touching one
file recompiles a handful of objects, not the kernel.

No VM. The two concerns are two cases. The config case only configures
(seconds). The rebuild case builds a tree without a .config of its own, so
the testbed configures it as it configures vanilla: same autoconf.h, and the
first build's objects come from the ccache entries vanilla's build left
(direct hits, no preprocessing: 1453 objects in 97 s here). A user's
option would change autoconf.h and make every object a preprocessed
lookup: the case took 372 s that way. From an empty ccache the first build
is a full compile. The trees are put under the cache root because ccache's
CCACHE_BASEDIR is the cache root (testbed.build.kernel.compiler_env): there every
path is hashed relative to the tree, whatever the temporary directory is
called.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.build.kernel import build_local_tree, configure_local_tree
from testbed.build.kernel_source import fetch_tarball, pristine_tree
from testbed.build.kernel_spec import load_catalog
from testbed.core.cache import work_root
from testbed.core.progress import Step

pytestmark = pytest.mark.slow

# A user's own choice, which no testbed fragment mentions.
USER_OPTION, USER_VALUE = "CONFIG_LOCALVERSION", '"-mytree"'
_CC = re.compile(r"^\s+CC\s+(\S+\.o)$", re.M)


def compiled_objects(log: Path) -> list[str]:
    """Objects make compiled: kbuild's `  CC  path.o` lines (printed for ccache hits too)."""
    return _CC.findall(log.read_text(errors="replace"))


def set_option(config: Path, option: str, value: str) -> None:
    lines = [line for line in config.read_text().splitlines()
             if not line.startswith(f"{option}=") and line != f"# {option} is not set"]
    config.write_text("\n".join([*lines, f"{option}={value}"]) + "\n")


@pytest.fixture
def scratch(request: pytest.FixtureRequest) -> Iterator[tuple[Path, Path, Path]]:
    """(pristine tree, a hard-link copy of it, a file older than anything the build writes)."""
    catalog = load_catalog()
    source = catalog.source(request.config.getoption("kernel_source"))
    step = Step("local tree case")
    pristine = pristine_tree(fetch_tarball(source, step), source.identity(), step)
    work = Path(tempfile.mkdtemp(prefix="local-tree-case-", dir=work_root()))
    try:
        marker = work / "started"
        marker.touch()
        subprocess.run(["cp", "-al", str(pristine), str(work / "linux")], check=True)
        yield pristine, work / "linux", marker
    finally:
        shutil.rmtree(work, ignore_errors=True)


def assert_untouched(pristine: Path, started: Path) -> None:
    """An in-tree build only adds files: the shared pristine tree is as it was."""
    touched = subprocess.run(["find", str(pristine), "-newer", str(started), "-print", "-quit"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert not touched, f"the build changed the cached pristine tree through a hard link: {touched}"


def test_local_tree_keeps_user_config_and_says_what_changed(scratch, capsys):
    pristine, tree, started = scratch
    vanilla = load_catalog().variant("vanilla")
    subprocess.run(["make", "-C", str(tree), "-s", "tinyconfig"], check=True, capture_output=True)
    set_option(tree / ".config", USER_OPTION, USER_VALUE)
    assert not any(USER_OPTION in f.read_text() for f in vanilla.fragments), "pick an option no fragment sets"

    first = configure_local_tree(tree, vanilla)
    said = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert first.changes.get("CONFIG_VXLAN") == ["n", "y"], "the fragments' options were merged and reported"
    assert re.search(rf"the fragments changed {len(first.changes)} options: CONFIG_\w+=", said), said
    assert USER_OPTION not in first.changes
    assert f"{USER_OPTION}={USER_VALUE}\n" in (tree / ".config").read_text(), "the user's option did not survive"

    again = configure_local_tree(tree, vanilla)
    assert again.changes == {}, "nothing changed in .config the second time"
    assert "fragments changed" not in capsys.readouterr().err
    assert_untouched(pristine, started)


def test_local_tree_rebuilds_incrementally(scratch):
    pristine, tree, started = scratch
    vanilla = load_catalog().variant("vanilla")
    first = build_local_tree(tree, vanilla)
    assert first.metadata["config_changes"] == {}, "a tree without a .config starts from the variant's base"

    # Touch dev.c in the copy only: give it its own inode first, so the
    # pristine tree's file (a hard link until now) keeps its mtime.
    dev_c = tree / "net/core/dev.c"
    shutil.copy2(dev_c, tree / "net/core/dev.c.new")
    os.replace(tree / "net/core/dev.c.new", dev_c)
    dev_c.touch()

    again = build_local_tree(tree, vanilla)
    before, after = compiled_objects(Path(first.metadata["log"])), compiled_objects(Path(again.metadata["log"]))
    print(f"local tree: first build compiled {len(before)} objects in {first.metadata['build_seconds']}s, "
          f"rebuild {len(after)} ({', '.join(after)}) in {again.metadata['build_seconds']}s")
    assert len(before) > 300, f"the first build compiled only {len(before)} objects"
    assert "net/core/dev.o" in after
    assert len(after) <= 10 and len(after) * 20 < len(before), f"rebuild was not incremental: {after}"
    assert again.metadata["config_changes"] == {}, "nothing changed in .config the second time"
    assert again.bzimage.is_file() and again.release == first.release
    assert_untouched(pristine, started)
