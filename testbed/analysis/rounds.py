"""Verdicts over rounds: one percentile per run, compared across N runs of each condition.

Under TCG one run's p99 moves from run to run by more than the effect the
experiment looks for, so a bootstrap inside one run (testbed.analysis.latency) is
too confident. The experiment runs every condition N times, interleaved on
each boot, and here the per-round percentiles are the samples.

The statistics are on log scale, because latency effects are ratios: the
point estimate is the ratio of geometric means, exp(mean(log a) -
mean(log b)), and its interval is a t interval of that difference (Welch
for runs on different boots, one-sample on the per-round log ratios for two
flows of the same runs), taken back with exp. A verdict then needs both the
interval and the size (PRACTICAL_MINIMUM) to agree, as ktstr gates results.

Everything is plain data in and out; write_verdict_json is the only I/O.
"""

from __future__ import annotations

import json
import math
import numbers
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from ..core.cache import atomic_write_text
from ..core.errors import VerdictError
from .counted import (
    flows_of_class,
    loaded_mix,
    loaded_rounds,
    round_of,
    run_problem,
    value_of,
)
from .latency import DEFAULT_LEVEL, FASTER, SLOWER, Interval
from .records import JsonData, plain
from .run_record import RunRecord

SCHEMA = "prism-testbed/verdict/1"
BASELINE = "vanilla"
INCONCLUSIVE = "inconclusive"
MIN_ROUNDS = 2  # a t interval needs a variance, so two rounds on each side at least

# A change smaller than a tenth of the p99 is not reported as one, however
# narrow its interval: host noise moves an emulated guest's p99 by about that
# much between runs of one condition, and no user would act on a smaller gain.
PRACTICAL_MINIMUM = 0.10

# Logs that differ by less than this (relative) are equal: rounds that repeat
# one value give zero variance, which scipy would turn into NaN or a warning.
_TIE = 1e-12


@dataclass(frozen=True)
class RoundVerdict(JsonData):
    """Condition a against condition b at one percentile, over rounds; times are microseconds.

    b_flow is set when b is another flow of the same runs (priority against
    bulk); a and b are then the same label and the rounds are paired.
    """

    flow: str
    a: str
    b: str
    percentile: float
    a_values: tuple[float, ...]
    b_values: tuple[float, ...]
    paired: bool
    ratio: float  # geometric mean of a over that of b; NaN when a side has no value
    ci: Interval  # of the ratio; NaN ends when there are too few rounds
    verdict: str  # FASTER, SLOWER or INCONCLUSIVE, for a against b
    valid_rounds: tuple[int, int]
    practical_minimum: float
    min_max_disjoint: bool  # every round of one side below every round of the other
    reason: str | None = None  # why INCONCLUSIVE, when it is for lack of rounds
    b_flow: str | None = None

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["ci"] = [plain(self.ci.low), plain(self.ci.high)]
        out["level"] = self.ci.level
        out["a_values"], out["b_values"] = list(self.a_values), list(self.b_values)
        out["valid_rounds"] = list(self.valid_rounds)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> RoundVerdict:
        """The verdict as to_dict wrote it (a verdict.json entry read back)."""
        low, high = (math.nan if x is None else x for x in d["ci"])
        return cls(flow=d["flow"], a=d["a"], b=d["b"], percentile=d["percentile"], a_values=tuple(d["a_values"]),
                   b_values=tuple(d["b_values"]), paired=d["paired"],
                   ratio=math.nan if d["ratio"] is None else d["ratio"], ci=Interval(low, high, d["level"]),
                   verdict=d["verdict"], valid_rounds=tuple(d["valid_rounds"]),
                   practical_minimum=d["practical_minimum"], min_max_disjoint=d["min_max_disjoint"],
                   reason=d.get("reason"), b_flow=d.get("b_flow"))


