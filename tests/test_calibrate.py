"""The calibration's rules on made-up ramps: which rate it chooses, when it stops, what it says."""

from __future__ import annotations

import pytest

from testbed.analysis.regime import Regime
from testbed.core.errors import ConfigError, VerdictError
from testbed.traffic import calibrate
from testbed.traffic import mix as mix_mod
from testbed.traffic.calibrate import CONFIRM, MARGIN, Calibration, Step, calibrated, choose, should_stop


def step(rate: float, valid: bool, *, sent: float | None = None, headroom: bool = True,
         occupancy: float | None = None):
    occupancy = (1.0 if valid else 0.0) if occupancy is None else occupancy
    regime = Regime(required=True, valid=valid, why=f"server: {'standing' if valid else 'invalid'} at {rate}",
                    standing=valid or not headroom, headroom=headroom, occupancy=occupancy)
    return Step(rate, rate if sent is None else sent, 0, regime)


def test_the_first_confirmed_rate_times_the_margin_is_chosen():
    steps = [step(2000, False), step(3000, True, occupancy=0.97), step(4500, True, occupancy=1.0)]
    rate, why = choose(steps)
    assert CONFIRM == 2 and rate == pytest.approx(3000 * MARGIN)
    assert "held from 3000 pps for 2 steps" in why and should_stop(steps)


def test_a_step_that_only_just_held_is_not_the_base():
    """Valid at 79 % occupancy (a run needs 75 %): the chosen rate would sit at the regime's edge."""
    steps = [step(15188, False), step(18601, True, occupancy=0.79), step(22781, True), step(34172, True)]
    assert choose(steps)[0] == pytest.approx(22781 * MARGIN)


def test_one_refining_step_between_the_base_and_the_step_below_it():
    from testbed.traffic.calibrate import refinement
    steps = [step(2000, False), step(3000, True), step(4500, True)]
    middle = refinement(steps)
    assert middle == pytest.approx((2000 * 3000) ** 0.5)
    held = steps + [step(middle, True)]
    assert choose(held)[0] == pytest.approx(middle * MARGIN)
    missed = steps + [step(middle, False)]
    assert choose(missed)[0] == pytest.approx(3000 * MARGIN)
    assert refinement([step(2000, True), step(3000, True)]) is None  # nothing below the base to refine towards


def test_a_window_narrower_than_a_step_is_searched_between_the_two_steps_around_it():
    from testbed.traffic.calibrate import bracket
    steps = [step(15000, False), step(22000, False), step(33000, False, headroom=False),
             step(50000, False, headroom=False)]
    assert bracket(steps) == (22000, 33000)
    middle = (22000 * 33000) ** 0.5
    held = steps + [step(middle, True)]
    assert bracket(held) == (middle, 33000)  # it held: now one above it must hold too
    upper = (middle * 33000) ** 0.5
    found = held + [step(upper, True)]
    # the stages before the target dropped at 33000, closer than HEADROOM_MARGIN: the base itself
    assert choose(found)[0] == pytest.approx(middle) and bracket(found) is None
    assert bracket([step(2000, False), step(3000, True), step(4500, True)]) is None


def test_a_rate_that_held_once_then_escaped_is_not_an_operating_point():
    steps = [step(2000, True), step(3000, False), step(4500, True)]
    assert choose(steps)[0] is None and not should_stop(steps)


def test_the_sender_falling_behind_ends_the_ramp_and_is_the_reason():
    steps = [step(2000, False), step(3000, False, sent=2000)]
    rate, why = choose(steps)
    assert rate is None and should_stop(steps)
    assert "flood generator stopped keeping its schedule at 3000 pps (delivered 2000)" in why


def test_a_valid_step_whose_sender_fell_behind_does_not_count():
    steps = [step(2000, True, sent=1000), step(3000, True)]
    assert choose(steps)[0] is None


def test_two_steps_without_headroom_end_the_ramp():
    steps = [step(2000, False), step(3000, False, headroom=False)]
    assert not should_stop(steps)
    steps.append(step(4500, False, headroom=False))
    assert should_stop(steps) and choose(steps)[0] is None


def test_calibrated_sets_the_auto_flood_and_refuses_an_unreached_regime():
    mix = mix_mod.load("overlay-flood")
    assert mix.needs_calibration
    done = calibrated(mix, Calibration(mix.name, 24000.0, "held"))
    assert not done.needs_calibration and done.floods[0].rate == 24000.0
    with pytest.raises(VerdictError, match="could not be brought into the regime: ramp ended"):
        calibrated(mix, Calibration(mix.name, None, "ramp ended"))


def test_a_flood_rate_is_a_number_or_auto():
    base = {"name": "m", "topology": "two-vm",
            "flow": [{"name": "p", "kind": "probe", "dst": "s1"}, {"name": "f", "kind": "flood", "dst": "s2"}]}
    base["flow"][1]["rate"] = "fast"
    with pytest.raises(ConfigError, match='rate \'fast\' must be a number of packets/s or "auto"'):
        mix_mod.from_dict(base, "x.toml")
    base["flow"][1]["rate"] = 5000
    assert not mix_mod.from_dict(base, "x.toml").needs_calibration


