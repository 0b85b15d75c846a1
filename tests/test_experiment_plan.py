"""The experiment's plan is checked before anything is built or booted: one line naming the bad input."""

from __future__ import annotations

import json

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


class _FakeDeployment:
    booted: list = []

    def __init__(self, topo, kernel, image, accel):
        self.kernel = kernel

    def __enter__(self):
        _FakeDeployment.booted.append(self.kernel.variant)
        return self

    def __exit__(self, *exc):
        return False

    def vm(self, name):
        return self.kernel


def test_the_schedule_boots_each_kernel_in_a_balanced_order_and_records_every_try(tmp_path, monkeypatch):
    """No VM: the experiment's schedule with every outside part faked, down to which run went where."""
    import dataclasses as dc

    from testbed.analysis.run_record import RunRecord
    from testbed.build.kernel import Kernel
    from testbed.harness import experiment
    from testbed.harness.kernel_choice import KernelChoice
    from testbed.traffic.calibrate import Calibration
    from testbed.traffic.mix import Mix

    mix = Mix("m", "two-vm", (), {}, floods=(), settle=0.0)
    mix = dc.replace(mix, floods=(experiment.mix_mod.HostFloodSpec("flood", "s2", rate=None),))
    monkeypatch.setattr(experiment.mix_mod, "load", lambda name: mix)
    topo = type("T", (), {"vms": [type("V", (), {"name": "server"})]})()
    monkeypatch.setattr(experiment.topology_mod, "load", lambda name: topo)
    monkeypatch.setattr(Mix, "validate", lambda self, topo: self)
    monkeypatch.setattr(experiment, "build_image", lambda spec: "image")
    monkeypatch.setattr(experiment, "load_spec", lambda: None)
    monkeypatch.setattr(KernelChoice, "obtain", lambda self, source=None: Kernel(tmp_path / self.label, "6.1", self.label))
    monkeypatch.setattr(experiment.accel_mod, "choose", lambda requested, image: None)
    monkeypatch.setattr(experiment, "host_facts", lambda accel: {"cpus": 2})
    monkeypatch.setattr(experiment, "Deployment", _FakeDeployment)
    monkeypatch.setattr(experiment.prism_knobs, "has_prism", lambda vm: vm.variant == "prism")
    applied = []
    monkeypatch.setattr(experiment.prism_knobs, "apply", lambda d, setting, mix: applied.append(setting.text))
    rates = {"vanilla": 30000.0, "prism/off": 40000.0, "prism/sync": 35000.0}
    monkeypatch.setattr(experiment, "calibrate", lambda d, mix, accel, kernel, start, sender: Calibration(
        "m", rates[kernel], "ok", kernel=kernel))
    tries = iter([RuntimeError, "invalid", None] + [None] * 100)  # the first loaded try fails, the second misses

    class Run:
        def __init__(self, mix):
            self.mix = mix

        def validity(self):
            return self.why

    def run_mix(deployment, mix):
        run = Run(mix)
        run.why = None
        if mix.loaded:
            what = next(tries)
            if what is RuntimeError:
                raise experiment.VerdictError("no answer from s1")
            run.why = what
        return run

    monkeypatch.setattr(experiment, "run_mix", run_mix)
    monkeypatch.setattr(experiment.report, "run_record",
                        lambda run, **kw: RunRecord(label=kw["label"], mix={"name": run.mix.name, "loaded": run.mix.loaded},
                                                    flows={}))
    _FakeDeployment.booted = []
    plan = experiment.ExperimentPlan(results=tmp_path, boots=2, rounds=2, prism_settings=["off", "sync"])
    out = experiment.run_experiment(plan)
    assert _FakeDeployment.booted == ["vanilla", "prism", "vanilla", "prism", "prism", "vanilla"]
    assert out.rate == pytest.approx(40000.0) and "prism/off 40000" in out.rate_why
    assert [c.kernel for c in out.calibrations] == ["vanilla", "prism/off", "prism/sync"]
    loaded = [(r.label, r.boot, r.round, r.attempt) for r in out.records if r.mix["loaded"]]
    assert loaded[:3] == [("vanilla", 1, 1, 2), ("vanilla", 1, 1, 3), ("vanilla", 1, 2, 1)]
    prism_boot1 = [(r.label, r.round) for r in out.records if r.mix["loaded"] and r.kernel_label == "prism" and r.boot == 1]
    assert prism_boot1 == [("prism/off", 1), ("prism/sync", 1), ("prism/sync", 2), ("prism/off", 2)]  # rotated
    assert [(t["outcome"], t["why"]) for t in out.tries[:3]] == [("failed", "no answer from s1"), ("invalid", "invalid"),
                                                                 ("valid", None)]
    assert json.loads((out.directory / "tries.json").read_text()) == out.tries
    unloaded = [(r.label, r.boot) for r in out.records if not r.mix["loaded"]]
    assert unloaded == [("vanilla", 0), ("prism/off", 0), ("prism/sync", 0)]
    assert {r.setting for r in out.records if r.kernel_label == "prism"} == {"off", "sync"}
