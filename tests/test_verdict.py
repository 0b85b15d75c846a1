"""testbed.analysis.verdict: percentiles, bootstrap CIs, comparisons, integrity counts and the assertion helpers.

Every random sample comes from a seeded random.Random, so every outcome here
is fixed; the statistical checks use margins wide enough that they are not
a coin toss for the seeds chosen.
"""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from testbed.analysis import latency
from testbed.analysis.verdict import (
    ABOVE,
    BELOW,
    OVERLAPPING,
    FlowSamples,
    Integrity,
    Interval,
    ProbeRecord,
    RunResults,
    assert_intact,
    assert_latency_order,
    bootstrap_ci,
    compare,
    percentile,
    summarize,
)
from testbed.core.errors import VerdictError


def expo(mean: float, n: int, seed: int, flow: str = "f") -> FlowSamples:
    rng = random.Random(seed)
    return FlowSamples(flow, tuple(rng.expovariate(1 / mean) for _ in range(n)))


def rec(seq: int, rtt_us: float | None = 100.0, flow: str = "priority", *, crc: bool = True, length: bool = True,
        dup: int = 0, arrive_ns: int | None = None) -> ProbeRecord:
    """A probe sent at seq ms; it arrives rtt_us later, or at arrive_ns, or (rtt_us None) never."""
    sent = seq * 1_000_000
    received = arrive_ns if arrive_ns is not None else None if rtt_us is None else sent + int(rtt_us * 1000)
    return ProbeRecord(flow, seq, sent, received, length_ok=length, crc_ok=crc, duplicate_count=dup)


def arrivals(order: list[int], flow: str = "priority") -> list[ProbeRecord]:
    """Probes 0..n-1 sent first, then arriving in the given sequence order."""
    at = {seq: 1_000_000_000 + i * 1000 for i, seq in enumerate(order)}
    return [rec(seq, flow=flow, arrive_ns=at[seq]) for seq in sorted(order)]


# --- percentiles ------------------------------------------------------------------------------


@pytest.mark.parametrize("p, expected", [
    (0, 15), (25, 20), (40, 29), (50, 35), (90, 46), (100, 50),
])
def test_percentile_interpolates_linearly_between_order_statistics(p, expected):
    # sorted 15 20 35 40 50, h = 4p/100: p40 -> h 1.6 -> 20 + 0.6*15; p90 -> h 3.6 -> 40 + 0.6*10
    assert percentile([40, 15, 50, 35, 20], p) == pytest.approx(expected)


def test_percentile_of_small_samples():
    assert percentile([7], 0) == percentile([7], 99.9) == 7
    assert percentile([1, 3], 50) == 2
    assert percentile([1, 3], 99) == pytest.approx(2.98)
    assert percentile(range(1001), 99.9) == 999  # h = 999 exactly, not 999 + rounding noise


@pytest.mark.parametrize("p", [-1, 100.5, math.nan])
def test_percentile_outside_0_to_100_is_an_error(p):
    with pytest.raises(VerdictError, match="outside 0..100"):
        percentile([1, 2, 3], p)


def test_summary_of_a_small_sample():
    s = summarize(FlowSamples("f", tuple(range(10, 0, -1))), resamples=200)
    assert (s.flow, s.count, s.mean, s.max) == ("f", 10, 5.5, 10)
    assert (s.p50, s.p90, s.p99, s.p999) == pytest.approx((5.5, 9.1, 9.91, 9.991))
    assert s.p50 in s.p50_ci and s.p50_ci.level == 0.95


# --- the bootstrap --------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0, 25, 50, 90, 100])
def test_resampled_percentile_has_the_exact_bootstrap_distribution(p):
    """The O(1) order-statistic draw against all 4**4 resamples of a 4-value sample, enumerated."""
    data = (1.0, 2.0, 4.0, 8.0)
    exact: dict[float, float] = {}
    for resample in itertools.product(data, repeat=4):
        value = round(percentile(resample, p), 9)
        exact[value] = exact.get(value, 0) + 1 / 4**4
    rng, draws, n = random.Random(7), {}, 8000
    lo, frac = latency._rank(4, p)
    for _ in range(n):
        value = round(latency._resample_percentile(data, lo, frac, rng), 9)
        draws[value] = draws.get(value, 0) + 1 / n
    assert set(draws) <= set(exact)
    for value, prob in exact.items():
        assert draws.get(value, 0) == pytest.approx(prob, abs=0.025), value  # 4.5 standard errors at worst


