"""Config fragments against the real kconfig of the source tree the testbed builds."""

from __future__ import annotations

import os
import subprocess

import pytest

from testbed.build import kernel as kernel_mod
from testbed.build.kernel_source import patched_tree, pristine_tree
from testbed.build.kernel_spec import load_catalog
from testbed.core.errors import KernelBuildError
from testbed.core.progress import Step


@pytest.fixture(scope="module")
def source_tree():
    catalog = load_catalog()
    source = catalog.source(None)
    return pristine_tree(source.tarball, source.identity(), Step("source"))


def test_dropped_option_names_itself_and_what_it_lacks(source_tree, tmp_path):
    fragment = tmp_path / "lkdtm.config"
    # lkdtm needs RUNTIME_TESTING_MENU too, which tinyconfig leaves off
    fragment.write_text("CONFIG_DEBUG_FS=y\nCONFIG_LKDTM=y\n")
    build = tmp_path / "build"
    build.mkdir()
    with pytest.raises(KernelBuildError) as info:
        kernel_mod.configure(Step("test"), source_tree, build, "tinyconfig", [("lkdtm.config", fragment)],
                             tmp_path / "log")
    message = str(info.value)
    assert "lkdtm.config asks CONFIG_LKDTM=y but the final .config has it unset" in message
    assert "off in the final .config: CONFIG_RUNTIME_TESTING_MENU" in message
    assert "\n" not in message


def test_shipped_fragments_hold_in_the_final_config(source_tree, tmp_path):
    """Every variant's fragments survive olddefconfig (what a build checks too), on its patched tree.

    A variant's options may exist only once its series is applied (CONFIG_PRISM).
    """
    catalog = load_catalog()
    for variant in catalog.variants.values():
        build = tmp_path / variant.name
        build.mkdir()
        tree = source_tree
        if variant.patches():
            tree = patched_tree(source_tree, variant.patches(), tmp_path / f"{variant.name}-src", Step("test"))
        fragments = [(f.name, f) for f in variant.fragments]
        final = kernel_mod.configure(Step("test"), tree, build, variant.base, fragments, tmp_path / "log")
        assert final["CONFIG_VXLAN"] == "y" and final["CONFIG_VIRTIO_NET"] == "y"
        assert final.get("CONFIG_PRISM") == ("y" if variant.name.startswith("prism") else None), variant.name
        if variant.name == "prism-debug":
            assert final.get("CONFIG_PROVE_LOCKING") == "y" and final.get("CONFIG_DEBUG_ATOMIC_SLEEP") == "y"


# The PRISM series' objects, built on tinyconfig with just what CONFIG_PRISM needs:
# no CONFIG_SMP, so no CONFIG_RPS (a uniprocessor kernel), and the same without PRISM.
UP_FRAGMENT = "CONFIG_NET=y\nCONFIG_INET=y\nCONFIG_SYSCTL=y\nCONFIG_PROC_FS=y\n"
SERIES_OBJECTS = ("net/core/dev.o", "net/core/prism.o")


@pytest.mark.slow
@pytest.mark.parametrize("prism", [True, False], ids=["prism-without-rps", "no-prism"])
def test_the_series_compiles_without_rps(source_tree, tmp_path, prism):
    """dev.c's PRISM helpers are not inside CONFIG_RPS (they were: a UP kernel failed to build).

    With CONFIG_PRISM off, dev.c compiles against the helpers' stubs.
    """
    variant = load_catalog().variants["prism"]
    tree = patched_tree(source_tree, variant.patches(), tmp_path / "src", Step("test"))
    fragment = tmp_path / "up.config"
    fragment.write_text(UP_FRAGMENT + ("CONFIG_PRISM=y\n" if prism else ""))
    build = tmp_path / "build"
    build.mkdir()
    final = kernel_mod.configure(Step("test"), tree, build, "tinyconfig", [("up.config", fragment)], tmp_path / "log")
    assert final.get("CONFIG_RPS", "n") == "n" and final.get("CONFIG_SMP", "n") == "n"
    assert final.get("CONFIG_PRISM", "n") == ("y" if prism else "n")
    objects = SERIES_OBJECTS if prism else SERIES_OBJECTS[:1]
    done = subprocess.run([*kernel_mod.make_argv(tree, build, *objects), f"-j{os.cpu_count() or 1}"],
                          env=kernel_mod.compiler_env(), capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, f"{' '.join(objects)} did not compile:\n{done.stderr[-3000:]}"