def over_rounds(flow: str, a: str, a_values: Sequence[float], b: str, b_values: Sequence[float], *,
                percentile: float = 99, paired: bool = False, level: float = DEFAULT_LEVEL,
                practical: float = PRACTICAL_MINIMUM, b_flow: str | None = None) -> RoundVerdict:
    """Is a's percentile lower than b's over rounds? Values are per-round percentiles, valid rounds only.

    paired: a_values[i] and b_values[i] come from the same run (two flows of
    it), so run-to-run spread cancels in their ratio. "faster" needs the CI of
    the ratio below 1 and the ratio at most 1 - practical; "slower" the CI above
    1 and the ratio at least 1 / (1 - practical); anything else is inconclusive.
    """
    if not 0 < level < 1:
        raise VerdictError(f"confidence level {level} must be between 0 and 1 (0.95 for 95 %)")
    if not 0 <= practical < 1:
        raise VerdictError(f"practical minimum {practical} must be at least 0 and below 1 (0.10 for a tenth)")
    la = _logs(flow, a, a_values)
    lb = _logs(b_flow or flow, b, b_values)
    if paired and len(la) != len(lb):
        raise VerdictError(f"flow {flow!r}: paired rounds need as many values of {a!r} ({len(la)}) "
                           f"as of {b!r} ({len(lb)})")
    ratio = math.exp(statistics.fmean(la) - statistics.fmean(lb)) if la and lb else math.nan
    disjoint = bool(la and lb) and (max(la) < min(lb) or max(lb) < min(la))
    common = dict(flow=flow, a=a, b=b, percentile=percentile, a_values=tuple(float(v) for v in a_values),
                  b_values=tuple(float(v) for v in b_values), paired=paired, ratio=ratio,
                  valid_rounds=(len(la), len(lb)), practical_minimum=practical, min_max_disjoint=disjoint, b_flow=b_flow)
    if len(la) < MIN_ROUNDS or len(lb) < MIN_ROUNDS:
        if paired:
            why = f"{len(la)} round{'s' * (len(la) != 1)} with both {flow} and {b_flow or flow} valid"
        else:
            why = f"{a} has {_rounds(len(la))}, {b} {_rounds(len(lb))}"
        return RoundVerdict(**common, ci=Interval(math.nan, math.nan, level), verdict=INCONCLUSIVE,
                            reason=f"{why}: a verdict over rounds needs at least {MIN_ROUNDS}"
                            + (" such rounds" if paired else " on each side"))
    low, high = _paired_interval(la, lb, level) if paired else _welch_interval(la, lb, level)
    ci = Interval(math.exp(low), math.exp(high), level)
    if ci.high < 1 and ratio <= 1 - practical:
        verdict = FASTER
    elif ci.low > 1 and ratio >= 1 / (1 - practical):
        verdict = SLOWER
    else:
        verdict = INCONCLUSIVE
    return RoundVerdict(**common, ci=ci, verdict=verdict)


def _rounds(n: int) -> str:
    return f"{n} valid round{'s' * (n != 1)}"


def _logs(flow: str, label: str, values: Sequence[float]) -> list[float]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not (isinstance(v, numbers.Real) and math.isfinite(v) and v > 0):
            raise VerdictError(f"flow {flow!r}, condition {label!r}: value {v!r} (valid round {i + 1}) "
                               "is not a finite latency > 0 us")
        out.append(math.log(v))
    return out


def _constant(xs: Sequence[float]) -> bool:
    return max(xs) - min(xs) <= _TIE * max(1.0, max(abs(x) for x in xs))


def _one_sample(xs: Sequence[float], level: float) -> tuple[float, float]:
    """t interval of the mean of xs; the point itself when they do not vary."""
    if _constant(xs):
        m = statistics.fmean(xs)
        return m, m
    ci = stats.ttest_1samp(xs, 0.0).confidence_interval(level)
    return float(ci.low), float(ci.high)


def _paired_interval(la: Sequence[float], lb: Sequence[float], level: float) -> tuple[float, float]:
    return _one_sample([x - y for x, y in zip(la, lb, strict=True)], level)


def _welch_interval(la: Sequence[float], lb: Sequence[float], level: float) -> tuple[float, float]:
    """Welch's t interval of mean(la) - mean(lb).

    A side that does not vary adds nothing to the standard error, and Welch's
    degrees of freedom are then the other side's n - 1: exactly the one-sample
    interval of the other side against its constant, which is what is computed
    (scipy would warn about catastrophic cancellation and may return NaN).
    """
    ca, cb = _constant(la), _constant(lb)
    if ca or cb:
        if ca and cb:
            d = statistics.fmean(la) - statistics.fmean(lb)
            return d, d
        if ca:
            ma = statistics.fmean(la)
            return _one_sample([ma - y for y in lb], level)
        mb = statistics.fmean(lb)
        return _one_sample([x - mb for x in la], level)
    ci = stats.ttest_ind(la, lb, equal_var=False).confidence_interval(level)
    return float(ci.low), float(ci.high)


def verdicts_from_records(records: Sequence[RunRecord], *, baseline: str = BASELINE, percentile: float = 99,
                          level: float = DEFAULT_LEVEL, practical: float = PRACTICAL_MINIMUM,
                          mix: str | None = None) -> list[RoundVerdict]:
    """Every condition against the baseline per priority flow, then priority against bulk per condition.

    Only loaded runs whose regime is valid count (excluded_runs lists the
    rest). Conditions come baseline first, then in the order the records
    first name them; flows in the order the records first name them. Label
    against baseline is unpaired (different boots); priority against the
    first bulk-class flow is paired by round (the same runs). records may
    hold one loaded mix, or pick one with mix=.
    """
    mix = loaded_mix(records, mix)
    by_label = loaded_rounds(records, mix)
    labels = sorted(by_label, key=lambda label: label != baseline)  # stable: baseline first, then record order
    # flows as the mix names them, invalid runs included: a condition whose every round failed still gets a row
    seen = [r for r in records if r.mix["loaded"] and r.mix["name"] == mix]
    priority = flows_of_class(seen, "priority")
    out = []
    for flow in priority:
        base = [v for r in by_label.get(baseline, {}).values() if (v := value_of(r, flow, percentile)) is not None]
        for label in labels:
            if label == baseline:
                continue
            vals = [v for r in by_label[label].values() if (v := value_of(r, flow, percentile)) is not None]
            out.append(over_rounds(flow, label, vals, baseline, base, percentile=percentile, level=level,
                                   practical=practical))
    for label in labels:
        runs = list(by_label[label].values())
        mine = [r for r in seen if r.label == label]
        bulk = next(iter(flows_of_class(mine, "bulk")), None)
        if bulk is None:
            continue  # a mix without a bulk-class probe has no such comparison
        for flow in flows_of_class(mine, "priority"):
            pairs = [(x, y) for r in runs
                     if (x := value_of(r, flow, percentile)) is not None and (y := value_of(r, bulk, percentile)) is not None]
            out.append(over_rounds(flow, label, [x for x, _ in pairs], label, [y for _, y in pairs], paired=True,
                                   percentile=percentile, level=level, practical=practical, b_flow=bulk))
    return out