def test_ci_contains_the_true_percentile_of_a_large_sample():
    s = summarize(expo(100, 10_000, seed=1))
    assert 100 * math.log(2) in s.p50_ci      # exponential: p = -mean * ln(1 - p/100)
    assert 100 * math.log(100) in s.p99_ci
    assert s.p50_ci.low < s.p50 < s.p50_ci.high and s.p99_ci.low < s.p99 < s.p99_ci.high


def test_ci_narrows_as_the_sample_grows():
    widths = [bootstrap_ci(expo(100, n, seed=n), 50, resamples=1000).width for n in (100, 1000, 10_000)]
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] > 5 * widths[2]  # about sqrt(100) times narrower


def test_ci_covers_the_true_median_about_as_often_as_its_level():
    true_median = 100 * math.log(2)
    hits = sum(true_median in bootstrap_ci(expo(100, 200, seed=1000 + i), 50, resamples=400, seed=i) for i in range(100))
    assert 85 <= hits <= 100


def test_bootstrap_is_reproducible_by_seed():
    s = expo(100, 500, seed=3)
    assert summarize(s, seed=11) == summarize(s, seed=11)
    assert bootstrap_ci(s, 50, seed=11) != bootstrap_ci(s, 50, seed=12)
    # p99 of 500 has few bootstrap values (x[494] and up), so its CI need not move with the seed
    assert bootstrap_ci(s, 99, seed=11).high <= s.rtts_us[-1]


@pytest.mark.parametrize("level, resamples, message", [
    (95, 2000, "between 0 and 1"), (0.95, 0, "at least 1"),
])
def test_bad_bootstrap_parameters_are_errors(level, resamples, message):
    with pytest.raises(VerdictError, match=message):
        summarize(expo(1, 10, seed=1), level=level, resamples=resamples)


# --- comparisons ------------------------------------------------------------------------------


def test_compare_separated_distributions():
    fast, slow = expo(100, 2000, seed=1, flow="priority"), expo(1000, 2000, seed=2, flow="bulk")
    c = compare(fast, slow, 99)
    assert c.order == BELOW
    assert (c.a, c.b, c.percentile) == ("priority", "bulk", 99)
    assert c.ratio == pytest.approx(0.1, rel=0.25) and c.ratio in c.ratio_ci and c.ratio_ci.high < 1
    assert c.a_value in c.a_ci and c.b_value in c.b_ci
    assert compare(slow, fast, 50).order == ABOVE


@pytest.mark.parametrize("p", [50, 90, 99])
def test_compare_same_distribution_overlaps(p):
    assert compare(expo(100, 5000, seed=21), expo(100, 5000, seed=22), p).order == OVERLAPPING


def test_compare_a_zero_percentile_denominator_is_an_error():
    with pytest.raises(VerdictError, match="'idle': p50 is 0 us"):
        compare(FlowSamples("busy", (1.0, 2.0)), FlowSamples("idle", (0.0, 0.0, 1.0)), 50)


def test_compare_single_samples():
    c = compare(FlowSamples("a", (10.0,)), FlowSamples("b", (20.0,)), 99)
    assert c.ratio == 0.5 and c.ratio_ci == Interval(0.5, 0.5, 0.95)


# --- integrity ------------------------------------------------------------------------------


def test_intact_flow():
    results = RunResults.from_records([rec(i) for i in range(5)])
    found = results.integrity("priority")
    assert found == Integrity("priority", sent=5, received=5, lost=0, duplicated=0, reordered=0, corrupted=0)
    assert found.intact


def test_lost_duplicated_and_corrupted_counts():
    records = [rec(0), rec(1, None), rec(2, dup=3), rec(3, crc=False), rec(4, length=False),
               rec(5, crc=False, length=False), rec(6, None, crc=False), rec(7, dup=1)]
    found = RunResults.from_records(records).integrity("priority")
    # 3 and 4 alone are corrupted by CRC and by length; 5 by both counts once; lost 6 is only lost
    assert (found.sent, found.received, found.lost, found.duplicated, found.corrupted) == (8, 6, 2, 2, 3)
    assert found.reordered == 0 and not found.intact


