"""The experiment's plan is checked before anything is built or booted: one line naming the bad input."""

from __future__ import annotations

import pytest

from testbed.core.errors import ConfigError
from testbed.harness.experiment import DEFAULT_SETTINGS, ExperimentPlan


@pytest.mark.parametrize(("plan", "message"), [
    (ExperimentPlan(rounds=0), "--rounds 0 must be 1-100"),
    (ExperimentPlan(rounds=-1), "--rounds -1 must be 1-100"),
    (ExperimentPlan(retries=11), "--retries 11 must be 0-10"),
    (ExperimentPlan(prism_settings=["bogus"]), "--prism bogus: prism mode 'bogus' must be one of"),
    (ExperimentPlan(prism_settings=["sync+bogus"]), "--prism sync\\+bogus: .* only \\+split, \\+empty, .* may follow"),
    (ExperimentPlan(prism_settings=["off+split"]), "--prism off\\+split: .* '\\+split', '\\+empty' and .* need a mode"),
])
def test_a_bad_plan_is_one_line_naming_the_input(plan, message):
    with pytest.raises(ConfigError, match=message):
        plan.check()


def test_the_default_plan_is_good_and_measures_off_as_the_same_binarys_baseline():
    ExperimentPlan().check()
    assert DEFAULT_SETTINGS[0] == "off" and ExperimentPlan().rounds == 5