@dataclass(frozen=True)
class Rise(JsonData):
    """How much load raises one condition's percentile: loaded rounds against unloaded runs, microseconds.

    ratio is the geometric mean of the loaded values over that of the
    unloaded ones. The unloaded twin may run once per condition, so ci is
    only given (Welch, as in over_rounds) when both sides have two values.
    """

    label: str
    flow: str
    percentile: float
    loaded_values: tuple[float, ...]
    unloaded_values: tuple[float, ...]
    ratio: float
    ci: Interval | None
    reason: str | None = None  # why there is no ratio

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["ci"] = None if self.ci is None else [plain(self.ci.low), plain(self.ci.high)]
        out["level"] = None if self.ci is None else self.ci.level
        out["loaded_values"], out["unloaded_values"] = list(self.loaded_values), list(self.unloaded_values)
        return out


def rise_over_rounds(records: Sequence[RunRecord], label: str, flow: str, *, percentile: float = 99,
                     level: float = DEFAULT_LEVEL, mix: str | None = None) -> Rise:
    """The loaded/unloaded percentile of one condition and flow (unloaded runs: the mix's -unloaded twin)."""
    mix_name = loaded_mix(records, mix)
    runs = loaded_rounds(records, mix_name).get(label, {})
    loaded = [v for r in runs.values() if (v := value_of(r, flow, percentile)) is not None]
    twins = sorted((r for r in records if not r.mix["loaded"] and r.label == label
                    and r.mix["name"] == f"{mix_name}-unloaded" and run_problem(r) is None), key=round_of)
    unloaded = [v for r in twins if (v := value_of(r, flow, percentile)) is not None]
    ll, lu = _logs(flow, f"{label} loaded", loaded), _logs(flow, f"{label} unloaded", unloaded)
    if not ll or not lu:
        return Rise(label, flow, percentile, tuple(loaded), tuple(unloaded), math.nan, None,
                    reason=f"{label}: {_rounds(len(ll))} loaded, {len(lu)} unloaded run(s) with {flow} values")
    ratio = math.exp(statistics.fmean(ll) - statistics.fmean(lu))
    ci = None
    if len(ll) >= MIN_ROUNDS and len(lu) >= MIN_ROUNDS:
        low, high = _welch_interval(ll, lu, level)
        ci = Interval(math.exp(low), math.exp(high), level)
    return Rise(label, flow, percentile, tuple(loaded), tuple(unloaded), ratio, ci)


# --- output -----------------------------------------------------------------------------------


def _ms_list(values: Sequence[float]) -> str:
    return " ".join(f"{v / 1000:.2f}" for v in values) or "-"


def verdict_rows(verdicts: Sequence[RoundVerdict]) -> list[list[str]]:
    """A table (header first) for rich or markdown: one row per verdict, per-round values in ms."""
    p = f"p{verdicts[0].percentile:g}" if verdicts else "p99"
    level = f"{verdicts[0].ci.level * 100:g}% CI" if verdicts else "95% CI"
    rows = [["flow", "a", "b", f"a {p} ms by round", f"b {p} ms by round", "ratio a/b", level, "verdict", "valid rounds"]]
    for v in verdicts:
        finite = math.isfinite(v.ci.low) and math.isfinite(v.ci.high)
        rows.append([v.flow if v.b_flow is None else f"{v.flow} vs {v.b_flow}", v.a, v.b, _ms_list(v.a_values),
                     _ms_list(v.b_values), f"{v.ratio:.3f}" if math.isfinite(v.ratio) else "-",
                     v.ci.text(3) if finite else "-", v.verdict + (f" ({v.reason})" if v.reason else ""),
                     f"{v.valid_rounds[0]}/{v.valid_rounds[1]}"])
    return rows


def write_verdict_json(path: Path, *, host: Mapping, rounds: int, verdicts: Sequence[RoundVerdict],
                       rises: Sequence[Rise], calibration: Mapping | None, excluded: Sequence[Mapping]) -> Path:
    """verdict.json (SCHEMA), written whole or not at all; excluded lists every run left out and why."""
    doc = {"schema": SCHEMA, "host": dict(host), "rounds": rounds, "verdicts": [v.to_dict() for v in verdicts],
           "rises": [r.to_dict() for r in rises], "calibration": None if calibration is None else dict(calibration),
           "excluded": [dict(e) for e in excluded]}
    path = Path(path)
    atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return path
