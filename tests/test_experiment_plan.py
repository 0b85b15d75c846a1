"""The experiment's plan is checked before anything is built or booted: one line naming the bad input."""

from __future__ import annotations

import pytest

from testbed.core.errors import ConfigError
from testbed.harness.experiment import DEFAULT_SETTINGS, ExperimentPlan
from testbed.harness.kernel_choice import boot_order, parse_kernels


@pytest.mark.parametrize(("plan", "message"), [
    (ExperimentPlan(rounds=0), "--rounds 0 must be 1-100"),
    (ExperimentPlan(rounds=-1), "--rounds -1 must be 1-100"),
    (ExperimentPlan(retries=11), "--retries 11 must be 0-10"),
    (ExperimentPlan(boots=0), "--boots 0 must be 1-50"),
    (ExperimentPlan(baseline="mine"), "--baseline 'mine' is not one of the kernels \\(vanilla, prism\\)"),
    (ExperimentPlan(kernels=["vanillla"]), "--kernels 'vanillla': not a variant .* a bzImage file or a kernel tree"),
    (ExperimentPlan(kernels=["a/b=vanilla"]), "label 'a/b' may hold only"),
    (ExperimentPlan(kernels=[]), "--kernels needs at least one kernel"),
    (ExperimentPlan(prism_settings=["bogus"]), "--prism bogus: prism mode 'bogus' must be one of"),
    (ExperimentPlan(prism_settings=["sync+bogus"]), "--prism sync\\+bogus: .* only \\+split, \\+empty, .* may follow"),
    (ExperimentPlan(prism_settings=["off+split"]), "--prism off\\+split: .* '\\+split', '\\+empty' and .* need a mode"),
])
def test_a_bad_plan_is_one_line_naming_the_input(plan, message):
    with pytest.raises(ConfigError, match=message):
        plan.check()


def test_the_default_plan_is_good_and_measures_off_as_the_same_binarys_baseline():
    choices = ExperimentPlan().check()
    assert [c.label for c in choices] == ["vanilla", "prism"]
    assert DEFAULT_SETTINGS[0] == "off" and ExperimentPlan().boots == 3
    design = ExperimentPlan().design(choices)
    assert design["baseline"] == "vanilla" and design["boot_order"] == ["vanilla", "prism", "prism", "vanilla",
                                                                       "vanilla", "prism"]
    assert design["units"]["kernel against kernel"] == "boot"


def test_the_same_kernel_twice_is_two_conditions_and_a_tree_or_image_is_a_kernel(tmp_path):
    image = tmp_path / "build" / "bzImage"
    image.parent.mkdir()
    image.write_bytes(b"x")
    tree = tmp_path / "linux"
    (tree / "net" / "core").mkdir(parents=True)
    (tree / "Makefile").write_text("")
    (tree / "Kconfig").write_text("")
    (tree / "net" / "core" / "prism.c").write_text("")
    choices = parse_kernels(["vanilla", "vanilla", "vanilla", f"mine={tree}", str(image), "prism"])
    assert [c.label for c in choices] == ["vanilla", "vanilla#2", "vanilla#3", "mine", "build", "prism"]
    assert choices[3].tree == tree and choices[3].tree_variant == "prism"
    assert choices[4].bzimage == image and choices[0].variant == "vanilla"
    with pytest.raises(ConfigError, match="is a directory but not a kernel tree"):
        parse_kernels([str(tmp_path / "build")])


@pytest.mark.parametrize(("labels", "boots", "order"), [
    (["a", "b"], 3, "ab ba ab"),
    (["a", "b"], 4, "ab ba ab ba"),
    (["a"], 2, "a a"),
    (["a", "b", "c"], 4, "abc acb cab cba"),
])
def test_boots_come_in_a_balanced_order(labels, boots, order):
    assert "".join(boot_order(labels, boots)) == order.replace(" ", "")
    assert all(boot_order(labels, boots).count(x) == boots for x in labels)
