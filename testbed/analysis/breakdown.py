"""Where each UDP probe's round trip went: to the container's namespace, waiting there, the reflector, back.

The reflector (images/src/prism-reflector.c) writes three stamps of the
guest's clock into every UDP probe it echoes (testbed.traffic.probe): K, the
kernel's receive stamp of the probe on the reflector's socket; R, when the
reflector read it; W, when it sent the reply. With the host's send time S
and receive time H of the same probe, its RTT H - S splits into

    (a) to_namespace    S to K: host -> the container's namespace
    (b) namespace_wait  K to R: waiting in the namespace, i.e. the last
                        softnet backlog hop at the veth and the socket queue,
                        including the reflector's wake-up from poll
    (c) reflector       R to W: the reflector's own time (its read and send
                        stamps are one per recvmmsg/sendmmsg batch)
    (d) back            W to H: the reply back to the host

Host and guest clocks are not synchronised. (b) and (c) are differences on
the guest's clock and (a)+(d) = (H - S) - (W - K) a difference of two
differences each on one clock, so these are exact (up to the clocks' rate
errors). Splitting (a) from (d) needs the offset θ of the guest's clock
against the host's: (a) = K - S - θ and (d) = H - W + θ. θ is estimated once
per run, NTP-style: each probe gives θ_i = ((K - S) - (H - W)) / 2, which
is exact when its (a) equals its (d); the probes with the smallest (a)+(d)
are the ones queueing delayed least in either direction, so θ is the median
θ_i of the lowest LOW_DELAY_SHARE of them. The split of (a) from (d) thus
rests on that estimate and assumes the minimum paths both ways are equal (an
asymmetry of δ between them moves δ/2 from one to the other, for every
probe); (a)+(d), (b) and (c) do not depend on it. offset_drift_ns, the same
estimate over the second half of the run minus that over the first, tells
whether one offset held for the whole run.

Only probes that came back intact with all three stamps, in order, are
broken down. A flow with none (ICMP, whose echo the kernel answers; TCP;
a reflector that does not stamp) has no breakdown: None, not zeros.
Everything here is pure; times in summaries are microseconds, as in
testbed.analysis.latency.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .latency import percentile
from .records import JsonData, ProbeRecord

COMPONENTS = ("to_namespace", "namespace_wait", "reflector", "back")
TITLES = {"to_namespace": "host → namespace", "namespace_wait": "wait in namespace", "reflector": "reflector",
          "back": "back to host"}
LOW_DELAY_SHARE = 0.1  # of a run's probes, with the smallest (a)+(d), that the clock offset rests on


def usable(r: ProbeRecord) -> bool:
    """Whether a record can be broken down: received intact, with all three guest stamps in order."""
    return (r.received_ns is not None and r.length_ok and r.crc_ok and r.guest_rx_ns is not None
            and r.guest_read_ns is not None and r.guest_send_ns is not None
            and r.guest_rx_ns <= r.guest_read_ns <= r.guest_send_ns)


def outside_guest_ns(r: ProbeRecord) -> int:
    """(a)+(d): the RTT minus the guest's time from kernel receive to reply; exact, needs no offset."""
    return (r.received_ns - r.sent_ns) - (r.guest_send_ns - r.guest_rx_ns)


def offset_sample_ns(r: ProbeRecord) -> float:
    """The guest clock's offset (guest minus host) this probe implies if its two ways took equally long."""
    return ((r.guest_rx_ns - r.sent_ns) - (r.received_ns - r.guest_send_ns)) / 2


def _low_delay_offset(records: Sequence[ProbeRecord], share: float) -> tuple[int, int]:
    low = sorted(records, key=outside_guest_ns)[:max(1, math.ceil(share * len(records)))]
    return round(statistics.median(offset_sample_ns(r) for r in low)), len(low)


def estimate_offset(records: Sequence[ProbeRecord], share: float = LOW_DELAY_SHARE) -> int | None:
    """The guest-host clock offset (ns, guest minus host) from a run's lowest-delay probes; None without any."""
    stamped = [r for r in records if usable(r)]
    return _low_delay_offset(stamped, share)[0] if stamped else None