@pytest.mark.parametrize("order, reordered", [
    ([0, 1, 2, 3], 0), ([0, 2, 1, 3], 1), ([2, 0, 1], 2), ([3, 0, 1, 2, 4], 3), ([1, 0, 3, 2], 2), ([0, 4, 1, 2, 3], 3),
])
def test_reordered_is_below_the_highest_sequence_received_before(order, reordered):
    found = RunResults.from_records(arrivals(order)).integrity("priority")
    assert found.reordered == reordered and found.received == len(order)


def test_reordering_ignores_lost_probes_and_breaks_ties_by_record_order():
    records = [rec(0, arrive_ns=10**9), rec(1, None), rec(2, arrive_ns=10**9 + 1)]
    assert RunResults.from_records(records).integrity("priority").reordered == 0  # a gap is loss, not reordering
    tied = [rec(0, arrive_ns=10**9), rec(1, arrive_ns=10**9)]
    assert RunResults.from_records(tied).integrity("priority").reordered == 0


def test_all_lost_flow():
    results = RunResults.from_records([rec(i, None, flow="bulk") for i in range(3)])
    found = results.integrity("bulk")
    assert (found.sent, found.received, found.lost) == (3, 0, 3) and not found.intact
    assert results.samples("bulk").count == 0
    with pytest.raises(VerdictError, match=r"^flow 'bulk': no latency samples \(3 probes sent, none received intact\)$"):
        results.summary("bulk")


def test_samples_are_the_rtts_of_intact_received_probes():
    records = [rec(0, 250), rec(1, None), rec(2, 100, dup=2), rec(3, 999, crc=False), rec(4, 50)]
    samples = RunResults.from_records(records).samples("priority")
    assert samples.rtts_us == (50.0, 100.0, 250.0)  # microseconds, sorted; lost and corrupted left out


@pytest.mark.parametrize("records, message", [
    ([rec(1), rec(1)], "seq 1: recorded twice"),
    ([ProbeRecord("priority", 4, 2000, 1000, True, True)], "seq 4: received_ns 1000 is before sent_ns 2000"),
    ([rec(5, None, dup=1)], "seq 5: duplicate_count 1 is impossible"),
    ([rec(6, dup=-1)], "seq 6: duplicate_count -1 is impossible"),
])
def test_inconsistent_records_are_errors(records, message):
    with pytest.raises(VerdictError, match=f"^flow 'priority' {message}"):
        RunResults.from_records(records)


def test_records_filed_under_another_flow_or_a_missing_flow_are_errors():
    with pytest.raises(VerdictError, match="record of flow 'bulk' filed under 'priority'"):
        RunResults({"priority": (rec(0, flow="bulk"),)})
    with pytest.raises(VerdictError, match=r"no flow 'prio' in the results \(has priority\)"):
        RunResults.from_records([rec(0)]).integrity("prio")


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_samples_must_be_finite_and_not_negative(bad):
    with pytest.raises(VerdictError, match="flow 'f': RTT"):
        FlowSamples("f", (1.0, bad))


# --- empty and single samples ---------------------------------------------------------------


def test_empty_sample_names_the_flow():
    empty = FlowSamples("priority", ())
    with pytest.raises(VerdictError, match="^flow 'priority': no latency samples$"):
        summarize(empty)
    with pytest.raises(VerdictError, match="flow 'priority': no latency samples"):
        compare(empty, FlowSamples("bulk", (1.0,)), 99)
    with pytest.raises(VerdictError, match="flow 'priority': no latency samples"):
        assert_latency_order({"priority": empty, "bulk": FlowSamples("bulk", (1.0,))})


def test_single_sample_summary():
    s = summarize(FlowSamples("f", (42.0,)))
    assert (s.count, s.mean, s.p50, s.p99, s.p999, s.max) == (1, 42.0, 42.0, 42.0, 42.0, 42.0)
    assert s.p50_ci == s.p99_ci == Interval(42.0, 42.0, 0.95)


# --- assertion helpers ----------------------------------------------------------------------


