"""Latency statistics: percentiles, bootstrap confidence intervals, comparisons.

Percentiles interpolate linearly between order statistics (Hyndman & Fan
type 7, numpy's default), so every number here can be cross-checked with numpy:
with the sample sorted as x[0] <= ... <= x[n-1], h = (n-1)·p/100, and
P(p) = x[floor h] + (h - floor h)·(x[floor h + 1] - x[floor h]).

Confidence intervals are percentile-bootstrap intervals: resample the sample
with replacement, take the percentile of each resample, and report the
(1-level)/2 and (1+level)/2 quantiles (type 7 again) of those values. A
resample is never drawn and sorted: indices drawn uniformly from 0..n-1 are
floor(n·U) of uniforms U, floor is monotone, and the j-th smallest of n
uniforms is Beta(j, n-j+1) distributed; given it is u, the next one is
u + (1-u)·Beta(1, n-j). So the two order statistics a type-7 percentile of a
resample needs are drawn exactly, in O(1), and 2000 resamples of 10,000
samples take milliseconds in pure Python.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..core.errors import VerdictError
from .records import JsonData, ProbeRecord, text_table

FASTER = "faster"
SLOWER = "slower"
# Within one run a bootstrap over probes only describes that run (its probes are neither independent
# nor a sample of boots): it says where one flow's percentile lies against another's, never a verdict.
BELOW = "below"
ABOVE = "above"
OVERLAPPING = "overlapping"
DEFAULT_LEVEL = 0.95
DEFAULT_RESAMPLES = 2000




@dataclass(frozen=True)
class FlowSamples:
    """RTTs in microseconds of one flow's probes, kept sorted (percentiles need order)."""

    flow: str
    rtts_us: tuple[float, ...]
    sent: int | None = None  # probes sent, when built from records; only for messages

    def __post_init__(self) -> None:
        values = tuple(sorted(float(v) for v in self.rtts_us))
        bad = next((v for v in values if not (v >= 0 and math.isfinite(v))), None)
        if bad is not None:
            raise VerdictError(f"flow {self.flow!r}: RTT {bad} us is not a finite number >= 0")
        object.__setattr__(self, "rtts_us", values)

    @classmethod
    def from_records(cls, flow: str, records: Iterable[ProbeRecord]) -> FlowSamples:
        """RTTs of the received probes whose first copy is intact.

        A corrupted probe is left out: its payload, which carries the sequence
        number and the send timestamp, cannot be trusted.
        """
        records = list(records)
        rtts = [(r.received_ns - r.sent_ns) / 1000 for r in records if r.received_ns is not None and not r.corrupted]
        return cls(flow, tuple(rtts), sent=len(records))

    @property
    def count(self) -> int:
        return len(self.rtts_us)

    def percentile(self, p: float) -> float:
        return _percentile_sorted(self.require(), p)

    def require(self) -> tuple[float, ...]:
        """The sorted RTTs; VerdictError naming the flow when there are none."""
        if not self.rtts_us:
            why = f" ({self.sent} probes sent, none received intact)" if self.sent is not None else ""
            raise VerdictError(f"flow {self.flow!r}: no latency samples{why}")
        return self.rtts_us


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0 <= p <= 100) of values, by linear interpolation (type 7)."""
    return _percentile_sorted(sorted(values), p)


def _rank(n: int, p: float) -> tuple[int, float]:
    """floor and fraction of h = (n-1)·p/100; rounded so 99.9 of 1001 is rank 999, not 999 + 1e-13."""
    if not 0 <= p <= 100:
        raise VerdictError(f"percentile {p} is outside 0..100")
    h = round((n - 1) * p / 100, 9)
    lo = math.floor(h)
    return lo, h - lo


def _percentile_sorted(xs: Sequence[float], p: float) -> float:
    if not xs:
        raise VerdictError("percentile of an empty sample")
    lo, frac = _rank(len(xs), p)
    if frac == 0.0 or lo >= len(xs) - 1:
        return xs[min(lo, len(xs) - 1)]
    return xs[lo] + frac * (xs[lo + 1] - xs[lo])


def _resample_percentile(xs: Sequence[float], lo: int, frac: float, rng: random.Random) -> float:
    """The type-7 percentile of one bootstrap resample of sorted xs, drawn in O(1) (module doc)."""
    n = len(xs)
    j = lo + 1  # 1-based rank of the lower order statistic
    u = rng.betavariate(j, n - j + 1)
    low = xs[min(int(u * n), n - 1)]
    if frac == 0.0 or j >= n:
        return low
    u_next = u + (1.0 - u) * (1.0 - rng.random() ** (1.0 / (n - j)))
    return low + frac * (xs[min(int(u_next * n), n - 1)] - low)


def _bootstrap(xs: Sequence[float], p: float, resamples: int, rng: random.Random) -> list[float]:
    lo, frac = _rank(len(xs), p)
    return [_resample_percentile(xs, lo, frac, rng) for _ in range(resamples)]


def _check_bootstrap(level: float, resamples: int) -> None:
    if not 0 < level < 1:
        raise VerdictError(f"confidence level {level} must be between 0 and 1 (0.95 for 95 %)")
    if resamples < 1:
        raise VerdictError(f"resamples {resamples} must be at least 1")


@dataclass(frozen=True)
class Interval(JsonData):
    """A confidence interval at `level` (0.95 is 95 %)."""

    low: float
    high: float
    level: float

    @classmethod
    def of(cls, values: Iterable[float], level: float) -> Interval:
        """The percentile-bootstrap interval of bootstrap replicates."""
        xs = sorted(values)
        tail = (1 - level) / 2 * 100
        return cls(_percentile_sorted(xs, tail), _percentile_sorted(xs, 100 - tail), level)

    @property
    def width(self) -> float:
        return self.high - self.low

    def __contains__(self, x: float) -> bool:
        return self.low <= x <= self.high

    def text(self, digits: int = 1) -> str:
        return f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_ci(samples: FlowSamples, p: float, *, level: float = DEFAULT_LEVEL,
                 resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Interval:
    """Percentile-bootstrap confidence interval of the flow's p-th percentile."""
    xs = samples.require()
    _check_bootstrap(level, resamples)
    return Interval.of(_bootstrap(xs, p, resamples, random.Random(seed)), level)


