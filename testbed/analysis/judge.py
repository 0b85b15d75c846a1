"""One verdict: condition a against condition b at one percentile, over independent units.

The unit is what repeats independently. Two kernels are two binaries on
different boots, and under TCG one boot differs from the next by as much as
one run from the next (a boot's p99 level, its interrupt placement, the
tap's queue hash): the unit is the *boot*, each boot summarised by the
geometric mean of its valid rounds, and the interval is Welch's over boots.
Two settings of one kernel, or two flows of one run, are measured on the
same boot, round by round: the boot cancels in their per-round ratio, the
unit is the *round*, and the interval is the one-sample t interval of the
paired log ratios.

Statistics are on log scale, because latency effects are ratios: the point
estimate is the ratio of geometric means and its interval is taken back
with exp. One gate, on the interval: "faster" needs the whole interval
below 1 - practical, "slower" the whole interval above 1 / (1 - practical);
anything else is inconclusive, and says why.

A percentile taken over the probes sent can be censored (testbed.analysis.tail):
only a lower bound. A lower bound on b's side bounds the ratio a/b from
above, which is enough to call a faster and never enough to call it
slower; the mirror holds for a. A verdict word that would need the value a
censored side does not have is withheld.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

from ..core.errors import VerdictError
from .latency import DEFAULT_LEVEL, FASTER, SLOWER, Interval
from .records import JsonData, plain
from .tail import Tail

INCONCLUSIVE = "inconclusive"
BOOT, ROUND = "boot", "round"
MIN_UNITS = 2  # a t interval needs a variance, so two units on each side at least

# A change smaller than a tenth of the p99 is not reported as one: host noise moves an emulated
# guest's p99 by about that much between boots of one kernel, and no user would act on less.
# The gate is on the interval: "faster" needs all of it below 1 - PRACTICAL_MINIMUM.
PRACTICAL_MINIMUM = 0.10

# Logs that differ by less than this (relative) are equal: units that repeat one value give zero
# variance, which scipy would turn into NaN or a warning.
_TIE = 1e-12

UnitValues = Sequence[Sequence["Tail | float"]]


def gate(ci: Interval, practical: float = PRACTICAL_MINIMUM) -> str:
    """The verdict word an interval of a ratio a/b allows."""
    if ci.high < 1 - practical:
        return FASTER
    if ci.low > 1 / (1 - practical):
        return SLOWER
    return INCONCLUSIVE


@dataclass(frozen=True)
class Verdict(JsonData):
    """a against b at one percentile; values are per unit, microseconds.

    b_flow is set when b is another flow of the same runs (priority against
    bulk); a and b are then the same condition and the rounds are paired.
    loss is (lost, sent) of a and of b over the runs behind the units.
    """

    flow: str
    a: str
    b: str
    percentile: float
    unit: str  # BOOT or ROUND
    a_values: tuple[float, ...]  # per unit; a censored one is a lower bound
    b_values: tuple[float, ...]
    a_censored: tuple[bool, ...]
    b_censored: tuple[bool, ...]
    paired: bool
    ratio: float  # geometric mean of a over that of b; NaN when a side has no unit
    ci: Interval  # of the ratio; NaN ends when there are too few units
    verdict: str  # FASTER, SLOWER or INCONCLUSIVE, for a against b
    units: tuple[int, int]
    runs: tuple[int, int]  # the valid runs behind the units of each side
    loss: tuple[tuple[int, int], tuple[int, int]]
    practical_minimum: float
    min_max_disjoint: bool  # every unit of one side below every unit of the other
    reason: str | None = None  # why INCONCLUSIVE
    b_flow: str | None = None

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["ci"] = [plain(self.ci.low), plain(self.ci.high)]
        out["level"] = self.ci.level
        for key in ("a_values", "b_values", "a_censored", "b_censored", "units", "runs"):
            out[key] = list(getattr(self, key))
        out["loss"] = {"a": {"lost": self.loss[0][0], "sent": self.loss[0][1]},
                       "b": {"lost": self.loss[1][0], "sent": self.loss[1][1]}}
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> Verdict:
        """The verdict as to_dict wrote it (a verdict.json entry read back)."""
        low, high = (math.nan if x is None else x for x in d["ci"])
        loss = d["loss"]
        return cls(flow=d["flow"], a=d["a"], b=d["b"], percentile=d["percentile"], unit=d["unit"],
                   a_values=tuple(d["a_values"]), b_values=tuple(d["b_values"]),
                   a_censored=tuple(d["a_censored"]), b_censored=tuple(d["b_censored"]), paired=d["paired"],
                   ratio=math.nan if d["ratio"] is None else d["ratio"], ci=Interval(low, high, d["level"]),
                   verdict=d["verdict"], units=tuple(d["units"]), runs=tuple(d["runs"]),
                   loss=((loss["a"]["lost"], loss["a"]["sent"]), (loss["b"]["lost"], loss["b"]["sent"])),
                   practical_minimum=d["practical_minimum"], min_max_disjoint=d["min_max_disjoint"],
                   reason=d.get("reason"), b_flow=d.get("b_flow"))


@dataclass(frozen=True)
class _Side:
    """One side's units: log of each unit's value, whether it is a lower bound, runs and loss behind it."""

    values: tuple[float, ...]  # each unit's geometric mean
    logs: list[float]
    censored: list[bool]
    runs: int
    lost: int
    sent: int


def _side(flow: str, label: str, units: UnitValues) -> _Side:
    values, logs, censored, runs, lost, sent = [], [], [], 0, 0, 0
    for i, unit in enumerate(units):
        tails = [_tail(flow, label, v, i) for v in unit]
        if not tails:
            continue
        logs.append(statistics.fmean(math.log(t.value) for t in tails))
        values.append(tails[0].value if len(tails) == 1 else math.exp(logs[-1]))
        censored.append(any(t.censored for t in tails))
        runs += len(tails)
        lost += sum(t.lost for t in tails)
        sent += sum(t.sent for t in tails)
    return _Side(tuple(values), logs, censored, runs, lost, sent)


def _tail(flow: str, label: str, v: Tail | float, i: int) -> Tail:
    value = v.value if isinstance(v, Tail) else v
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
        raise VerdictError(f"flow {flow!r}, condition {label!r}: value {value!r} (unit {i + 1}) "
                           "is not a finite latency > 0 us")
    return v if isinstance(v, Tail) else Tail(float(value), False, 0, 0)


def judge(flow: str, a: str, a_units: UnitValues, b: str, b_units: UnitValues, *, unit: str,
          paired: bool = False, percentile: float = 99, level: float = DEFAULT_LEVEL,
          practical: float = PRACTICAL_MINIMUM, b_flow: str | None = None) -> Verdict:
    """Is a's percentile lower than b's? a_units[i] holds the values (Tails or µs) of a's i-th unit.

    paired: a_units[i] and b_units[i] are the same round (the same boot,
    and for two flows the same run), so their log ratio is the sample.
    """
    if not 0 < level < 1:
        raise VerdictError(f"confidence level {level} must be between 0 and 1 (0.95 for 95 %)")
    if not 0 <= practical < 1:
        raise VerdictError(f"practical minimum {practical} must be at least 0 and below 1 (0.10 for a tenth)")
    if unit not in (BOOT, ROUND):
        raise VerdictError(f"unit {unit!r} is not {BOOT!r} or {ROUND!r}")
    if paired and len(a_units) != len(b_units):
        raise VerdictError(f"flow {flow!r}: paired units need as many of {a!r} ({len(a_units)}) "
                           f"as of {b!r} ({len(b_units)})")
    if paired:  # a pair counts only with both halves
        kept = [(x, y) for x, y in zip(a_units, b_units, strict=True) if x and y]
        a_units, b_units = [x for x, _ in kept], [y for _, y in kept]
    sa, sb = _side(flow, a, a_units), _side(b_flow or flow, b, b_units)
    ratio = math.exp(statistics.fmean(sa.logs) - statistics.fmean(sb.logs)) if sa.logs and sb.logs else math.nan
    disjoint = bool(sa.logs and sb.logs) and (max(sa.logs) < min(sb.logs) or max(sb.logs) < min(sa.logs))
    common = dict(flow=flow, a=a, b=b, percentile=percentile, unit=unit, a_values=sa.values, b_values=sb.values,
                  a_censored=tuple(sa.censored), b_censored=tuple(sb.censored), paired=paired, ratio=ratio,
                  units=(len(sa.logs), len(sb.logs)), runs=(sa.runs, sb.runs),
                  loss=((sa.lost, sa.sent), (sb.lost, sb.sent)), practical_minimum=practical,
                  min_max_disjoint=disjoint, b_flow=b_flow)
    if len(sa.logs) < MIN_UNITS or len(sb.logs) < MIN_UNITS:
        if paired:
            n = len(sa.logs)
            why = f"{n} {unit}{'s' * (n != 1)} with both {flow} and {b_flow or b} valid"
        else:
            why = f"{a} has {_count(len(sa.logs), unit)}, {b} {_count(len(sb.logs), unit)}"
        return Verdict(**common, ci=Interval(math.nan, math.nan, level), verdict=INCONCLUSIVE,
                       reason=f"{why}: a verdict needs at least {MIN_UNITS} {unit}s" + ("" if paired else " on each side"))
    if paired:
        low, high = _one_sample([x - y for x, y in zip(sa.logs, sb.logs, strict=True)], level)
    else:
        low, high = welch_interval(sa.logs, sb.logs, level)
    ci = Interval(math.exp(low), math.exp(high), level)
    word, reason = _word(ci, practical, (a, flow, sa), (b, b_flow or flow, sb), unit, percentile)
    return Verdict(**common, ci=ci, verdict=word, reason=reason)


def _word(ci: Interval, practical: float, a: tuple[str, str, _Side], b: tuple[str, str, _Side], unit: str,
          percentile: float) -> tuple[str, str | None]:
    """The gate's word, withheld where it needs a value a censored side does not have; and why not."""
    word = gate(ci, practical)
    if word == FASTER and any(a[2].censored):
        return INCONCLUSIVE, _censored_reason(*a, unit, percentile, "faster")
    if word == SLOWER and any(b[2].censored):
        return INCONCLUSIVE, _censored_reason(*b, unit, percentile, "slower")
    if word == INCONCLUSIVE:
        return word, (f"the interval reaches into [{1 - practical:.2f}, {1 / (1 - practical):.2f}], "
                      f"changes smaller than {practical:.0%}")
    return word, None