@dataclass(frozen=True)
class ProbeSplit:
    """One probe's RTT in its four parts, ns; the four add up to rtt_ns exactly."""

    seq: int
    rtt_ns: int
    to_namespace_ns: int
    namespace_wait_ns: int
    reflector_ns: int
    back_ns: int


def split(r: ProbeRecord, offset_ns: int) -> ProbeSplit | None:
    """r's RTT in parts, given the guest's clock offset; None if r cannot be broken down."""
    if not usable(r):
        return None
    to_namespace = r.guest_rx_ns - r.sent_ns - offset_ns
    return ProbeSplit(r.seq, r.received_ns - r.sent_ns, to_namespace, r.guest_read_ns - r.guest_rx_ns,
                      r.guest_send_ns - r.guest_read_ns, outside_guest_ns(r) - to_namespace)


@dataclass(frozen=True)
class Component(JsonData):
    """One part of a flow's RTT over its probes, µs; share is its part of the mean RTT."""

    p50: float
    p99: float
    mean: float
    share: float

    @classmethod
    def of(cls, values_ns: Sequence[int], mean_rtt_ns: float) -> Component:
        mean = statistics.fmean(values_ns)
        return cls(percentile(values_ns, 50) / 1000, percentile(values_ns, 99) / 1000, mean / 1000,
                   mean / mean_rtt_ns if mean_rtt_ns else 0.0)


@dataclass(frozen=True)
class FlowBreakdown(JsonData):
    """A flow's RTT in four parts over its stamped probes.

    Each part's p50 and p99 are its own percentiles (they do not add up to
    the RTT's); the means, and so the shares, do add up. probes: how many
    were broken down; unstamped: received intact but without a full,
    ordered set of guest stamps. offset_ns is the estimated guest-host clock
    offset that splits to_namespace from back (module doc), from
    offset_probes probes; offset_drift_ns its change from the first half of
    the run to the second (None with too few probes to tell).
    """

    flow: str
    probes: int
    unstamped: int
    offset_ns: int
    offset_probes: int
    offset_drift_ns: int | None
    rtt: Component
    to_namespace: Component
    namespace_wait: Component
    reflector: Component
    back: Component


def breakdown(records: Sequence[ProbeRecord], flow: str | None = None,
              share: float = LOW_DELAY_SHARE) -> FlowBreakdown | None:
    """One flow's breakdown, or None when none of its probes carries the guest's stamps."""
    stamped = [r for r in records if usable(r)]
    if not stamped:
        return None
    offset, offset_probes = _low_delay_offset(stamped, share)
    by_time = sorted(stamped, key=lambda r: r.sent_ns)
    half = len(by_time) // 2
    drift = None
    if half >= 2:
        drift = _low_delay_offset(by_time[half:], share)[0] - _low_delay_offset(by_time[:half], share)[0]
    splits = [split(r, offset) for r in stamped]
    mean_rtt = statistics.fmean(s.rtt_ns for s in splits)
    parts = {c: Component.of([getattr(s, f"{c}_ns") for s in splits], mean_rtt) for c in COMPONENTS}
    received_intact = sum(1 for r in records if r.received_ns is not None and r.length_ok and r.crc_ok)
    return FlowBreakdown(flow=flow if flow is not None else stamped[0].flow, probes=len(stamped),
                         unstamped=received_intact - len(stamped), offset_ns=offset, offset_probes=offset_probes,
                         offset_drift_ns=drift, rtt=Component.of([s.rtt_ns for s in splits], mean_rtt), **parts)


def record_fields(records: Sequence[ProbeRecord]) -> dict | None:
    """One flow's breakdown as plain JSON data (for record["flows"][name]["breakdown"]), or None."""
    found = breakdown(records)
    return None if found is None else found.to_dict()