def test_calibration_record_names_its_constants_and_steps():
    c = Calibration("m", 3600.0, "held", [step(3000, True)], None, {"accel": "tcg", "cpus": 2})
    d = c.to_dict()
    assert d["rate"] == 3600 and d["constants"]["margin"] == calibrate.MARGIN and d["steps"][0]["target_pps"] == 3000


def test_the_point_keeps_its_distance_from_where_the_stages_before_the_target_drop():
    """A CI host's ramp: 34k stood at 93.5 % (not firm), 51k held, 77k and 63k dropped at gro_cells.

    1.1x 51k (56k) sat 10 % under that limit, and every vanilla run there missed the regime;
    the point now stays HEADROOM_MARGIN below the limit, and never below the base.
    """
    from testbed.traffic.calibrate import HEADROOM_MARGIN, refinement
    steps = [step(22781, False), step(34172, True, occupancy=0.935), step(51258, True),
             step(76887, False, headroom=False), step(62778, False, headroom=False), step(56726, True)]
    rate, why = choose(steps)
    assert rate == pytest.approx(51258) and "dropped at 62778 pps, closer than 1.25x" in why
    middle = refinement(steps)
    assert middle == pytest.approx((34172 * 51258) ** 0.5)  # the search's point is refined towards the knee
    rate, why = choose(steps + [step(middle, True)])
    assert rate == pytest.approx(middle * MARGIN) and rate <= 62778 / HEADROOM_MARGIN
    near = [step(30000, True), step(34000, True), step(40000, False, headroom=False)]
    rate, why = choose(near)
    assert rate == pytest.approx(40000 / HEADROOM_MARGIN) and "1.25x below 40000 pps" in why


def _calibration(kernel: str, steps: list) -> Calibration:
    rate, why = choose(steps)
    return Calibration("m", rate, why, steps, kernel=kernel)


def test_every_kernel_runs_at_the_highest_kernels_point_while_it_keeps_headroom_on_all():
    from testbed.traffic.calibrate import common_rate
    slow = _calibration("vanilla", [step(20000, False), step(30000, True), step(45000, True)])
    fast = _calibration("prism", [step(20000, False), step(30000, False), step(40000, True), step(50000, True)])
    rate, why = common_rate([slow, fast])
    assert rate == pytest.approx(40000 * MARGIN) and "vanilla 33000, prism 44000" in why
    tight = _calibration("vanilla", [step(30000, True), step(40000, True), step(48000, False, headroom=False)])
    rate, why = common_rate([tight, fast])
    assert rate is None and "within 1.25x of 48000 pps, where a stage before the target dropped on vanilla" in why
    unreached = Calibration("m", None, "the queue never stood", [], kernel="mine")
    assert common_rate([slow, unreached]) == (None, "mine: the queue never stood")


def test_a_failed_calibration_names_the_closest_rates_and_the_levers():
    """As a user's own mix ended: 56.7k and 59.7k pps stood with the tap dropping under 1 %, 115k at 31 %."""
    def dropped(rate: float, tap: float) -> Step:
        return Step(rate, rate, 0, Regime(required=True, valid=False, why=f"tap {tap:.2%}", standing=True,
                                          headroom=False, occupancy=0.9, tap_drop_share=tap))
    near = [step(37000, False), dropped(56700, 0.0077), dropped(59700, 0.0092), dropped(115330, 0.3155)]
    rate, why = choose(near)
    assert rate is None and "Closest: 56700 pps (queue stood in 90%; host tap dropped 0.77%)" in why
    assert "59700 pps (queue stood in 90%; host tap dropped 0.92%); 115330" in why
    assert "stood from 56700 pps and a stage before it dropped from 56700 pps" not in why  # no window above
    assert "The levers:" in why and "ingress-rules" in why and "overlay-flood.toml" in why
    window = [step(10000, False), step(12400, True), dropped(13000, 0.0137), dropped(15200, 0.0139)]
    assert "stood from 12400 pps and a stage before it dropped from 13000 pps: a window of 1.05x" in choose(window)[1]
    rate, why = choose([step(2000, False), step(3000, False)])
    assert "The target CPU's queue never stood" in why


def test_the_ramp_starts_where_it_is_told(monkeypatch):
    """A later condition's ramp starts near the first knee; by default the ramp starts at START_PPS.

    (The parameter was once shadowed by the ramp's timer, so every ramp started at the host's
    uptime in pps.)"""
    import contextlib

    offered = []
    monkeypatch.setattr(calibrate, "prepare", lambda deployment, mix: None)
    monkeypatch.setattr(calibrate, "_busy", lambda deployment, mix: contextlib.nullcontext())
    monkeypatch.setattr(calibrate, "_step", lambda deployment, mix, rate: offered.append(rate) or step(rate, False))
    monkeypatch.setattr(calibrate, "sender_ceiling", lambda deployment, mix: (None, [{"target_pps": 1}]))
    mix = mix_mod.Mix("m", "two-vm", (), {}, floods=(mix_mod.HostFloodSpec("flood", "s2", rate=None),))
    monkeypatch.setattr(mix_mod.Mix, "validate", lambda self, topo: self)
    deployment = type("D", (), {"topology": None})()
    calibrate.calibrate(deployment, mix)
    assert offered[0] == calibrate.START_PPS
    offered.clear()
    calibrate.calibrate(deployment, mix, start=3000.0, sender=(None, []))
    assert offered[0] == 3000.0