def _count(n: int, unit: str) -> str:
    return f"{n} valid {unit}{'s' * (n != 1)}"


def _censored_reason(label: str, flow: str, side: _Side, unit: str, percentile: float, word: str) -> str:
    """Why a verdict word is withheld: the side it rests on has only a lower bound."""
    return (f"{label}'s {flow} p{percentile:g} is only a lower bound in {sum(side.censored)} of "
            f"{len(side.censored)} {unit}s ({side.lost} of {side.sent} probes lost), so '{word}' cannot be told")


def over_rounds(flow: str, a: str, a_values: Sequence[Tail | float], b: str, b_values: Sequence[Tail | float], *,
                percentile: float = 99, paired: bool = False, level: float = DEFAULT_LEVEL,
                practical: float = PRACTICAL_MINIMUM, b_flow: str | None = None) -> Verdict:
    """judge() with each value a round of its own: for comparisons within one boot (cases, settings)."""
    return judge(flow, a, [[v] for v in a_values], b, [[v] for v in b_values], unit=ROUND, paired=paired,
                 percentile=percentile, level=level, practical=practical, b_flow=b_flow)


def _constant(xs: Sequence[float]) -> bool:
    return max(xs) - min(xs) <= _TIE * max(1.0, max(abs(x) for x in xs))


def _one_sample(xs: Sequence[float], level: float) -> tuple[float, float]:
    """t interval of the mean of xs; the point itself when they do not vary."""
    if _constant(xs):
        m = statistics.fmean(xs)
        return m, m
    ci = stats.ttest_1samp(xs, 0.0).confidence_interval(level)
    return float(ci.low), float(ci.high)


def welch_interval(la: Sequence[float], lb: Sequence[float], level: float) -> tuple[float, float]:
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