def two_flows(priority_mean: float, bulk_mean: float, n: int = 1000) -> RunResults:
    rng = random.Random(5)
    return RunResults.from_records(
        [rec(i, rng.expovariate(1 / priority_mean), flow="priority") for i in range(n)]
        + [rec(i, rng.expovariate(1 / bulk_mean), flow="bulk") for i in range(n)])


def test_assert_latency_order_passes_and_returns_the_comparison():
    c = assert_latency_order(two_flows(100, 1000), faster="priority", slower="bulk", percentile=99)
    assert c.order == BELOW


def test_assert_latency_order_failure_shows_the_numbers_as_a_table():
    results = two_flows(100, 100)
    c = compare(results.samples("priority"), results.samples("bulk"), 99)
    with pytest.raises(AssertionError) as failure:
        assert_latency_order(results)
    lines = str(failure.value).splitlines()
    assert lines[0] == "priority's p99 is not below bulk's (overlapping):"
    assert lines[1].split() == ["flow", "p99", "(us)", "95%", "CI", "a", "against", "b"]
    assert lines[2].split()[:2] == ["priority", f"{c.a_value:.1f}"] and c.a_ci.text() in lines[2]
    assert lines[3].split()[:2] == ["bulk", f"{c.b_value:.1f}"] and c.b_ci.text() in lines[3]
    assert lines[4].split()[:3] == ["ratio", "priority/bulk", f"{c.ratio:.3f}"]
    assert c.ratio_ci.text(3) in lines[4] and lines[4].endswith("overlapping")
    value_column = lines[1].index("p99")
    assert all(line[value_column - 2:value_column] == "  " and line[value_column] != " " for line in lines[2:])


def test_assert_latency_order_reversed_says_above():
    with pytest.raises(AssertionError, match=r"bulk's p50 is not below priority's \(above\)"):
        assert_latency_order(two_flows(100, 1000), faster="bulk", slower="priority", percentile=50)


def test_assert_latency_order_across_runs_uses_the_labels():
    prism, vanilla = two_flows(100, 1000), two_flows(300, 1000)
    runs = {"prism": prism.samples("priority"), "vanilla": vanilla.samples("priority")}
    c = assert_latency_order(runs, faster="prism", slower="vanilla", percentile=50)
    assert (c.a, c.b, c.order) == ("prism", "vanilla", BELOW)


def test_assert_intact_passes_and_fails_with_the_counts_as_a_table():
    assert assert_intact(RunResults.from_records(arrivals([0, 1, 2]))).intact
    results = RunResults.from_records([rec(0), rec(1, None), rec(2, crc=False), rec(3, dup=1)])
    with pytest.raises(AssertionError) as failure:
        assert_intact(results, flow="priority")
    lines = str(failure.value).splitlines()
    assert lines[0] == "flow 'priority' did not arrive intact:"
    assert lines[1].split() == ["flow", "sent", "received", "lost", "duplicated", "reordered", "corrupted"]
    assert lines[2].split() == ["priority", "4", "3", "1", "1", "0", "1"]
    assert lines[1].index("lost") == lines[2].index("1", len("priority  4  3"))  # columns line up


# --- JSON -----------------------------------------------------------------------------------------


def test_summary_comparison_and_integrity_as_json():
    s = summarize(expo(100, 300, seed=4), resamples=100, seed=9)
    d = json.loads(s.to_json())
    assert d["flow"] == "f" and d["count"] == 300 and d["p999"] == s.p999 and d["seed"] == 9
    assert d["p99_ci"] == {"low": s.p99_ci.low, "high": s.p99_ci.high, "level": 0.95}
    c = json.loads(compare(expo(1, 50, seed=1), expo(2, 50, seed=2), 50, resamples=100).to_json())
    assert set(c) >= {"a", "b", "percentile", "a_value", "b_value", "a_ci", "b_ci", "ratio", "ratio_ci", "order"}
    i = json.loads(RunResults.from_records([rec(0), rec(1, None)]).integrity("priority").to_json())
    assert i == {"flow": "priority", "sent": 2, "received": 1, "lost": 1, "duplicated": 0, "reordered": 0,
                 "corrupted": 0, "intact": False}


def test_an_unbounded_ci_end_is_null_in_json():
    assert json.loads(Interval(0.5, math.inf, 0.95).to_json()) == {"low": 0.5, "high": None, "level": 0.95}
