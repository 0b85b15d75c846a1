"""A flow's percentile over the probes it sent, a lost probe counting as slower than any received.

A p99 taken over the probes that came back says nothing once a flow lost
more than a hundredth of them: the kernel that drops a probe instead of
queueing it would look faster for it. Here every probe sent has a rank; a
lost or damaged one ranks above every intact one (its RTT is unknown, but
it did not come back in time). The percentile is the type-7 value of
testbed.analysis.latency over those ranks. When the rank it needs falls among
the lost probes, the percentile is not a number: it is *censored*, known only
to be at least the slowest probe received. A censored value is carried as
that lower bound with the flag set, and a verdict may use it only where a
lower bound is enough (testbed.analysis.rounds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .latency import _rank


@dataclass(frozen=True)
class Tail:
    """One run's percentile of one flow, in microseconds, over the probes sent."""

    value: float  # the percentile; when censored, a lower bound: the slowest intact probe
    censored: bool
    sent: int
    lost: int  # sent and not received intact (never came back, or came back damaged)

    @property
    def loss_share(self) -> float:
        return self.lost / self.sent if self.sent else 0.0

    def text(self, digits: int = 1) -> str:
        """Milliseconds, '>' before a censored value."""
        return ("> " if self.censored else "") + f"{self.value / 1000:.{digits}f}"


def tail_of(intact_rtts_us: Iterable[float], sent: int, p: float) -> Tail | None:
    """The p-th percentile over `sent` probes, of which the intact ones took intact_rtts_us.

    None when no probe came back intact: there is not even a lower bound.
    """
    received = sorted(intact_rtts_us)
    if sent < len(received):
        raise ValueError(f"{len(received)} intact probes of {sent} sent")
    if not received:
        return None
    lost = sent - len(received)
    lo, frac = _rank(sent, p)
    needs = lo + (1 if frac > 0 else 0)  # the highest rank the interpolation reads (0-based)
    if needs >= len(received):
        return Tail(received[-1], True, sent, lost)
    value = received[lo] if frac == 0.0 else received[lo] + frac * (received[lo + 1] - received[lo])
    return Tail(value, False, sent, lost)