@dataclass(frozen=True)
class LatencySummary(JsonData):
    """One flow's RTT distribution in microseconds, with bootstrap CIs of p50 and p99."""

    flow: str
    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    p50_ci: Interval
    p99_ci: Interval
    resamples: int
    seed: int


def summarize(samples: FlowSamples, *, level: float = DEFAULT_LEVEL, resamples: int = DEFAULT_RESAMPLES,
              seed: int = 0) -> LatencySummary:
    """count, mean, p50/p90/p99/p99.9, max, and CIs of p50 and p99 (seeded, so reproducible)."""
    xs = samples.require()
    _check_bootstrap(level, resamples)
    rng = random.Random(seed)
    return LatencySummary(
        flow=samples.flow, count=len(xs), mean=statistics.fmean(xs),
        p50=_percentile_sorted(xs, 50), p90=_percentile_sorted(xs, 90), p99=_percentile_sorted(xs, 99),
        p999=_percentile_sorted(xs, 99.9), max=xs[-1],
        p50_ci=Interval.of(_bootstrap(xs, 50, resamples, rng), level),
        p99_ci=Interval.of(_bootstrap(xs, 99, resamples, rng), level),
        resamples=resamples, seed=seed)


@dataclass(frozen=True)
class Comparison(JsonData):
    """Flow a against flow b at one percentile in one run: ratio a/b, its bootstrap CI, and where a lies.

    A description of the run, not a verdict (testbed.analysis.judge makes those).
    """

    a: str
    b: str
    percentile: float
    a_value: float
    b_value: float
    a_ci: Interval
    b_ci: Interval
    ratio: float
    ratio_ci: Interval
    order: str  # BELOW, ABOVE or OVERLAPPING: a's percentile against b's in these probes
    resamples: int
    seed: int

    def table(self) -> str:
        ci = f"{self.ratio_ci.level * 100:g}% CI"
        return text_table([
            ["flow", f"p{self.percentile:g} (us)", ci, "a against b"],
            [self.a, f"{self.a_value:.1f}", self.a_ci.text(), ""],
            [self.b, f"{self.b_value:.1f}", self.b_ci.text(), ""],
            [f"ratio {self.a}/{self.b}", f"{self.ratio:.3f}", self.ratio_ci.text(3), self.order],
        ])


def compare(a: FlowSamples, b: FlowSamples, percentile: float = 99, *, level: float = DEFAULT_LEVEL,
            resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Comparison:
    """Where a's p-th percentile lies against b's in these probes; both are resampled independently.

    BELOW only when the whole CI of the ratio a/b lies below 1, ABOVE when
    it lies above 1, otherwise OVERLAPPING. Any two samples will do: two
    flows of one run, loaded against unloaded. Probes of one run are not
    independent, so this is a description, never a verdict word.
    """
    xa, xb = a.require(), b.require()
    _check_bootstrap(level, resamples)
    va, vb = _percentile_sorted(xa, percentile), _percentile_sorted(xb, percentile)
    if vb == 0:
        raise VerdictError(f"flow {b.flow!r}: p{percentile:g} is 0 us, so the ratio {a.flow}/{b.flow} is undefined")
    rng = random.Random(seed)
    ra, rb = _bootstrap(xa, percentile, resamples, rng), _bootstrap(xb, percentile, resamples, rng)
    # a resample of b can still have a zero percentile (mostly zero RTTs): x/0 is +inf, 0/0 is 1
    ratio_ci = Interval.of((x / y if y else math.inf if x else 1.0 for x, y in zip(ra, rb, strict=True)), level)
    order = BELOW if ratio_ci.high < 1 else ABOVE if ratio_ci.low > 1 else OVERLAPPING
    return Comparison(a.flow, b.flow, percentile, va, vb, Interval.of(ra, level), Interval.of(rb, level),
                      va / vb, ratio_ci, order, resamples, seed)
