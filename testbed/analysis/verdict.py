"""Verdicts on probe traffic: integrity accounting and the assertions cases use.

The traffic engine records one ProbeRecord per probe it sends; this module
turns those records into numbers a test can assert on and a report can print
(the statistics themselves are in testbed.analysis.latency). It takes plain data and
does no I/O, so every rule is unit-tested without a VM.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..core.errors import VerdictError
from .latency import (
    ABOVE,
    BELOW,
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    FASTER,
    OVERLAPPING,
    SLOWER,
    Comparison,
    FlowSamples,
    Interval,
    LatencySummary,
    bootstrap_ci,
    compare,
    percentile,
    summarize,
)
from .records import JsonData, ProbeRecord, text_table
from .tail import Tail, tail_of

__all__ = [
    "ABOVE", "BELOW", "DEFAULT_LEVEL", "DEFAULT_RESAMPLES", "FASTER", "OVERLAPPING", "SLOWER", "Comparison", "FlowSamples",
    "Integrity", "Interval", "LatencySummary", "ProbeRecord", "RunResults", "assert_intact", "assert_latency_order",
    "bootstrap_ci", "compare", "percentile", "summarize",
]

@dataclass(frozen=True)
class Integrity(JsonData):
    """What became of every probe of one flow.

    sent: records. received: probes that arrived at least once. lost: sent
    and never received. duplicated: probes that arrived more than once (one
    per probe, however many copies). corrupted: probes whose first copy had
    a CRC mismatch or the wrong length. reordered: in first-arrival order
    (received_ns; equal times keep record order), a probe whose sequence
    number is lower than the highest received before it, as in RFC 4737
    (3.3): arrivals 1 3 2 4 reorder one probe (2), arrivals 3 1 2 two (1, 2).
    The counts overlap: a probe can be reordered and corrupted.
    """

    flow: str
    sent: int
    received: int
    lost: int
    duplicated: int
    reordered: int
    corrupted: int

    @classmethod
    def of(cls, flow: str, records: Sequence[ProbeRecord]) -> Integrity:
        received = [r for r in records if r.received_ns is not None]
        reordered, highest = 0, -math.inf
        for r in sorted(received, key=lambda r: r.received_ns):  # stable: ties keep record order
            if r.seq < highest:
                reordered += 1
            else:
                highest = r.seq
        return cls(flow=flow, sent=len(records), received=len(received), lost=len(records) - len(received),
                   duplicated=sum(1 for r in received if r.duplicate_count > 0),
                   reordered=reordered, corrupted=sum(1 for r in received if r.corrupted))

    @property
    def intact(self) -> bool:
        return self.lost == self.duplicated == self.reordered == self.corrupted == 0

    def to_dict(self) -> dict:
        return {**super().to_dict(), "intact": self.intact}

    def table(self) -> str:
        names = ["flow", "sent", "received", "lost", "duplicated", "reordered", "corrupted"]
        return text_table([names, [str(getattr(self, n)) for n in names]])


@dataclass(frozen=True)
class RunResults:
    """Every probe record of one run, by flow, as the traffic engine recorded them."""

    by_flow: Mapping[str, tuple[ProbeRecord, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_flow", {f: tuple(rs) for f, rs in self.by_flow.items()})
        for flow, records in self.by_flow.items():
            _check_records(flow, records)

    @classmethod
    def from_records(cls, records: Iterable[ProbeRecord]) -> RunResults:
        by_flow: dict[str, list[ProbeRecord]] = {}
        for r in records:
            by_flow.setdefault(r.flow, []).append(r)
        return cls({f: tuple(rs) for f, rs in by_flow.items()})

    @property
    def flows(self) -> tuple[str, ...]:
        return tuple(self.by_flow)

    def records(self, flow: str) -> tuple[ProbeRecord, ...]:
        if flow not in self.by_flow:
            raise VerdictError(f"no flow {flow!r} in the results (has {', '.join(self.flows) or 'none'})")
        return self.by_flow[flow]

    def samples(self, flow: str) -> FlowSamples:
        return FlowSamples.from_records(flow, self.records(flow))

    def integrity(self, flow: str) -> Integrity:
        return Integrity.of(flow, self.records(flow))

    def tail(self, flow: str, p: float = 99) -> Tail:
        """The flow's p-th percentile over the probes sent, lost ones slower than any (testbed.analysis.tail);
        VerdictError when none came back intact."""
        value = tail_of(self.samples(flow).rtts_us, len(self.records(flow)), p)
        if value is None:
            raise VerdictError(f"flow {flow!r}: no probe came back intact ({len(self.records(flow))} sent)")
        return value

    def summary(self, flow: str, *, level: float = DEFAULT_LEVEL, resamples: int = DEFAULT_RESAMPLES,
                seed: int = 0) -> LatencySummary:
        return summarize(self.samples(flow), level=level, resamples=resamples, seed=seed)


def _check_records(flow: str, records: Sequence[ProbeRecord]) -> None:
    seen: set[int] = set()
    for r in records:
        where = f"flow {flow!r} seq {r.seq}"
        if r.flow != flow:
            raise VerdictError(f"{where}: record of flow {r.flow!r} filed under {flow!r}")
        if r.seq in seen:
            raise VerdictError(f"{where}: recorded twice; extra copies belong in duplicate_count")
        seen.add(r.seq)
        if r.received_ns is not None and r.received_ns < r.sent_ns:
            raise VerdictError(f"{where}: received_ns {r.received_ns} is before sent_ns {r.sent_ns}")
        if r.duplicate_count < 0 or (r.received_ns is None and r.duplicate_count):
            raise VerdictError(f"{where}: duplicate_count {r.duplicate_count} is impossible (received_ns {r.received_ns})")


Results = RunResults | Mapping[str, FlowSamples]


def _samples_of(results: Results, flow: str) -> FlowSamples:
    if isinstance(results, RunResults):
        return results.samples(flow)
    if flow not in results:
        raise VerdictError(f"no flow {flow!r} in the results (has {', '.join(results) or 'none'})")
    samples = results[flow]
    return samples if samples.flow == flow else dataclasses.replace(samples, flow=flow)


def assert_latency_order(results: Results, faster: str = "priority", slower: str = "bulk", percentile: float = 99, *,
                         level: float = DEFAULT_LEVEL, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Comparison:
    """Fail unless `faster`'s percentile lies below `slower`'s in these probes, with the numbers as a table.

    A check on one run's probes (e.g. that priority overtook bulk in it),
    not a verdict between conditions: those are made over units
    (testbed.analysis.judge).

    results is one run's RunResults, or a mapping of labels to samples to
    compare across runs ({"prism": ..., "vanilla": ...}).
    """
    c = compare(_samples_of(results, faster), _samples_of(results, slower), percentile,
                level=level, resamples=resamples, seed=seed)
    if c.order != BELOW:
        raise AssertionError(f"{faster}'s p{percentile:g} is not below {slower}'s ({c.order}):\n{c.table()}")
    return c


TOLERABLE = frozenset({"lost", "reordered"})


def assert_intact(results: RunResults, flow: str = "priority", *, tolerate: Iterable[str] = ()) -> Integrity:
    """Fail unless every probe of the flow arrived once, in order, undamaged; the counts as a table.

    tolerate ("lost", "reordered") is for a kernel that does not promise to
    protect the flow: vanilla under saturating load drops priority and bulk
    alike, and reorders a flow whose replies leave through two CPUs'
    backlogs. Those counts are then only reported; duplication and
    corruption always fail.
    """
    tolerate = frozenset(tolerate)
    if not tolerate <= TOLERABLE:
        raise ValueError(f"tolerate: {sorted(tolerate - TOLERABLE)} (only {sorted(TOLERABLE)} can be tolerated)")
    found = results.integrity(flow)
    failing = [k for k in ("lost", "duplicated", "reordered", "corrupted") if getattr(found, k) and k not in tolerate]
    if failing:
        raise AssertionError(f"flow {flow!r} did not arrive intact:\n{found.table()}")
    return found
