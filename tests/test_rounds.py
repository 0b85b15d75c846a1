"""testbed.analysis.rounds: t intervals over rounds on log scale, the dual gate, run records, verdict.json.

The intervals are checked against numbers worked by hand and against a
direct computation with scipy.stats.t (not the ttest functions the module
calls), so a wrong degrees-of-freedom or standard error shows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import warnings

import pytest
from scipy import stats

from testbed.analysis.counted import excluded_runs
from testbed.analysis.rounds import (
    INCONCLUSIVE,
    PRACTICAL_MINIMUM,
    SCHEMA,
    RoundVerdict,
    over_rounds,
    rise_over_rounds,
    verdict_rows,
    verdicts_from_records,
    write_verdict_json,
)
from testbed.analysis.run_record import RunRecord
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
    assert v.verdict == FASTER and v.paired and v.valid_rounds == (3, 3) and v.reason is None
    assert not v.min_max_disjoint  # the rounds overlap; only pairing shows the effect


def test_the_same_values_unpaired_are_inconclusive():
    """Across boots the round-to-round spread (1 to 4 ms) swamps a halving that pairing sees."""
    v = over_rounds("priority", "prism-sync", PAIRED_A, "vanilla", PAIRED_B)
    assert v.ratio == pytest.approx(0.5, rel=1e-12)
    assert v.ci.low < 0.2 and v.ci.high > 2
    assert v.verdict == INCONCLUSIVE and v.reason is None and not v.paired


def test_welch_interval_matches_scipy_t_directly():
    a, b = [100.0, 120.0, 90.0, 110.0, 105.0], [200.0, 260.0, 180.0, 230.0, 210.0]
    v = over_rounds("priority", "prism-sync", a, "vanilla", b)
    ratio, low, high = welch_by_hand(a, b)
    assert v.ratio == pytest.approx(ratio, rel=1e-12)
    assert (v.ci.low, v.ci.high) == pytest.approx((low, high), rel=1e-9)
    assert (v.ci.low, v.ci.high) == pytest.approx((0.40586, 0.58605), abs=1e-5)
    assert v.verdict == FASTER and v.min_max_disjoint and v.valid_rounds == (5, 5)


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


def test_dual_gate_a_sure_but_small_gain_is_inconclusive():
    v = over_rounds("priority", "prism-sync", NEAR_A, "vanilla", NEAR_B)
    assert v.ci.high < 1  # the interval alone would say faster
    assert v.ratio == pytest.approx(0.95, abs=1e-3)
    assert PRACTICAL_MINIMUM == 0.10 and v.practical_minimum == 0.10
    assert v.verdict == INCONCLUSIVE and v.reason is None
    assert over_rounds("priority", "prism-sync", NEAR_A, "vanilla", NEAR_B, practical=0.01).verdict == FASTER


def test_dual_gate_a_sure_but_small_loss_is_inconclusive():
    v = over_rounds("priority", "prism-sync", NEAR_B, "vanilla", NEAR_A)
    assert v.ci.low > 1 and v.ratio == pytest.approx(1 / 0.95, abs=1e-3)
    assert v.verdict == INCONCLUSIVE  # 1.053 < 1 / 0.9
    assert over_rounds("priority", "prism-sync", NEAR_B, "vanilla", NEAR_A, practical=0.01).verdict == SLOWER


def test_dual_gate_a_large_but_unsure_effect_is_inconclusive():
    v = over_rounds("priority", "a", [20.0, 200.0, 30.0], "b", [100.0, 110.0, 90.0])
    assert v.ratio < 1 - PRACTICAL_MINIMUM and v.ci.high > 1
    assert v.verdict == INCONCLUSIVE


@pytest.mark.parametrize("a, b, counts", [([100.0], [200.0, 210.0], "a has 1 valid round, b 2 valid rounds"),
                                          ([100.0, 110.0], [], "a has 2 valid rounds, b 0 valid rounds")])
def test_fewer_than_two_rounds_is_inconclusive_and_says_why(a, b, counts):
    v = over_rounds("priority", "a", a, "b", b)
    assert v.verdict == INCONCLUSIVE and v.reason is not None and v.reason.startswith(counts)
    assert math.isnan(v.ci.low) and math.isnan(v.ci.high)
    assert v.valid_rounds == (len(a), len(b))


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


# --- run records ------------------------------------------------------------------------------


def run(label: str, rnd: int | None, *, loaded: bool = True, valid: bool | None = True, why: str = "",
        priority: float | None = 1000.0, bulk: float | None = 5000.0, mix: str = "overlay-flood") -> RunRecord:
    """A run record as the experiment writes it, with only the fields verdicts read."""
    def flow(cls: str, p99: float | None) -> dict:
        summary = None if p99 is None else {"p50": p99 / 2, "p90": p99 * 0.8, "p99": p99, "p999": p99 * 1.2}
        return {"class": cls, "summary": summary, "integrity": {"sent": 100}}
    r = {"label": label, "mix": {"name": mix if loaded else f"{mix}-unloaded", "loaded": loaded},
         "flows": {"priority": flow("priority", priority), "bulk": flow("bulk", bulk)}}
    if rnd is not None:
        r["round"] = rnd
    if valid is not None:
        r["regime"] = {"valid": valid, "why": why}
    return RunRecord.from_dict(r)


def experiment() -> list[RunRecord]:
    """prism-sync first on purpose (baseline must still come first); one invalid round, one lost flow."""
    recs = []
    for rnd, (sync, van, off) in enumerate([(200.0, 1000.0, 900.0), (210.0, 1100.0, 1000.0),
                                            (190.0, 950.0, 1100.0), (205.0, 1050.0, 950.0)], start=1):
        recs.append(run("prism-sync", rnd, priority=sync, bulk=sync * 20, valid=rnd != 2,
                        why="invalid: no receiver saturated" if rnd == 2 else ""))
        recs.append(run("vanilla", rnd, priority=None if rnd == 3 else van, bulk=van * 1.1))
        recs.append(run("prism-off", rnd, priority=off, bulk=off))
        recs.append(run("vanilla", rnd, loaded=False, valid=None, priority=100.0 + rnd))
    return recs


def test_verdicts_from_records_order_and_pairing():
    vs = verdicts_from_records(experiment())
    assert [(v.flow, v.a, v.b, v.b_flow, v.paired) for v in vs] == [
        ("priority", "prism-sync", "vanilla", None, False),
        ("priority", "prism-off", "vanilla", None, False),
        ("priority", "vanilla", "vanilla", "bulk", True),
        ("priority", "prism-sync", "prism-sync", "bulk", True),
        ("priority", "prism-off", "prism-off", "bulk", True),
    ]
    sync, off, van_pb, sync_pb, off_pb = vs
    assert sync.a_values == (200.0, 190.0, 205.0)  # round 2 invalid
    assert sync.b_values == (1000.0, 1100.0, 1050.0)  # vanilla round 3: no priority probe came back
    assert sync.valid_rounds == (3, 3) and sync.verdict == FASTER
    assert off.verdict == INCONCLUSIVE
    assert van_pb.a_values == (1000.0, 1100.0, 1050.0) and van_pb.b_values == (1100.0, 1210.0, 1155.0)
    assert van_pb.ratio == pytest.approx(1 / 1.1) and van_pb.verdict == INCONCLUSIVE  # 0.91: a tenth not quite
    assert sync_pb.ratio == pytest.approx(1 / 20) and sync_pb.verdict == FASTER
    assert off_pb.verdict == INCONCLUSIVE and off_pb.ci.low == pytest.approx(1.0)  # zero variance, ratio exactly 1


def test_other_percentiles_use_their_summary_key():
    vs = verdicts_from_records(experiment(), percentile=99.9)
    assert vs[0].a_values == pytest.approx((240.0, 228.0, 246.0)) and vs[0].percentile == 99.9
    with pytest.raises(VerdictError, match="no p95"):
        verdicts_from_records(experiment(), percentile=95)


def test_excluded_runs_lists_invalid_runs_and_empty_flows():
    assert excluded_runs(experiment()) == [
        {"label": "prism-sync", "round": 2, "attempt": None, "mix": "overlay-flood", "loaded": True, "flow": None,
         "why": "invalid: no receiver saturated"},
        {"label": "vanilla", "round": 3, "attempt": None, "mix": "overlay-flood", "loaded": True, "flow": "priority",
         "why": "flow 'priority': no probe came back intact (100 sent)"},
    ]


def test_loaded_runs_without_regime_do_not_count_and_old_records_are_round_one():
    recs = [run("vanilla", None, valid=None), run("vanilla", 2), run("vanilla", 3)]
    vs = verdicts_from_records(recs)
    assert vs[0].valid_rounds == (2, 2)  # only the paired verdict: there is nothing but the baseline
    assert excluded_runs(recs) == [{"label": "vanilla", "round": 1, "attempt": None, "mix": "overlay-flood",
                                    "loaded": True, "flow": None,
                                    "why": "no regime recorded, so the load was never checked"}]


def test_a_retried_round_counts_its_valid_try_once_and_lists_the_failed_one():
    failed = dataclasses.replace(run("vanilla", 2, valid=False, why="no standing queue", priority=1.0), attempt=1)
    recs = [run("vanilla", 1), failed, dataclasses.replace(run("vanilla", 2, priority=1200.0), attempt=2)]
    pb = verdicts_from_records(recs)[0]
    assert pb.a_values == (1000.0, 1200.0) and pb.valid_rounds == (2, 2)
    assert [(e["round"], e["attempt"], e["why"]) for e in excluded_runs(recs)] == [(2, 1, "no standing queue")]


def test_a_condition_with_no_valid_round_still_gets_an_inconclusive_row():
    recs = [run("vanilla", n) for n in (1, 2)] + [run("prism-sync", n, valid=False, why="x") for n in (1, 2)]
    vs = {(v.a, v.paired): v for v in verdicts_from_records(recs)}
    assert vs["prism-sync", False].reason.startswith("prism-sync has 0 valid rounds, vanilla 2 valid rounds")
    assert vs["prism-sync", True].verdict == INCONCLUSIVE


def test_records_that_cannot_be_judged_raise():
    with pytest.raises(VerdictError, match="round 1 is recorded twice"):
        verdicts_from_records([run("vanilla", 1), run("vanilla", 1)])
    with pytest.raises(VerdictError, match="2 mixes"):
        verdicts_from_records([run("vanilla", 1), run("vanilla", 1, mix="other")])
    assert verdicts_from_records([run("vanilla", 1), run("vanilla", 1, mix="other")], mix="other")
    with pytest.raises(VerdictError, match="round 0"):
        verdicts_from_records([run("vanilla", 0)])
    with pytest.raises(VerdictError, match="regime"):
        verdicts_from_records([dataclasses.replace(run("vanilla", 1), regime="valid")])
    with pytest.raises(VerdictError, match="condition 'prism-sync'"):
        verdicts_from_records([run("vanilla", 1), run("prism-sync", 1, priority=0.0)])


def test_rise_over_rounds_with_one_unloaded_run():
    recs = [run("vanilla", 1, priority=4000.0), run("vanilla", 2, priority=9000.0),
            run("vanilla", 3, priority=1.0, valid=False), run("vanilla", 1, loaded=False, valid=None, priority=1000.0)]
    rise = rise_over_rounds(recs, "vanilla", "priority")
    assert rise.loaded_values == (4000.0, 9000.0) and rise.unloaded_values == (1000.0,)
    assert rise.ratio == pytest.approx(6.0) and rise.ci is None and rise.reason is None
    d = rise.to_dict()
    assert d["ci"] is None and d["ratio"] == pytest.approx(6.0)


def test_rise_over_rounds_with_rounds_on_both_sides_has_a_ci():
    recs = experiment()
    rise = rise_over_rounds(recs, "vanilla", "priority")
    assert rise.unloaded_values == (101.0, 102.0, 103.0, 104.0)
    loaded, unloaded = [1000.0, 1100.0, 1050.0], [101.0, 102.0, 103.0, 104.0]
    ratio, low, high = welch_by_hand(loaded, unloaded)
    assert rise.ratio == pytest.approx(ratio) and (rise.ci.low, rise.ci.high) == pytest.approx((low, high), rel=1e-9)
    none = rise_over_rounds(recs, "prism-off", "priority")  # no unloaded run of prism-off
    assert math.isnan(none.ratio) and "0 unloaded" in none.reason


# --- output -----------------------------------------------------------------------------------


def test_verdict_rows():
    vs = verdicts_from_records(experiment())
    rows = verdict_rows(vs)
    assert rows[0] == ["flow", "a", "b", "a p99 ms by round", "b p99 ms by round", "ratio a/b", "95% CI", "verdict",
                       "valid rounds"]
    assert rows[1][:5] == ["priority", "prism-sync", "vanilla", "0.20 0.19 0.20", "1.00 1.10 1.05"]
    assert rows[1][7:] == ["faster", "3/3"] and rows[1][6].startswith("[0.1")
    assert rows[3][0] == "priority vs bulk"
    short = verdict_rows([over_rounds("f", "a", [1.0], "b", [2.0, 3.0])])[1]
    assert short[6] == "-" and short[7].startswith("inconclusive (a has 1 valid round")


def test_verdict_json_round_trips(tmp_path):
    recs = experiment()
    vs = verdicts_from_records(recs) + [over_rounds("f", "a", [], "b", [2.0, 3.0])]
    rises = [rise_over_rounds(recs, "vanilla", "priority"), rise_over_rounds(recs, "prism-off", "priority")]
    path = write_verdict_json(tmp_path / "out" / "verdict.json", host={"cpus": 2, "accel": "tcg"}, rounds=4,
                              verdicts=vs, rises=rises, calibration=None, excluded=excluded_runs(recs))
    assert [p.name for p in path.parent.iterdir()] == ["verdict.json"]  # no temp file left
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA == "prism-testbed/verdict/1"
    assert doc["rounds"] == 4 and doc["host"] == {"cpus": 2, "accel": "tcg"} and doc["calibration"] is None
    first = doc["verdicts"][0]
    assert (first["flow"], first["a"], first["b"], first["percentile"], first["verdict"]) == (
        "priority", "prism-sync", "vanilla", 99, "faster")
    assert first["valid_rounds"] == [3, 3] and first["ci"] == pytest.approx([vs[0].ci.low, vs[0].ci.high])
    assert doc["verdicts"][-1]["ratio"] is None and doc["verdicts"][-1]["ci"] == [None, None]
    assert doc["rises"][1]["ratio"] is None
    assert doc["excluded"][0] == {"label": "prism-sync", "round": 2, "attempt": None, "mix": "overlay-flood",
                                  "loaded": True, "flow": None, "why": "invalid: no receiver saturated"}
    back = [RoundVerdict.from_dict(d) for d in doc["verdicts"]]
    assert back[:-1] == vs[:-1]
    assert [b.to_dict() for b in back] == doc["verdicts"]


def test_a_run_whose_prober_dropped_replies_does_not_count():
    """Its losses would be the host's, counted as the guest's; loaded or not."""
    dropped = dataclasses.replace(run("vanilla", 2, priority=5.0), prober={"foreign": 0, "receive_drops": 17})
    recs = [run("vanilla", 1), dropped, run("vanilla", 3), dataclasses.replace(run("vanilla", 4), prober={"receive_drops": 0})]
    assert verdicts_from_records(recs)[0].valid_rounds == (3, 3)
    assert [(e["round"], e["why"]) for e in excluded_runs(recs)] == [
        (2, "the host prober's receive socket dropped 17 frames (host too busy to read them)")]
