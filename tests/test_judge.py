"""testbed.analysis.judge: t intervals over units on log scale, the gate on the interval, censored tails.

The intervals are checked against numbers worked by hand and against a
direct computation with scipy.stats.t (not the ttest functions the module
calls), so a wrong degrees-of-freedom or standard error shows.
"""

from __future__ import annotations

import math
import statistics
import warnings

import pytest
from scipy import stats

from testbed.analysis.judge import BOOT, INCONCLUSIVE, PRACTICAL_MINIMUM, ROUND, gate, judge, over_rounds
from testbed.analysis.latency import Interval
from testbed.analysis.tail import Tail, tail_of
from testbed.analysis.verdict import FASTER, SLOWER
from testbed.core.errors import VerdictError

# per-round log ratios ln 0.5 + (0.1, -0.1, 0): mean ln 0.5, sd 0.1, se 0.1/sqrt 3, t(0.975, df 2) = 4.30265
PAIRED_A = [500 * math.exp(0.1), 1000 * math.exp(-0.1), 2000.0]
PAIRED_B = [1000.0, 2000.0, 4000.0]
PAIRED_CI = (0.5 * math.exp(-4.30265273 * 0.1 / math.sqrt(3)), 0.5 * math.exp(4.30265273 * 0.1 / math.sqrt(3)))


