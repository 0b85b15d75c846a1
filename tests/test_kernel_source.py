"""Source trees: unpack once, patch without touching the pristine copy, fail clearly."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from testbed.build import deadlines, kernel_spec
from testbed.build import kernel as kernel_mod
from testbed.build.kernel_source import apply_patch, patched_tree, pristine_tree
from testbed.core.cache import Store
from testbed.core.errors import KernelBuildError
from testbed.core.progress import Step

GOOD_PATCH = textwrap.dedent("""\
    --- a/net/core/dev.c
    +++ b/net/core/dev.c
    @@ -1,3 +1,3 @@
     int a;
    -int b;
    +int b_patched;
     int c;
    """)
BAD_PATCH = GOOD_PATCH.replace("-int b;", "-int not_there;")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "prism-testbed"


@pytest.fixture
def tarball(tmp_path) -> Path:
    """A tiny stand-in for a kernel tarball: a top dir with a Makefile and net/core/dev.c."""
    top = tmp_path / "src" / "linux-6.1.0"
    (top / "net" / "core").mkdir(parents=True)
    (top / "Makefile").write_text("all:\n")
    (top / "Kconfig").write_text("")
    (top / "net" / "core" / "dev.c").write_text("int a;\nint b;\nint c;\n")
    out = tmp_path / "linux.tar.xz"
    subprocess.run(["tar", "-cJf", str(out), "-C", str(tmp_path / "src"), "linux-6.1.0"], check=True)
    return out


def test_pristine_tree_is_unpacked_once(cache, tarball):
    step = Step("test")
    tree = pristine_tree(tarball, "f" * 64, step)
    assert (tree / "net/core/dev.c").read_text().startswith("int a;")
    (tree / "marker").write_text("kept")
    assert pristine_tree(tarball, "f" * 64, step) == tree
    assert (tree / "marker").exists()  # not unpacked again


def test_a_file_that_is_no_tarball_is_one_line_naming_it_and_leaves_nothing(cache, tmp_path):
    bogus = tmp_path / "linux.tar.xz"
    bogus.write_bytes(b"not a tarball\n" * 100)
    with pytest.raises(KernelBuildError, match=rf"{bogus}: cannot unpack: `tar -xf .*` exited 2") as info:
        pristine_tree(bogus, "e" * 64, Step("test"))
    assert "\n" not in str(info.value)
    assert not (cache / "sources" / ("e" * 64)).exists()


def test_the_unpack_has_a_deadline(cache, tarball, monkeypatch):
    """A tar that hangs (a stalled disk) is killed and named, not waited on forever."""
    monkeypatch.setattr(deadlines, "TAR_EXTRACT", 0.001)
    with pytest.raises(KernelBuildError, match=r"cannot unpack: `tar -xf .*` did not finish in 0.001s and was killed"):
        pristine_tree(tarball, "d" * 64, Step("test"))
    assert not (cache / "sources" / ("d" * 64)).exists()


def test_patched_tree_leaves_the_pristine_copy_alone(cache, tarball, tmp_path):
    step = Step("test")
    pristine = pristine_tree(tarball, "f" * 64, step)
    patch = tmp_path / "0001-good.patch"
    patch.write_text(GOOD_PATCH)
    tree = patched_tree(pristine, [patch], tmp_path / "tree", step)
    assert "int b_patched;" in (tree / "net/core/dev.c").read_text()
    assert "int b;" in (pristine / "net/core/dev.c").read_text()


def test_no_patches_still_gives_a_copy_at_the_fixed_path(cache, tarball, tmp_path):
    pristine = pristine_tree(tarball, "f" * 64, Step("test"))
    tree = patched_tree(pristine, [], tmp_path / "tree", Step("test"))
    assert tree == tmp_path / "tree"
    assert (tree / "net/core/dev.c").read_text() == (pristine / "net/core/dev.c").read_text()
    assert (tree / "net/core/dev.c").stat().st_ino == (pristine / "net/core/dev.c").stat().st_ino  # hard link


def test_failing_patch_names_patch_and_file_and_changes_nothing(tmp_path):
    tree = tmp_path / "tree"
    (tree / "net/core").mkdir(parents=True)
    (tree / "net/core/dev.c").write_text("int a;\nint b;\nint c;\n")
    patch = tmp_path / "0002-broken.patch"
    patch.write_text(BAD_PATCH)
    with pytest.raises(KernelBuildError, match=r"patch 0002-broken.patch does not apply: net/core/dev.c: .*FAILED"):
        apply_patch(tree, patch)
    assert (tree / "net/core/dev.c").read_text() == "int a;\nint b;\nint c;\n"
    assert sorted(p.name for p in (tree / "net/core").iterdir()) == ["dev.c"]  # no .rej or .orig


def test_patch_for_a_missing_file_names_it(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    patch = tmp_path / "0003-missing.patch"
    patch.write_text(GOOD_PATCH)
    with pytest.raises(KernelBuildError, match=r"patch 0003-missing.patch does not apply: .*not found|can't find"):
        apply_patch(tree, patch)


def test_variant_whose_patch_fails_leaves_no_cache_entry(cache, tarball, tmp_path):
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "series").write_text("0001-broken.patch\n")
    (patches / "0001-broken.patch").write_text(BAD_PATCH)
    frag = tmp_path / "base.config"
    frag.write_text("CONFIG_NET=y\n")
    variant = kernel_spec.Variant("prism", "tinyconfig", (frag,), patches, "-prism")
    source = kernel_spec.KernelSource("fake", tarball=tarball)
    spec = kernel_spec.BuildSpec(variant, source, "f" * 64, (("0001-broken.patch", "0" * 64),),
                                 (("base.config", "1" * 64),), "gcc")
    store = Store("kernels")
    with pytest.raises(KernelBuildError, match="patch 0001-broken.patch does not apply: net/core/dev.c"):
        kernel_mod.build_variant(spec, store)
    assert store.lookup(spec.key) is None
    assert not store.entries()
    assert not (cache / "work" / "kernel-slot").exists()  # the scratch tree is gone too


def test_url_source_is_fetched_once_and_checked(cache, tarball):
    from testbed.build.kernel_source import fetch_tarball
    from testbed.core.cache import sha256_file

    good = kernel_spec.KernelSource("pinned", url=tarball.as_uri(), sha256=sha256_file(tarball))
    fetched = fetch_tarball(good, Step("test"))
    assert fetched.read_bytes() == tarball.read_bytes()
    assert fetched.name.endswith(".tar.xz") and fetched.parent == cache / "downloads"
    tarball.unlink()  # a second call must not fetch again
    assert fetch_tarball(good, Step("test")) == fetched


def test_url_source_with_wrong_sha256_is_refused_and_not_kept(cache, tarball):
    from testbed.build.kernel_source import fetch_tarball

    bad = kernel_spec.KernelSource("pinned", url=tarball.as_uri(), sha256="0" * 64)
    with pytest.raises(KernelBuildError, match=r"kernel source pinned: file://.* has sha256 [0-9a-f]{64}, pinned 0{64}"):
        fetch_tarball(bad, Step("test"))
    assert [p.name for p in (cache / "downloads").iterdir() if not p.name.endswith(".lock")] == []


def test_unreachable_url_is_a_one_line_error(cache, tmp_path):
    from testbed.build.kernel_source import fetch_tarball

    missing = kernel_spec.KernelSource("pinned", url=(tmp_path / "nope.tar.xz").as_uri(), sha256="1" * 64)
    with pytest.raises(KernelBuildError, match=r"kernel source pinned: cannot fetch file://"):
        fetch_tarball(missing, Step("test"))