def probe_stamps(record: ProbeRecord) -> list:
    """A probe's guest stamps for a JSON record: [] when it has none, else ns relative to its sent_ns.

    [kernel rx - sent, read - sent, reply sent - sent], a stamp the reply
    lacked as None. Relative to the host's send time the numbers stay
    short; they still contain the clock offset, and restore_stamps gives
    back the guest's own stamps exactly.
    """
    stamps = (record.guest_rx_ns, record.guest_read_ns, record.guest_send_ns)
    if all(s is None for s in stamps):
        return []
    return [None if s is None else s - record.sent_ns for s in stamps]


def restore_stamps(sent_ns: int, stamps: Sequence[int | None]) -> tuple[int | None, int | None, int | None]:
    """The guest stamps (guest_rx_ns, guest_read_ns, guest_send_ns) that probe_stamps stored."""
    if not stamps:
        return None, None, None
    rx, read, send = (None if s is None else sent_ns + s for s in stamps)
    return rx, read, send


Summary = FlowBreakdown | Mapping | None


def plain(summary: Summary) -> Mapping | None:
    return summary.to_dict() if isinstance(summary, FlowBreakdown) else summary


def _us(value: float) -> str:
    return f"{value:.1f}"


BREAKDOWN_HEADER = ["condition", "flow", "n", "RTT p50/p99 µs"] + [f"{TITLES[c]} p50/p99 µs" for c in COMPONENTS] + [
    "share of mean RTT (a/b/c/d)", "clock drift µs"]


def breakdown_rows(per_label_per_flow: Mapping[str, Mapping[str, Summary]]) -> list[list[str]]:
    """Table rows, header first: per condition (label) and flow, each part's p50/p99 and share of the mean RTT.

    Summaries are FlowBreakdowns or their to_dict() (as record_fields
    stores them); a flow without one (None) gets a row that says so.
    """
    out = [list(BREAKDOWN_HEADER)]
    for label, flows in per_label_per_flow.items():
        for flow, summary in flows.items():
            s = plain(summary)
            if s is None:
                out.append([label, flow, "0", "-", "-", "-", "-", "-", "no guest stamps", "-"])
                continue
            cells = [f"{_us(s[c]['p50'])} / {_us(s[c]['p99'])}" for c in ("rtt", *COMPONENTS)]
            shares = " / ".join(f"{s[c]['share'] * 100:.0f}%" for c in COMPONENTS)
            drift = "-" if s.get("offset_drift_ns") is None else _us(s["offset_drift_ns"] / 1000)
            out.append([label, flow, str(s["probes"]), *cells, shares, drift])
    return out


def stacked_plot(summaries: Mapping[str, Mapping[str, Summary]], path: Path,
                 title: str = "where the round trip goes (mean per probe)") -> Path:
    """A stacked bar per condition (label) and flow or class: the mean of each part, µs, as a PNG.

    The host → namespace and back parts are hatched: their split rests on
    the estimated clock offset (module doc). Flows without a breakdown are
    left out; a part whose mean came out negative is drawn as zero.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(f"{label}\n{flow}", s) for label, flows in summaries.items() for flow, summary in flows.items()
            if (s := plain(summary)) is not None]
    colors = {"to_namespace": "tab:blue", "namespace_wait": "tab:red", "reflector": "tab:green", "back": "tab:cyan"}
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(bars) + 2), 5), dpi=110)
    xs = range(len(bars))
    bottoms = [0.0] * len(bars)
    for c in COMPONENTS:
        heights = [max(0.0, s[c]["mean"]) for _, s in bars]
        ax.bar(xs, heights, bottom=bottoms, color=colors[c], hatch="//" if c in ("to_namespace", "back") else None,
               edgecolor="white", label=TITLES[c] + (" (split estimated)" if c in ("to_namespace", "back") else ""))
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for x, (_, s), top in zip(xs, bars, bottoms, strict=True):
        ax.annotate(f"{s['rtt']['mean']:.0f}", (x, top), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs), [name for name, _ in bars], fontsize=7)
    ax.set_ylabel("mean time per probe (µs)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    if bars:
        ax.legend(fontsize=7, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no probe carried guest stamps", ha="center", va="center", transform=ax.transAxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