def welch_by_hand(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """ratio and CI from the textbook formulas: se from the two variances, Welch–Satterthwaite df."""
    la, lb = [math.log(x) for x in a], [math.log(x) for x in b]
    qa, qb = statistics.variance(la) / len(la), statistics.variance(lb) / len(lb)
    df = (qa + qb) ** 2 / (qa ** 2 / (len(la) - 1) + qb ** 2 / (len(lb) - 1))
    d = statistics.fmean(la) - statistics.fmean(lb)
    half = stats.t.ppf((1 + level) / 2, df) * math.sqrt(qa + qb)
    return math.exp(d), math.exp(d - half), math.exp(d + half)


# --- over_rounds ------------------------------------------------------------------------------


def test_paired_interval_matches_the_hand_computation():
    v = over_rounds("priority", "prism-sync", PAIRED_A, "prism-sync", PAIRED_B, paired=True, b_flow="bulk")
    assert v.ratio == pytest.approx(0.5, rel=1e-12)
    assert (v.ci.low, v.ci.high) == pytest.approx(PAIRED_CI, rel=1e-6)
    assert (v.ci.low, v.ci.high) == pytest.approx((0.390019, 0.640995), abs=1e-6)
    assert v.verdict == FASTER and v.paired and v.units == (3, 3) and v.reason is None
    assert not v.min_max_disjoint  # the rounds overlap; only pairing shows the effect


def test_the_same_values_unpaired_are_inconclusive():
    """Across boots the round-to-round spread (1 to 4 ms) swamps a halving that pairing sees."""
    v = over_rounds("priority", "prism-sync", PAIRED_A, "vanilla", PAIRED_B)
    assert v.ratio == pytest.approx(0.5, rel=1e-12)
    assert v.ci.low < 0.2 and v.ci.high > 2
    assert v.verdict == INCONCLUSIVE and "reaches into" in v.reason and not v.paired


def test_welch_interval_matches_scipy_t_directly():
    a, b = [100.0, 120.0, 90.0, 110.0, 105.0], [200.0, 260.0, 180.0, 230.0, 210.0]
    v = over_rounds("priority", "prism-sync", a, "vanilla", b)
    ratio, low, high = welch_by_hand(a, b)
    assert v.ratio == pytest.approx(ratio, rel=1e-12)
    assert (v.ci.low, v.ci.high) == pytest.approx((low, high), rel=1e-9)
    assert (v.ci.low, v.ci.high) == pytest.approx((0.40586, 0.58605), abs=1e-5)
    assert v.verdict == FASTER and v.min_max_disjoint and v.units == (5, 5)


def test_welch_level_is_honoured():
    a, b = [100.0, 120.0, 90.0, 110.0, 105.0], [200.0, 260.0, 180.0, 230.0, 210.0]
    v90, v99 = (over_rounds("f", "x", a, "y", b, level=lv) for lv in (0.90, 0.99))
    assert (v90.ci.low, v90.ci.high) == pytest.approx(welch_by_hand(a, b, 0.90)[1:], rel=1e-9)
    assert v99.ci.low < v90.ci.low and v99.ci.high > v90.ci.high and v99.ci.level == 0.99


def test_slower_is_the_mirror_of_faster():
    a, b = [200.0, 260.0, 180.0, 230.0, 210.0], [100.0, 120.0, 90.0, 110.0, 105.0]
    v = over_rounds("priority", "prism-sync", a, "vanilla", b)
    assert v.verdict == SLOWER and v.ci.low > 1
    assert v.ratio == pytest.approx(1 / welch_by_hand(b, a)[0], rel=1e-12)


NEAR_A = [95.0, 96.0, 94.0, 95.5, 94.5]
NEAR_B = [100.0, 101.0, 99.0, 100.5, 99.5]


def test_gate_a_sure_but_small_gain_is_inconclusive():
    v = over_rounds("priority", "prism-sync", NEAR_A, "vanilla", NEAR_B)
    assert v.ci.high < 1  # the interval alone would say faster
    assert v.ratio == pytest.approx(0.95, abs=1e-3)
    assert PRACTICAL_MINIMUM == 0.10 and v.practical_minimum == 0.10
    assert v.verdict == INCONCLUSIVE and "[0.90, 1.11]" in v.reason
    assert over_rounds("priority", "prism-sync", NEAR_A, "vanilla", NEAR_B, practical=0.01).verdict == FASTER


def test_gate_a_sure_but_small_loss_is_inconclusive():
    v = over_rounds("priority", "prism-sync", NEAR_B, "vanilla", NEAR_A)
    assert v.ci.low > 1 and v.ratio == pytest.approx(1 / 0.95, abs=1e-3)
    assert v.verdict == INCONCLUSIVE  # 1.053 < 1 / 0.9
    assert over_rounds("priority", "prism-sync", NEAR_B, "vanilla", NEAR_A, practical=0.01).verdict == SLOWER


def test_gate_a_large_but_unsure_effect_is_inconclusive():
    v = over_rounds("priority", "a", [20.0, 200.0, 30.0], "b", [100.0, 110.0, 90.0])
    assert v.ratio < 1 - PRACTICAL_MINIMUM and v.ci.high > 1
    assert v.verdict == INCONCLUSIVE


def test_the_gate_is_on_the_whole_interval_not_the_point():
    """0.888 [0.795, 0.991] was once called faster: the interval allows a 1 % effect."""
    assert gate(Interval(0.795, 0.991, 0.95)) == INCONCLUSIVE
    assert gate(Interval(0.795, 0.899, 0.95)) == FASTER
    assert gate(Interval(1.009, 1.25, 0.95)) == INCONCLUSIVE
    assert gate(Interval(1.112, 1.25, 0.95)) == SLOWER
    assert gate(Interval(0.5, 2.0, 0.95)) == INCONCLUSIVE


@pytest.mark.parametrize("a, b, counts", [([100.0], [200.0, 210.0], "a has 1 valid round, b 2 valid rounds"),
                                          ([100.0, 110.0], [], "a has 2 valid rounds, b 0 valid rounds")])
def test_fewer_than_two_units_is_inconclusive_and_says_why(a, b, counts):
    v = over_rounds("priority", "a", a, "b", b)
    assert v.verdict == INCONCLUSIVE and v.reason is not None and v.reason.startswith(counts)
    assert math.isnan(v.ci.low) and math.isnan(v.ci.high)
    assert v.units == (len(a), len(b))


def test_one_round_still_gives_the_point_ratio():
    v = over_rounds("priority", "a", [100.0], "b", [200.0, 50.0])
    assert v.ratio == pytest.approx(1.0)  # 100 against the geometric mean of 200 and 50
    assert math.isnan(over_rounds("priority", "a", [], "b", [200.0, 50.0]).ratio)


def test_paired_needs_two_pairs():
    v = over_rounds("priority", "x", [100.0], "x", [200.0], paired=True, b_flow="bulk")
    assert v.verdict == INCONCLUSIVE and "1 round with both priority and bulk valid" in v.reason


def test_zero_variance_gives_the_point_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy warns about catastrophic cancellation on constant data
        v = over_rounds("priority", "a", [100.0] * 4, "b", [200.0] * 3)
        p = over_rounds("priority", "a", [100.0, 200.0, 400.0], "a", [200.0, 400.0, 800.0], paired=True)
    assert (v.ratio, v.ci.low, v.ci.high) == pytest.approx((0.5, 0.5, 0.5), rel=1e-12)
    assert v.verdict == FASTER and v.min_max_disjoint
    assert (p.ratio, p.ci.low, p.ci.high) == pytest.approx((0.5, 0.5, 0.5), rel=1e-12)
    assert p.verdict == FASTER


def test_zero_variance_on_one_side_is_welch_with_the_other_sides_df():
    """Welch with one variance 0: se = sd_b / sqrt(n_b), df = n_b - 1."""
    b = [200.0, 240.0, 180.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = over_rounds("priority", "a", [100.0] * 3, "b", b)
    lb = [math.log(x) for x in b]
    d = math.log(100) - statistics.fmean(lb)
    half = stats.t.ppf(0.975, 2) * statistics.stdev(lb) / math.sqrt(3)
    assert (v.ci.low, v.ci.high) == pytest.approx((math.exp(d - half), math.exp(d + half)), rel=1e-9)


@pytest.mark.parametrize("bad", [0, -5.0, math.nan, math.inf, "12", None, True])
def test_bad_values_raise_naming_flow_and_condition(bad):
    with pytest.raises(VerdictError, match=r"flow 'priority', condition 'vanilla'"):
        over_rounds("priority", "prism-sync", [100.0, 110.0], "vanilla", [100.0, bad])


def test_paired_lengths_must_match_and_level_must_be_a_fraction():
    with pytest.raises(VerdictError, match="paired"):
        over_rounds("priority", "a", [1.0, 2.0, 3.0], "a", [1.0, 2.0], paired=True)
    with pytest.raises(VerdictError, match="confidence level"):
        over_rounds("priority", "a", [1.0, 2.0], "b", [1.0, 2.0], level=95)
    with pytest.raises(VerdictError, match="practical"):
        over_rounds("priority", "a", [1.0, 2.0], "b", [1.0, 2.0], practical=1.0)


def test_min_max_disjoint_is_lkp_style():
    assert over_rounds("f", "a", [1.0, 2.0], "b", [3.0, 4.0]).min_max_disjoint
    assert over_rounds("f", "a", [5.0, 6.0], "b", [3.0, 4.0]).min_max_disjoint
    assert not over_rounds("f", "a", [1.0, 3.5], "b", [3.0, 4.0]).min_max_disjoint




# --- a tail over the probes sent --------------------------------------------------------------


def test_a_tail_without_loss_is_the_ordinary_percentile():
    rtts = [float(x) for x in range(1, 1001)]
    t = tail_of(rtts, 1000, 99)
    assert t == Tail(pytest.approx(990.01), False, 1000, 0)
    assert t.value == pytest.approx(statistics.quantiles(rtts, n=100, method="inclusive")[98])


def test_lost_probes_rank_above_every_received_one():
    """9 of 1000 lost: the p99 (rank 989.01) still falls among the received, but higher up than without loss."""
    rtts = [float(x) for x in range(1, 992)]  # 991 received
    t = tail_of(rtts, 1000, 99)
    assert not t.censored and t.lost == 9
    assert t.value == pytest.approx(990.01)  # ranks 989 and 990 of the sent: the 990th and 991st received
    assert tail_of(rtts, 991, 99).value < t.value  # over the received alone it would be lower


def test_the_percentile_is_censored_once_its_rank_falls_among_the_lost():
    """707 of 5000 lost (vanilla's figure): the p99 is not a number, only at least the slowest received."""
    rtts = [float(x) for x in range(1, 4294)]
    t = tail_of(rtts, 5000, 99)
    assert t.censored and t.value == 4293.0 and t.lost == 707
    assert t.loss_share == pytest.approx(707 / 5000) and t.text() == "> 4.3"
    assert tail_of(rtts, 5000, 50).censored is False  # the median still falls among the received
    assert tail_of([], 100, 99) is None
    with pytest.raises(ValueError):
        tail_of([1.0, 2.0], 1, 99)


def test_a_censored_baseline_still_allows_faster_but_never_slower():
    """A lower bound on b bounds a/b from above: enough for 'faster', never for 'slower'."""
    fast = [Tail(v, False, 1000, 0) for v in (100.0, 110.0, 105.0)]
    slow = [Tail(v, True, 1000, 150) for v in (1000.0, 1100.0, 1050.0)]
    v = over_rounds("priority", "prism", fast, "vanilla", slow)
    assert v.verdict == FASTER and v.b_censored == (True, True, True)
    assert v.loss == ((0, 3000), (450, 3000))
    # a lower bound on a bounds a/b from below: enough for 'slower'
    assert over_rounds("priority", "vanilla", slow, "prism", fast).verdict == SLOWER
    slower = [Tail(v, False, 1000, 0) for v in (5000.0, 5100.0, 5050.0)]
    w = over_rounds("priority", "mine", slower, "vanilla", slow)
    assert w.ci.low > 1.2 and w.verdict == INCONCLUSIVE
    assert "vanilla's priority p99 is only a lower bound in 3 of 3 rounds (450 of 3000 probes lost)" in w.reason


def test_a_censored_side_under_test_cannot_be_faster():
    a = [Tail(v, True, 100, 50) for v in (10.0, 11.0, 12.0)]
    b = [Tail(v, False, 100, 0) for v in (100.0, 110.0, 120.0)]
    v = over_rounds("priority", "a", a, "b", b)
    assert v.ci.high < 0.9 and v.verdict == INCONCLUSIVE and "a's priority p99 is only a lower bound" in v.reason
    assert over_rounds("priority", "b", b, "a", a).verdict == INCONCLUSIVE


# --- boots as the unit ------------------------------------------------------------------------


def test_boots_are_summarised_by_their_geometric_mean_then_compared_by_welch():
    a = [[100.0, 400.0], [150.0], [220.0, 180.0, 200.0]]
    b = [[300.0, 300.0], [500.0, 320.0]]
    v = judge("priority", "prism", a, "vanilla", b, unit=BOOT)
    a_means = [200.0, 150.0, math.exp(statistics.fmean(math.log(x) for x in (220.0, 180.0, 200.0)))]
    b_means = [300.0, 400.0]
    ratio, low, high = welch_by_hand(a_means, b_means)
    assert v.a_values == pytest.approx(a_means) and v.b_values == pytest.approx(b_means)
    assert (v.ratio, v.ci.low, v.ci.high) == pytest.approx((ratio, low, high), rel=1e-9)
    assert v.unit == BOOT and v.units == (3, 2) and v.runs == (6, 4)


def test_one_boot_a_side_gives_no_verdict_however_many_rounds():
    """Five rounds on one boot are not five samples of the kernel: the boot is the unit."""
    v = judge("priority", "prism", [[100.0, 101.0, 99.0, 100.5, 99.5]], "vanilla",
              [[300.0, 301.0, 299.0], [310.0, 305.0]], unit=BOOT)
    assert v.verdict == INCONCLUSIVE and v.units == (1, 2)
    assert v.reason.startswith("prism has 1 valid boot, vanilla 2 valid boots: a verdict needs at least 2 boots")


def test_a_paired_unit_counts_only_with_both_halves_and_the_unit_must_be_known():
    v = judge("priority", "s", [[100.0], [], [120.0], [110.0]], "off", [[200.0], [210.0], [], [220.0]],
              unit=ROUND, paired=True)
    assert v.units == (2, 2) and v.a_values == (100.0, 110.0) and v.b_values == (200.0, 220.0)
    with pytest.raises(VerdictError, match="unit 'run'"):
        judge("priority", "a", [[1.0]], "b", [[1.0]], unit="run")
