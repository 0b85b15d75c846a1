"""Config fragments against the real kconfig of the source tree the testbed builds."""

from __future__ import annotations

import pytest

from testbed import kernel as kernel_mod
from testbed.errors import KernelBuildError
from testbed.kernel_source import patched_tree, pristine_tree
from testbed.kernel_spec import load_catalog
from testbed.progress import Step


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
